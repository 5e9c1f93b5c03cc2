"""Exports: bundles, TorchScript and ONNX for each algorithm family, checked against the live
model here and again in a fresh process that has only torch and onnxruntime; tampered
bundles are refused and leave nothing behind."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save

from metagui.cli import main
from metagui.core import algorithms, export
from metagui.core.data import load_dataset
from metagui.core.errors import Cancelled, MetaGUIError
from metagui.core.evaluation import encode_items, load_learner
from metagui.core.experiment import Experiment
from metagui.core.export import (
    BundleError,
    Episode,
    ExportError,
    ModelSource,
    data_episodes,
    export_model,
    export_run,
    head_only_reference,
    import_bundle,
    live_predict,
    load_source,
    open_bundle,
    predict,
)
from metagui.core.models import make_backbone
from metagui.core.store import RunStore
from metagui.core.trainer import Trainer, TrainingControl
from tests.helpers import small_config

FAMILIES = ("protonet-text", "protonet-image", "maml-image", "maml-sinusoid")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Four tiny runs (two steps each, sinusoid five), one per exported family."""
    root = tmp_path_factory.mktemp("export-runs")
    store = RunStore(root / "runs.db")
    runs, data = {}, {}

    def train(key, cfg, dataset=None):
        cfg.training.val_episodes = 2
        cfg.algorithm.hyperparams["meta_batch"] = 1
        exp = Experiment.prepare(cfg, dataset=dataset) if dataset is not None else None
        result = Trainer(cfg, store, None, TrainingControl(), experiment=exp).run()
        assert result.status == "completed", result.error
        runs[key], data[key] = result.run_id, dataset

    glyphs = small_config("protonet", "glyphs", steps=2)
    glyphs.dataset.image_size = 16  # Conv4 at 16 px: a quarter of the work of 28 px
    ds = load_dataset(glyphs.dataset)
    train("protonet-image", glyphs, ds)
    maml = small_config("maml", "glyphs", steps=2, inner_steps=1, eval_steps=2)
    maml.dataset = glyphs.dataset
    train("maml-image", maml, ds)
    text = small_config("protonet", "intents", steps=2)
    train("protonet-text", text, load_dataset(text.dataset))
    train("maml-sinusoid", small_config("maml", "sinusoid", steps=5, eval_steps=3))
    yield store, runs, data
    store.close()


def _src(trained, key) -> ModelSource:
    store, runs, _ = trained
    return load_source(store, runs[key])


def _episode(trained, key) -> Episode:
    _, _, data = trained
    return data_episodes(_src(trained, key), 1, dataset=data[key], load=False)[0]


# --- TorchScript and ONNX, reloaded without MetaGUI -----------------------------------------
FRESH = r"""
import json, runpy, sys
from pathlib import Path
import numpy as np, onnxruntime as ort, torch

cases = json.loads(Path(sys.argv[1]).read_text())
out = {}
for case in cases:
    d = np.load(case["inputs"])
    sx, sy, qx = d["sx"], d["sy"], d["qx"]
    res = {}
    ada = ort.InferenceSession(case["onnx-adaptive"], providers=["CPUExecutionProvider"])
    got = ada.run(["probabilities" if sy.ndim == 1 else "values"], {"support_x": sx, "support_y": sy, "query_x": qx})[0]
    res["onnx-adaptive"] = float(np.abs(got - d["adaptive"]).max())
    plain = ort.InferenceSession(case["onnx"], providers=["CPUExecutionProvider"])
    outs = plain.run(None, {"x": qx})
    res["onnx embeddings"] = float(np.abs(outs[0] - d["embeddings"]).max())
    if "outputs" in d:
        res["onnx outputs"] = float(np.abs(outs[1] - d["outputs"]).max())
    ts = torch.jit.load(case["torchscript"])
    with torch.no_grad():
        res["torchscript forward"] = float(np.abs(ts(*map(torch.from_numpy, (sx, sy, qx))).numpy() - d["adaptive"]).max())
        res["torchscript embed"] = float(np.abs(ts.embed(torch.from_numpy(qx)).numpy() - d["embeddings"]).max())
    snip = case.get("snippet")
    if snip:  # the copyable snippet, run as a user would paste it
        folder = Path(snip["path"]).parent
        import os
        os.chdir(folder)
        g = runpy.run_path(snip["path"], run_name="snippet")
        got = g["predict"](*snip["args"])
        flat = [list(p.values()) if isinstance(p, dict) else [p] for p in got]
        res["snippet"] = float(np.abs(np.array(flat) - np.array(snip["expected"])).max())
    out[case["name"]] = res
out["metagui imported"] = [m for m in sys.modules if m.split(".")[0] == "metagui"]
print(json.dumps(out))
"""


