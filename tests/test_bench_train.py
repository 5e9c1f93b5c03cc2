"""``metagui bench train``'s peer machinery on tiny models: one round, no timing claims.

higher is in the test extra (pyproject.toml), so its row is checked here rather than skipped:
the bench's higher code runs only where higher is installed, and nothing else exercises it.
learn2learn does not build on Python 3.11; its row is checked only where it imports.
"""

import math
import os
import sys

import pytest
import torch

from metagui.bench import peers, train
from metagui.bench.peers import IMPLS, REFERENCE, ModelSpec, available
from metagui.core.algorithms import batching
from metagui.core.data.catalog import DATA_DIR_ENV

TINY = {
    "mlp": ModelSpec("mlp", "mlp", 8, 0, 5, 5, 3, 2, 0.01, 1e-3),
    # batch norm on support + query items, as the real Conv-4 (16 px: four 2x2 pools leave 1 px)
    "conv4": ModelSpec("conv4", "conv4", 4, 3, 1, 2, 2, 2, 0.4, 1e-3, image_size=16),
    # the Text preset's shared head: higher adapts it as identical rows
    "text": ModelSpec("text", "text", 64, 3, 2, 2, 2, 1, 3.0, 3e-3, head="shared", buckets=1 << 10, width=12,
                      tokens=(3, 10)),
}


def run(models, impls=None):
    lines: list[str] = []
    rows = train.bench_train(models, impls, rounds=1, memory=False, echo=lines.append, specs=TINY)
    return rows, "\n".join(lines)


def test_higher_is_installed_for_these_tests():
    assert available("higher"), "higher is in the test extra: pip install -e '.[test]'"


@pytest.mark.parametrize("name", list(TINY))
def test_every_implementation_meta_trains_with_the_reference_gradient(name):
    rows, out = run([name])
    assert [r["impl"] for r in rows] == list(IMPLS)
    present = [r for r in rows if r["available"]]
    assert {"functional", "higher", "metagui", "metagui-loop", "metagui-vmap", "metagui-threads"} <= {r["impl"] for r in present}
    for r in present:
        assert r["agrees"] and r["grad_rel64"] <= train.TOLERANCE, (r["impl"], r["grad_rel64"])
        assert r["grad_rel"] <= train.F32_NOTE, (r["impl"], r["grad_rel"])
        assert r["ms"] > 0 and math.isclose(r["tasks_per_s"], TINY[name].tasks / (r["ms"] / 1000))
        assert len(r["times_ms"]) == 1
    ref = next(r for r in rows if r["impl"] == REFERENCE)
    assert ref["vs_reference"] == 1.0 and ref["grad_diff"] == ref["grad_diff64"] == 0.0
    assert ref["q1"] <= ref["ms"] <= ref["q3"]
    auto = next(r for r in rows if r["impl"] == "metagui")
    # auto calibrated in this run (a throwaway folder), timing every mode this machine has
    modes = batching.modes(torch.device("cpu"))
    assert auto["mode"] in modes and auto["calibration"]["measured"]
    assert set(auto["calibration"]["ms"]) == set(modes)
    table = [line for line in out.splitlines() if line.startswith("  ") and "metagui auto:" not in line
             and "floor:" not in line]
    assert len(table) == 1 + len(IMPLS)  # header + one row per implementation
    # the compute floor, timed in the same round: the reference over it bounds every ratio
    assert ref["floor_ms"] > 0 and math.isclose(ref["floor_ratio"], ref["ms"] / ref["floor_ms"])
    assert f"a meta-step grouped in one of these ways beats functional by at most {ref['floor_ratio']:.1f}x here" in out
    # the floor is its fastest grouping: all items at once, task by task, and tasks on threads where they run
    assert set(ref["floor_all_ms"]) == {"all", "tasks"} | ({"threads"} & set(modes))
    assert ref["floor_ms"] == min(ref["floor_all_ms"].values()) == ref["floor_all_ms"][ref["floor_grouping"]]
    assert f"{'functional':<22}" in out and "reference" in out and "DIFFERS" not in out


def test_a_peer_that_computes_something_else_is_flagged(monkeypatch):
    class Off(peers.Functional):
        def meta_backward(self, batch):
            super().meta_backward(batch)
            for p in self.model.parameters():
                p.grad.mul_(1.01)

    monkeypatch.setitem(peers.PEERS, "higher", Off)
    rows, out = run(["mlp"], ["functional", "higher", "metagui-loop"])
    by = {r["impl"]: r for r in rows}
    assert not by["higher"]["agrees"] and by["higher"]["grad_rel64"] > 1e-3
    assert by["metagui-loop"]["agrees"]
    assert "DIFFERS" in next(line for line in out.splitlines() if line.lstrip().startswith("higher"))


def test_an_absent_peer_is_named_with_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "higher", None)  # import higher now raises ImportError
    rows, out = run(["mlp"], ["higher", "metagui-vmap"])
    assert [r["impl"] for r in rows] == ["functional", "higher", "metagui-vmap"]  # the reference always runs
    assert not rows[1]["available"] and rows[2]["agrees"]
    assert "higher: not installed (pip install higher" in out


def test_the_calibration_goes_to_a_throwaway_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    run(["mlp"], ["metagui"])
    assert os.environ[DATA_DIR_ENV] == str(tmp_path) and not (tmp_path / "calibration.json").exists()


def test_unknown_models_and_implementations_are_one_clear_error():
    from metagui.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown resnet.*models: mlp, conv4, text"):
        train.bench_train(["resnet"], specs=train.MODELS)
    with pytest.raises(ConfigError, match="unknown jax"):
        train.bench_train(["mlp"], ["jax"])


def test_peak_memory_comes_from_a_second_process():
    mb = train.measure_memory(TINY["mlp"], "metagui-vmap", "cpu")
    assert mb is None or (mb >= 0 and math.isfinite(mb))  # None: no /proc (not Linux)
    if sys.platform == "linux":
        assert mb is not None


def test_text_batches_look_like_the_demo_intents():
    spec = train.MODELS["text"]
    b = spec.make_batch(0)
    assert b.support_x.shape == (4, 25, 164) and b.query_x.shape == (4, 25, 164)
    lengths = (b.support_x > 0).sum(-1).float()
    assert 30 <= lengths.min() and lengths.max() <= 100 and 55 < lengths.mean() < 75
    assert b.support_x.dtype == torch.int64 and int(b.support_x.max()) < spec.buckets
