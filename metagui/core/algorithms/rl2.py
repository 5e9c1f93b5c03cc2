"""RL² (Duan et al. 2016): reinforcement learning of a reinforcement-learning algorithm.

A recurrent policy (GRU, ``models.RecurrentCore``) reads at every step the observation (a
one-hot state), its previous action, the previous reward and the episode-done flag. Its hidden
state is *not* reset between the episodes of a task, only between tasks, so whatever it learns
about the current environment carries over: exploring, then exploiting, is something the
recurrent weights have to discover. The outer "slow" learner is an ordinary on-policy RL
algorithm maximising the total reward of whole trials over many sampled tasks.

What matches the paper: the policy inputs, the trial structure (hidden state kept across
episodes, the trial is one RL episode for the discounting), a GRU policy, generalised
advantage estimation and the Bernoulli bandit / random tabular MDP task families.
What differs: the paper trains with TRPO on very large batches; this uses PPO (clipped
surrogate) or A2C on batches of tens of tasks, so it fits a CPU in minutes, and a smaller GRU
(128 units by default, 256 in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metagui.core.algorithms.base import HyperParam, MetaLearner, Predictor, register
from metagui.core.errors import ConfigError
from metagui.core.rl.envs import TrialBatch, VecTrials, bandit_best


@dataclass
class Rollout:
    """One trial per task, all tensors [T, L] (inputs [T, L, in_dim])."""

    inputs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    expected: torch.Tensor  # expected reward of each chosen action (for the regret)


@register
class RL2(MetaLearner):
    name = "rl2"
    label = "RL²"
    family = "rl"
    summary = ("A recurrent policy whose memory spans all episodes of a task learns its own way to explore "
               "and exploit; trained with PPO or A2C over many sampled tasks.")
    paper = "Duan, Schulman, Chen, Bartlett, Sutskever, Abbeel 2016, RL²: Fast Reinforcement Learning via Slow Reinforcement Learning"
    modalities = frozenset({"bandit", "mdp"})
    hyperparams = (
        HyperParam("rl_algorithm", str, "ppo", "Outer learner: PPO (clipped surrogate, several epochs per batch) or A2C (one policy-gradient step).",
                   choices=("ppo", "a2c")),
        HyperParam("gamma", float, 0.99, "Discount over the whole trial (the episodes of one task form one RL episode).", 0.0, 1.0),
        HyperParam("gae_lambda", float, 0.3, "GAE lambda: lower trusts the value function more (less variance, more bias).", 0.0, 1.0),
        HyperParam("ppo_epochs", int, 4, "Passes over each batch of trials (PPO).", 1, 50),
        HyperParam("ppo_clip", float, 0.2, "PPO clipping range of the probability ratio.", 0.01, 1.0),
        HyperParam("entropy_coef", float, 0.01, "Weight of the entropy bonus (keeps the policy exploring while it learns).", 0.0, 1.0),
        HyperParam("value_coef", float, 0.5, "Weight of the value-function loss.", 0.0, 10.0),
        HyperParam("max_grad_norm", float, 1.0, "Gradient norm clip of each update.", 0.01, 100.0),
        HyperParam("value_norm", bool, True, "Learn values divided by a running average of |return| (long trials have "
                   "large returns, whose value loss would otherwise swamp the policy's gradient)."),
    )
    presets = {
        "Bandits, short trials (PPO)": {"hyperparams": {"meta_lr": 1e-3, "meta_batch": 64, "gamma": 0.99, "gae_lambda": 0.3}},
        "Bandits, 100 pulls (PPO)": {"hyperparams": {"meta_lr": 1e-3, "meta_batch": 64, "gamma": 0.99, "gae_lambda": 0.95}},
        "Tabular MDPs (PPO)": {"hyperparams": {"meta_lr": 1e-3, "meta_batch": 32, "gamma": 0.99, "gae_lambda": 0.95}},
        "A2C": {"hyperparams": {"rl_algorithm": "a2c", "meta_lr": 1e-3, "meta_batch": 64}},
    }

    @classmethod
    def schema(cls):
        common = (
            HyperParam("meta_lr", float, 1e-3, "Step size of the policy optimiser (Adam).", 1e-6, 1.0, log=True),
            HyperParam("meta_batch", int, 64, "Tasks (whole trials) rolled out per policy update.", 1, 4096),
        )
        return common + cls.hyperparams

    def build(self) -> None:
        core = self.backbone
        self.n_actions = self.n_way
        self.n_states = core.in_dim - self.n_actions - 2
        if self.n_states < 1:
            raise ConfigError("RL² needs its recurrent backbone built for the task's states and actions")
        self.policy = nn.Linear(core.emb_dim, self.n_actions)
        self.value = nn.Linear(core.emb_dim, 1)
        # value targets grow with the trial length (tens of reward units over 100 pulls): the
        # value head predicts them divided by a running scale, so that its loss does not swamp
        # the policy's gradient in the shared GRU (saved with the weights)
        self.register_buffer("value_scale", torch.zeros(()) if self.hp["value_norm"] else torch.ones(()))  # 0: unmeasured
        with torch.no_grad():  # start near the uniform policy
            self.policy.weight.mul_(0.01)
            self.policy.bias.zero_()

    @property
    def metric_name(self) -> str:
        return "return"

    # --- acting --------------------------------------------------------------------------------
    def step_input(self, state, prev_action, prev_reward, prev_done) -> torch.Tensor:
        """[T, in_dim]: one-hot state, one-hot previous action (zeros at the first step),
        previous reward and done flag."""
        a = F.one_hot(prev_action.clamp_min(0), self.n_actions).float() * (prev_action >= 0).float()[:, None]
        return torch.cat([F.one_hot(state, self.n_states).float(), a, prev_reward[:, None], prev_done[:, None]], 1)

    def heads(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy logits and the value in reward units."""
        return self.policy(feats), self.value(feats).squeeze(-1) * self.value_scale

    @torch.no_grad()
    def rollout(self, batch: TrialBatch, greedy: bool = False) -> Rollout:
        env = VecTrials(batch)
        t, dev = batch.n_tasks, batch.transitions.device
        prev_a = torch.full((t,), -1, dtype=torch.long, device=dev)
        prev_r = torch.zeros(t, device=dev)
        prev_d = torch.zeros(t, device=dev)
        h = None
        rec: dict[str, list[torch.Tensor]] = {k: [] for k in ("inputs", "actions", "logp", "values", "rewards", "expected")}
        while not env.finished:
            x = self.step_input(env.observe(), prev_a, prev_r, prev_d)
            out, h = self.backbone(x[:, None], h)
            logits, value = self.heads(out[:, 0])
            logp_all = logits.log_softmax(-1)
            if greedy:
                a = logp_all.argmax(-1)
            else:
                a = torch.multinomial(logp_all.exp(), 1, generator=env.gen).squeeze(1)
            rec["expected"].append(env.expected_reward(a))
            r, d = env.step(a)
            for k, v in (("inputs", x), ("actions", a), ("logp", logp_all.gather(1, a[:, None]).squeeze(1)),
                         ("values", value), ("rewards", r)):
                rec[k].append(v)
            prev_a, prev_r, prev_d = a, r, d
        return Rollout(**{k: torch.stack(v, 1) for k, v in rec.items()})

    # --- learning ------------------------------------------------------------------------------
    def advantages(self, ro: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE over each trial (bootstrapping ends with the trial, not with its episodes)."""
        gamma, lam = self.hp["gamma"], self.hp["gae_lambda"]
        length = ro.rewards.shape[1]
        adv = torch.zeros_like(ro.rewards)
        running = torch.zeros_like(ro.rewards[:, 0])
        for i in reversed(range(length)):
            next_v = ro.values[:, i + 1] if i + 1 < length else torch.zeros_like(running)
            delta = ro.rewards[:, i] + gamma * next_v - ro.values[:, i]
            running = delta + gamma * lam * running
            adv[:, i] = running
        return adv, adv + ro.values

    def meta_step(self, batch: TrialBatch) -> dict[str, Any]:
        self.train()
        ro = self.rollout(batch)
        adv, returns = self.advantages(ro)
        norm_adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        if self.hp["value_norm"]:
            with torch.no_grad():
                spread = returns.abs().mean().clamp_min(1e-3)
                self.value_scale.lerp_(spread, 0.05 if self.value_scale.item() > 0 else 1.0)
        ppo = self.hp["rl_algorithm"] == "ppo"
        params = [p for p in self.parameters() if p.requires_grad]
        stats: dict[str, float] = {}
        for _ in range(self.hp["ppo_epochs"] if ppo else 1):
            feats, _ = self.backbone(ro.inputs)
            logits, values = self.heads(feats)
            logp_all = logits.log_softmax(-1)
            logp = logp_all.gather(-1, ro.actions[..., None]).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            if ppo:
                ratio = (logp - ro.logp).exp()
                clip = self.hp["ppo_clip"]
                policy_loss = -torch.min(ratio * norm_adv, ratio.clamp(1 - clip, 1 + clip) * norm_adv).mean()
            else:
                policy_loss = -(logp * norm_adv).mean()
            value_loss = F.mse_loss(values / self.value_scale, returns / self.value_scale)
            loss = policy_loss + self.hp["value_coef"] * value_loss - self.hp["entropy_coef"] * entropy
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, self.hp["max_grad_norm"])
            self.optimizer.step()
            stats = {"loss": float(loss.detach()), "policy_loss": float(policy_loss.detach()),
                     "value_loss": float(value_loss.detach()), "entropy": float(entropy.detach())}
        out = {**stats, "return": float(ro.rewards.sum(1).mean())}
        if batch.kind == "bandit":
            out["regret"] = float(self.regret_of(batch, ro).mean())
        return out

    def evaluate(self, batch: TrialBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Total reward of one trial per task [T] (the policy acts by sampling, as in training)."""
        self.eval()
        ro = self.rollout(batch)
        extra: dict[str, float] = {}
        if batch.kind == "bandit":
            extra["regret"] = float(self.regret_of(batch, ro).mean())
        return ro.rewards.sum(1), extra

    @staticmethod
    def regret_of(batch: TrialBatch, ro: Rollout) -> torch.Tensor:
        """Expected regret of each bandit trial [T]: sum of (best arm p - chosen arm p)."""
        return bandit_best(batch)[:, None].sub(ro.expected).sum(1)

    def bandit_regret(self, batch: TrialBatch) -> torch.Tensor:
        """Per-bandit expected regret of one trial [T] (``batch`` from ``BanditTasks``)."""
        if batch.kind != "bandit":
            raise ConfigError("regret is defined here for bandit tasks")
        self.eval()
        return self.regret_of(batch, self.rollout(batch))

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int | None = None) -> Predictor:
        raise ConfigError("RL² adapts by acting, not from a labelled support set: play it with learner.agent()")

    def agent(self) -> PolicyAgent:
        """A stateful agent for one task (the test pane's playground): act, then observe."""
        return PolicyAgent(self)


class PolicyAgent:
    """RL² acting in one environment step by step; its memory persists until ``reset``."""

    def __init__(self, learner: RL2) -> None:
        self.learner = learner
        self.reset()

    def reset(self) -> None:
        self.h = None
        self.prev = (torch.tensor([-1]), torch.zeros(1), torch.zeros(1))

    @torch.no_grad()
    def act(self, state: int = 0, greedy: bool = False, generator: torch.Generator | None = None) -> tuple[int, torch.Tensor]:
        """Choose an action in ``state``; returns it and the policy's probabilities [A]."""
        lr = self.learner
        lr.eval()
        x = lr.step_input(torch.tensor([state]), *self.prev)
        out, self.h = lr.backbone(x[:, None], self.h)
        probs = lr.heads(out[:, 0])[0].softmax(-1)[0]
        a = int(probs.argmax()) if greedy else int(torch.multinomial(probs, 1, generator=generator))
        self._action = a
        return a, probs

    def observe(self, reward: float, done: bool = True) -> None:
        """The reward of the last action and whether it ended an episode (always, for bandits)."""
        self.prev = (torch.tensor([self._action]), torch.tensor([float(reward)]), torch.tensor([float(done)]))
