"""Reinforcement-learning task families (bandits, tabular MDPs) and classical bandit
baselines, for RL² (``metagui.core.algorithms.rl2``). Torch and numpy only."""

from metagui.core.rl.envs import BanditTasks, MDPTasks, TrialBatch, VecTrials

__all__ = ["BanditTasks", "MDPTasks", "TrialBatch", "VecTrials"]
