import pytest

from metagui.core.config import RunConfig
from metagui.core.errors import ConfigError
from metagui.core.presets import apply_preset, default_config, matching_preset


def test_toml_round_trip_keeps_every_field():
    cfg = default_config("maml", "intents", "Customer-service MAML")
    cfg.name = 'quotes " and \\ backslashes'
    cfg.task.train_domains = ["en", "de"]
    again = RunConfig.from_toml(cfg.to_toml())
    assert again == cfg


def test_unknown_keys_and_wrong_types_are_readable_errors():
    with pytest.raises(ConfigError, match="unknown key in \\[task\\]: wayz"):
        RunConfig.from_toml("[task]\nwayz = 5\n")
    with pytest.raises(ConfigError, match="task.way must be an integer"):
        RunConfig.from_toml('[task]\nway = "five"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        RunConfig.from_toml("[task\n")


def test_customer_service_preset_sets_paper_values_and_task():
    cfg = apply_preset(default_config("maml", "intents"), "Customer-service MAML")
    hp = cfg.algorithm.hyperparams
    assert (hp["inner_lr"], hp["meta_lr"], hp["inner_steps"], hp["meta_batch"]) == (0.01, 0.001, 5, 32)
    assert (cfg.task.shot, cfg.task.query) == (5, 5)


def test_metric_learner_cannot_do_regression():
    with pytest.raises(ConfigError, match="cannot learn regression"):
        default_config("protonet", "sinusoid")


def test_matching_preset_names_the_preset_a_config_follows():
    from metagui.core.algorithms.base import TEXT_PRESET

    cfg = default_config("maml", "intents")  # text: starts from the Text preset
    assert matching_preset(cfg) == TEXT_PRESET
    cfg.algorithm.hyperparams["eval_lr"] = 0.25
    assert matching_preset(cfg) == ""
    cfg = apply_preset(default_config("maml", "intents"), "Customer-service MAML")
    assert matching_preset(cfg) == "Customer-service MAML"
    cfg.task.query = 7  # the preset also sets the task
    assert matching_preset(cfg) == ""