def _snippet_case(src: ModelSource, fmt: str, path: Path, folder: Path) -> dict:
    """Raw items for the generated snippet and what the live model (export semantics) says."""
    (folder / "snippet.py").write_text(export.code_snippet(src, fmt, path), encoding="utf-8")
    learner = src.learner
    if src.regression:
        xs, ys, qs = [-2.0, -0.5, 1.0, 2.5], [-1.5, -0.3, 0.8, 1.2], [0.0, 3.0]
        ep = Episode(torch.tensor(xs)[:, None], torch.tensor(ys)[:, None], torch.tensor(qs)[:, None])
        return {"path": str(folder / "snippet.py"), "args": [xs, ys, qs],
                "expected": head_only_reference(learner, ep).tolist()}
    if src.pre.modality == "text":
        items = ["turn on the light", "lights on please", "turn off the fan", "switch the fan off"]
        labels, queries = ["on", "on", "off", "off"], ["please turn the lamp on", "fan off", ""]
        expected = predict(learner, src.pre, items, labels, queries)["predictions"]
        return {"path": str(folder / "snippet.py"), "args": [items, labels, queries],
                "expected": [list(p["probabilities"].values()) for p in expected]}
    rng = np.random.default_rng(0)
    paths = []
    for i in range(src.n_way + 2):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(p)
        paths.append(p.name)
    labels = [f"c{i}" for i in range(src.n_way)]
    support, queries = paths[: src.n_way], paths[src.n_way:]
    xs = encode_items([str(folder / p) for p in paths], src.pre)
    ep = Episode(xs[: src.n_way], torch.arange(src.n_way), xs[src.n_way:])
    return {"path": str(folder / "snippet.py"), "args": [support, labels, queries],
            "expected": head_only_reference(learner, ep).tolist()}


@pytest.fixture(scope="module")
def graph_exports(trained, tmp_path_factory):
    """TorchScript, ONNX and adaptive ONNX of each family, with held-out data for the adaptive one."""
    store, runs, data = trained
    root = tmp_path_factory.mktemp("graphs")
    out = {}
    for key in FAMILIES:
        (root / key).mkdir()
        for fmt in ("torchscript", "onnx", "onnx-adaptive"):
            ds = data[key] if fmt == "onnx-adaptive" else None
            out[key, fmt] = export_run(store, runs[key], fmt, root / key, dataset=ds, load_data=False, episodes=3)
    return out


