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


def test_a_text_config_names_its_text_preset_where_an_image_preset_matches_too():
    from metagui.core.algorithms.base import PRETRAINED_PRESET
    from metagui.core.presets import default_hyperparams

    # Matching's pretrained-encoder preset (temperature 10, meta step 1e-3) has every setting of
    # its Omniglot preset too (meta step 1e-3, and two defaults)
    cfg = default_config("matching", "intents")
    cfg.algorithm.text_encoder = "all-MiniLM-L6-v2"
    cfg.algorithm.hyperparams = default_hyperparams("matching", "text", pretrained=True)
    assert matching_preset(cfg) == PRETRAINED_PRESET
    cfg = default_config("matching", "glyphs")
    cfg = apply_preset(cfg, "Omniglot (paper)")
    assert matching_preset(cfg) == "Omniglot (paper)"


# --- only the fields that apply are written ---------------------------------------------------
GLYPH_OR_RL_KEYS = {"arms", "pulls", "states", "actions", "horizon", "trial_episodes",
                    "n_alphabets", "characters_per_alphabet", "drawers", "image_size", "channels", "invert"}


def test_a_text_protonet_config_writes_no_bandit_or_glyph_keys():
    import tomllib

    cfg = default_config("protonet", "intents")
    data = cfg.to_dict()
    assert set(data["dataset"]) == {"source", "languages", "seed"}
    written = tomllib.loads(cfg.to_toml())
    assert not GLYPH_OR_RL_KEYS & set(written["dataset"])
    assert {"text_encoder", "text_encoder_why"} <= set(written["algorithm"])  # text: the encoder applies
    assert written["task"]["way"] == 5 and "train_domains" in written["task"]


def test_each_source_and_task_type_writes_its_own_fields():
    from metagui.core.config import DatasetConfig

    glyphs = default_config("maml", "glyphs").to_dict()
    assert {"n_alphabets", "characters_per_alphabet", "drawers", "image_size", "rotations"} <= set(glyphs["dataset"])
    assert "languages" not in glyphs["dataset"] and "text_encoder" not in glyphs["algorithm"]
    sine = default_config("maml", "sinusoid").to_dict()
    assert sine["dataset"] == {"source": "sinusoid"}
    assert set(sine["task"]) == {"shot", "query", "seed"}  # regression: no classes to split
    bandit = default_config("rl2", "bandit").to_dict()
    assert bandit["dataset"] == {"source": "bandit", "arms": 5, "pulls": 10} and bandit["task"] == {}
    assert "[task]" not in default_config("rl2", "bandit").to_toml()  # an empty table is left out
    omniglot = DatasetConfig(source="catalog", path="omniglot-small1").to_dict()
    banking = DatasetConfig(source="catalog", path="banking77-test").to_dict()
    assert "invert" in omniglot and "invert" not in banking and banking["path"] == "banking77-test"


def test_every_dataset_field_is_read_by_some_source():
    from dataclasses import fields

    from metagui.core.config import DATASET_SOURCES, IMAGE_OPTIONS, SOURCE_FIELDS, DatasetConfig

    assert set(SOURCE_FIELDS) == set(DATASET_SOURCES)
    declared = {"source", *IMAGE_OPTIONS}.union(*SOURCE_FIELDS.values())
    assert {f.name for f in fields(DatasetConfig)} == declared


def test_an_old_full_config_reads_to_an_equal_config():
    import dataclasses

    from metagui.core.config import dumps_toml

    cfg = default_config("protonet", "intents")
    cfg.dataset.arms, cfg.dataset.n_alphabets, cfg.dataset.image_size = 7, 3, 64  # set, though unused
    full = dataclasses.asdict(cfg)  # every field, as configs were written before
    assert "arms" in full["dataset"] and "horizon" in full["dataset"]
    assert RunConfig.from_dict(full) == cfg
    assert RunConfig.from_toml(dumps_toml(full)) == cfg


@pytest.mark.parametrize("algorithm, source", [("protonet", "intents"), ("maml", "glyphs"), ("maml", "sinusoid"),
                                               ("platipus", "ambiguous"), ("rl2", "bandit"), ("rl2", "mdp")])
def test_a_dump_round_trips(algorithm, source):
    """Reading a dump gives the same fields that apply (the rest at their defaults: a sine
    config's ``way = 0`` is not written) and the same dump again."""
    cfg = default_config(algorithm, source)
    text = cfg.to_toml()
    again = RunConfig.from_toml(text)
    assert again.to_dict() == cfg.to_dict() and again.to_toml() == text
    assert again.copy() == again  # once read back, nothing more is lost
    if source != "bandit":
        cfg.dataset.arms = 99  # set, though the source does not read it: not written
    if source != "intents":
        cfg.dataset.languages = ["de"]
    assert cfg.to_toml() == text
