"""``metagui bench gui`` drives the real window: one short run, no timing claims."""

import math

import pytest

from metagui.bench.gui import bench_gui
from metagui.core.errors import ConfigError


def test_the_window_trains_maml_on_glyphs_and_reports_its_longest_stall(qapp, monkeypatch, tmp_path):
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "mine"))
    lines: list[str] = []
    rows = bench_gui(steps=1, modes=["loop"], echo=lines.append)
    assert [r["mode"] for r in rows] == ["loop"] and rows[0]["steps"] == 1
    assert rows[0]["beats"] > 0 and math.isfinite(rows[0]["max_stall_ms"]) and rows[0]["max_stall_ms"] >= 0
    assert any(line.lstrip().startswith("loop") for line in lines)
    import os

    assert os.environ["METAGUI_DATA_DIR"] == str(tmp_path / "mine")  # put back after the bench's throwaway folder


def test_unknown_modes_are_one_clear_error():
    with pytest.raises(ConfigError, match="unknown mode sometimes"):
        bench_gui(modes=["sometimes"])