def test_graph_exports_match_the_live_model_in_a_fresh_process(trained, graph_exports, tmp_path):
    _, _, data = trained
    cases = []
    for key in FAMILIES:
        folder = tmp_path / key
        folder.mkdir()
        files = {}
        for fmt in ("torchscript", "onnx", "onnx-adaptive"):
            res = graph_exports[key, fmt]
            assert res.passed and res.max_abs_diff <= 1e-4, res.parity
            held_out = fmt == "onnx-adaptive" or key == "maml-sinusoid"
            assert any("held-out" in k for k in res.parity) == held_out
            assert Path(res.path).is_file() and all(Path(p).is_file() for p in res.files)
            assert "## Parity with the live model" in res.card and "| check |" in res.card
            files[fmt] = res.path
        src = _src(trained, key)
        ep = _episode(trained, key) if data[key] is not None else export.synthetic_episode(src, 0, 7, 9, 3)
        with torch.no_grad():
            adaptive = head_only_reference(src.learner, ep) if src.learner.family == "optimisation" else live_predict(src.learner, ep)
            arrays = {"sx": ep.sx.numpy(), "sy": ep.sy.numpy(), "qx": ep.qx.numpy(), "adaptive": adaptive.numpy(),
                      "embeddings": src.learner.backbone(ep.qx).numpy()}
            if src.learner.family == "optimisation":
                arrays["outputs"] = src.learner.head(src.learner.backbone(ep.qx)).numpy()
        np.savez(folder / "inputs.npz", **arrays)
        case = {"name": key, "inputs": str(folder / "inputs.npz"), **files}
        snippet_fmt = {"protonet-text": "onnx-adaptive", "maml-image": "torchscript", "maml-sinusoid": "onnx-adaptive"}
        if key in snippet_fmt:
            path = Path(files[snippet_fmt[key]])
            case["snippet"] = _snippet_case(src, snippet_fmt[key], path, path.parent)
        cases.append(case)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-I", "-c", FRESH, str(tmp_path / "cases.json")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("metagui imported") == []
    assert set(out) == set(FAMILIES)
    for key, res in out.items():
        assert all(v <= 1e-4 for v in res.values()), (key, res)
    assert {"snippet" in out[k] for k in ("protonet-text", "maml-image", "maml-sinusoid")} == {True}


def test_maml_model_card_says_what_adapts_and_measures_the_gap(graph_exports):
    res = graph_exports["maml-image", "onnx-adaptive"]
    ad = res.adaptation
    assert ad["what_adapts"] == "head" and ad["episodes"] == 3 and 0 <= ad["live"] <= 1 and 0 <= ad["exported"] <= 1
    assert "adapt **only the final linear layer**" in res.card and "for full adaptation" in res.card
    assert "`support_x`" in res.card and "`probabilities`" in res.card and "[S, 1, 16, 16]" in res.card
    spec = json.loads(Path(res.path + ".json").read_text())
    assert spec["opset"] >= 17 and spec["graphs"][0]["inputs"][1]["name"] == "support_y"
    assert graph_exports["protonet-image", "onnx-adaptive"].adaptation["what_adapts"].endswith("(exact)")


def test_every_snippet_is_valid_python(graph_exports, trained):
    for (key, fmt), res in graph_exports.items():
        compile(res.snippet, f"{key}-{fmt}", "exec")
        assert res.snippet in res.card or res.snippet.rstrip() in res.card
    src = _src(trained, "protonet-image")
    compile(export.code_snippet(src, "bundle", Path("m.metagui")), "bundle", "exec")


def test_text_card_documents_the_featurizer(graph_exports):
    res = graph_exports["protonet-text", "onnx"]
    assert "(1 + n - ngram_min) * B + 1 + zlib.crc32(g.encode('utf-8')) % (B - 1)" in res.card and "w:" in res.card
    assert "import zlib" in res.snippet and "metagui" not in res.snippet
    assert "parity was checked on random inputs" in " ".join(res.notes)


# --- other learners of the exported families (random weights are enough for parity) --------
def _reloaded_outputs(fmt: str, path: str, ep: Episode) -> dict[str, torch.Tensor]:
    """What the written file computes for ``ep``, loaded on its own (not the exporter's check)."""
    if fmt == "onnx-adaptive":
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = {"support_x": ep.sx.numpy(), "support_y": ep.sy.numpy(), "query_x": ep.qx.numpy()}
        return {"adapted": torch.from_numpy(sess.run(None, feed)[0])}
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.10+
            ts = torch.jit.load(path)
        with torch.no_grad():
            return {"adapted": ts(ep.sx, ep.sy, ep.qx), "embedded": ts.embed(ep.qx)}
    reopened = open_bundle(path).learner
    with torch.no_grad():
        return {"adapted": live_predict(reopened, ep), "embedded": reopened.backbone(ep.qx),
                **{f"weight {k}": v for k, v in reopened.state_dict().items()}}


@pytest.mark.parametrize("algorithm,source,hp,formats", [
    ("matching", "glyphs", {"fce": True, "fce_steps": 2}, ("onnx-adaptive", "torchscript", "bundle")),
    ("relation", "glyphs", {"relation_hidden": 16}, ("onnx-adaptive", "bundle")),
    ("relation", "glyphs", {"relation_hidden": 16, "cosine_feature": True, "cosine_skip": True, "pair_dim": 8},
     ("onnx-adaptive", "torchscript")),
    ("metasgd", "sinusoid", {"eval_steps": 2}, ("onnx-adaptive", "torchscript", "bundle")),
    ("reptile", "sinusoid", {"eval_steps": 4}, ("onnx-adaptive", "bundle")),
])
def test_other_learners_export_with_parity(algorithm, source, hp, formats, tmp_path):
    cfg = small_config(algorithm, source, **hp)
    from metagui.core.models import Preprocessing

    pre = Preprocessing(modality="regression") if source == "sinusoid" else Preprocessing(modality="image", image_size=16)
    torch.manual_seed(0)
    n_way = 0 if source == "sinusoid" else cfg.task.way
    learner = algorithms.create(algorithm, make_backbone("auto", pre), n_way, cfg.algorithm.hyperparams).eval()
    meta = {"algorithm": algorithm, "n_way": n_way, "step": 0, "config": cfg.to_dict(), "preprocessing": pre.as_dict()}
    src = ModelSource(learner, meta, cfg, pre)
    # two episode sizes (no shape baked into a trace), other inputs than the exporter's own check
    way = 0 if source == "sinusoid" else cfg.task.way
    episodes = [export.synthetic_episode(src, way, 2, 3, 11), export.synthetic_episode(src, way, 4, 5, 12)]
    for fmt in formats:
        res = export_model(src, fmt, tmp_path, load_data=False)
        for ep in episodes:
            got = _reloaded_outputs(fmt, res.path, ep)
            head_only = learner.family == "optimisation" and fmt != "bundle"  # as the graphs adapt
            with torch.no_grad():  # what the live model says
                want = {"adapted": head_only_reference(learner, ep) if head_only else live_predict(learner, ep),
                        "embedded": learner.backbone(ep.qx),
                        **{f"weight {k}": v for k, v in learner.state_dict().items()}}
            for key, value in got.items():
                assert value.shape == want[key].shape, (fmt, key)
                diff = float((value.double() - want[key].double()).abs().max()) if value.numel() else 0.0
                assert diff <= 1e-4, (fmt, key, diff)


# --- bundles ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", FAMILIES)
def test_bundle_round_trip(trained, tmp_path, key):
    store, runs, data = trained
    ds = data[key] if key == "protonet-text" else None  # held-out data once is enough here
    res = export_run(store, runs[key], "bundle", tmp_path, dataset=ds, load_data=False, episodes=2)
    assert res.passed and res.parity["weights"] == 0.0 and res.max_abs_diff == 0.0
    with zipfile.ZipFile(res.path) as zf:
        assert sorted(zf.namelist()) == sorted(export.BUNDLE_MEMBERS)
        assert "| weights | 0.00e+00 | ok |" in zf.read("model_card.md").decode()
    b = open_bundle(res.path)
    src = _src(trained, key)
    for k, v in src.learner.state_dict().items():
        assert torch.equal(v, b.learner.state_dict()[k])
    assert b.model["algorithm"] == src.algorithm and b.pre == src.pre and b.config.to_dict() == src.config.to_dict()
    assert b.metrics["parity"]["weights"] == 0.0 and b.metrics["best_val"] == src.meta["best_val"]
    if ds is not None:
        assert len(b.labels["classes"]) == len(ds.classes) and b.metrics["adaptation"]["episodes"] == 2
    # reopens in the app's store: a completed run with a best checkpoint
    other = RunStore(tmp_path / "other.db")
    rid = import_bundle(other, res.path)
    assert other.run(rid)["status"] == "completed" and other.run(rid)["tags"] == ["imported"]
    folder = Path(other.checkpoints(rid)["best"]["path"]).parent
    learner, _ = load_learner(folder, "best", torch.device("cpu"))
    ep = export.synthetic_episode(src, src.n_way, 2, 3, 5)
    assert torch.allclose(live_predict(learner, ep), live_predict(src.learner, ep), atol=1e-6)
    other.close()


def test_predict_command_and_conversion_of_a_bundle(trained, tmp_path, capsys):
    store, runs, _ = trained
    res = export_run(store, runs["protonet-text"], "bundle", tmp_path, load_data=False)
    (tmp_path / "support.csv").write_text("item,label\nturn on the light,on\nlights on,on\nturn off the fan,off\nfan off,off\n")
    (tmp_path / "queries.txt").write_text("please turn the lamp on\nswitch the fan off\n")
    assert main(["predict", res.path, "--support", str(tmp_path / "support.csv"), "--query", str(tmp_path / "queries.txt")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["labels"] == ["off", "on"] and len(out["predictions"]) == 2
    assert abs(sum(out["predictions"][0]["probabilities"].values()) - 1) < 1e-4
    # a bundle converts to ONNX without the store
    assert main(["export", res.path, "--format", "onnx-adaptive", "--out", str(tmp_path), "--no-data"]) == 0
    conv = json.loads(capsys.readouterr().out)
    assert conv["passed"] and Path(conv["path"]).is_file()


def test_cli_export_formats_and_errors(trained, tmp_path, capsys):
    store, runs, _ = trained
    rid = str(runs["maml-sinusoid"])
    for fmt in ("bundle", "torchscript", "onnx", "onnx-adaptive"):
        out = tmp_path / f"m-{fmt}{export.SUFFIXES[fmt]}"
        assert main(["--db", str(store.path), "export", rid, "--format", fmt, "--out", str(out), "--episodes", "3"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["passed"] and res["max_abs_diff"] <= 1e-4 and res["path"] == str(out) and out.is_file()
        assert res["adaptation"]["metric"] == "mse"
    assert main(["--db", str(store.path), "export", "999", "--out", str(tmp_path)]) == 2
    assert "no run with id 999" in capsys.readouterr().err
    assert main(["--db", str(store.path), "export", rid, "--out", str(tmp_path / "missing" / "x.onnx"), "--format", "onnx"]) == 2
    assert "target folder does not exist" in capsys.readouterr().err


def test_failed_or_cancelled_export_writes_nothing(trained, tmp_path, monkeypatch):
    store, runs, _ = trained
    with pytest.raises(Cancelled):
        export_run(store, runs["maml-sinusoid"], "onnx", tmp_path, cancel=lambda: True)
    monkeypatch.setattr(export.source, "TOLERANCE", -1.0)  # no export can pass
    with pytest.raises(ExportError, match="parity check failed.*nothing was written"):
        export_run(store, runs["maml-sinusoid"], "onnx-adaptive", tmp_path, load_data=False)
    with pytest.raises(ExportError):
        export_run(store, runs["maml-sinusoid"], "bundle", tmp_path, load_data=False)
    assert list(tmp_path.iterdir()) == []


# --- hostile bundles ----------------------------------------------------------------------------
def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}


def _raw_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def good_bundle(trained, tmp_path_factory):
    store, runs, _ = trained
    return export_run(store, runs["maml-sinusoid"], "bundle", tmp_path_factory.mktemp("bundle"), load_data=False).path


def _tampered(good: str) -> dict[str, tuple[bytes, str]]:
    m = _members(good)
    with zipfile.ZipFile(good) as zf:
        manifest = zf.read("manifest.json")
    state = {k: v for k, v in open_bundle(good).learner.state_dict().items()}
    wrong = dict(state)
    wrong["head.weight"] = torch.zeros(3, 40)
    pre = json.loads(m["preprocessing.json"])
    return {
        "not a zip": (b"MZ\x90\x00 definitely not a zip", "not a zip file"),
        "path traversal": (_raw_zip({"manifest.json": manifest, **m, "../../evil.py": b"import os"}), "unsafe file name"),
        "absolute path": (_raw_zip({"/etc/cron.d/evil": b"x", **m}), "unsafe file name"),
        "unexpected file": (_raw_zip({"manifest.json": manifest, **m, "setup.py": b"x"}), "unexpected file"),
        "pickle inside": (_raw_zip({"manifest.json": manifest, **m, "weights.pt": b"\x80\x04"}), "unexpected file"),
        "missing weights": (_raw_zip({"manifest.json": manifest, **{k: v for k, v in m.items() if k != "weights.safetensors"}}),
                            "missing weights.safetensors"),
        "altered weights": (_raw_zip({"manifest.json": manifest, **m, "weights.safetensors": save(wrong)}), "checksum"),
        "wrong shapes": (export.bundle.zip_bytes({**m, "weights.safetensors": save(wrong)}), "tensor head.weight"),
        "huge preprocessing": (export.bundle.zip_bytes({**m, "preprocessing.json": json.dumps({**pre, "text_buckets": 1 << 40}).encode()}),
                               "out of range"),
        "zip bomb": (_raw_zip({"manifest.json": manifest, **m, "weights.safetensors": bytes(64 << 20)}), "zip bomb"),
        "bad model": (export.bundle.zip_bytes({**m, "model.json": json.dumps({"algorithm": "os.system", "n_way": 0}).encode()}),
                      "unknown algorithm"),
    }


def test_tampered_bundles_are_refused_and_change_nothing(good_bundle, tmp_path, capsys):
    store = RunStore(tmp_path / "app.db")
    for what, (data, reason) in _tampered(good_bundle).items():
        path = tmp_path / f"{what.replace(' ', '-')}.metagui"
        path.write_bytes(data)
        with pytest.raises(BundleError, match=reason):
            open_bundle(path)
        with pytest.raises(MetaGUIError):
            import_bundle(store, path)
        assert main(["predict", str(path), "--support", "s.csv", "--query", "q.txt"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("metagui: error:"), (what, err)
    assert store.runs() == [] and not store.runs_dir.exists()
    assert not (tmp_path / "evil.py").exists() and not (tmp_path.parent / "evil.py").exists()
    store.close()


def test_bundles_of_other_families_are_bundle_only():
    cfg = small_config("protonet", "intents")
    assert export.export_problem(cfg, "onnx") == "" and "unknown export format" in export.export_problem(cfg, "tflite")
    bundle_only = [n for n, c in algorithms.REGISTRY.items() if c.family not in export.EXPORT_FAMILIES]
    for name in bundle_only:
        cfg.algorithm.name = name
        assert "bundle only" in export.export_problem(cfg, "onnx-adaptive")
        assert export.export_problem(cfg, "bundle") == ""


def test_a_metric_graph_carries_the_domain_guard():
    """On a pretrained encoder's adapter, the traced metric graph answers a support set from
    another domain with the frozen class means, as the live learner does."""
    from metagui.core.export.graphs import ExportGraphs
    from metagui.core.models import EmbeddingAdapter
    from tests.test_algorithms import two_domains

    (home, home_y), (away, away_y) = two_domains()
    torch.manual_seed(0)
    learner = algorithms.create("protonet", EmbeddingAdapter(16), 3, {"distance": "cosine"}).eval()
    with torch.no_grad():
        learner.backbone.linear.weight.copy_(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)))
    learner.backbone.fit_domain(home[:16], home[16:])
    graph = torch.jit.trace(ExportGraphs(learner).eval(), (home[:6], home_y[:6], home[6:8]), check_trace=False)
    pick, ask = torch.tensor([0, 1, 8, 9, 16, 17]), torch.tensor([2, 3, 10, 11, 18, 19])
    for x, y in ((home, home_y), (away, away_y)):
        live = learner.adapt(x[pick], y[pick], 3)
        assert torch.allclose(graph(x[pick], y[pick], x[ask]), live.predict(x[ask]), atol=1e-5)
    assert live.note  # the away domain got the frozen class means
