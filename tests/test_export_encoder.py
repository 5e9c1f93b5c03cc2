"""Exports of models on a pretrained text encoder (``core.export.encoder``): graphs carry the
encoder, bundles pin it by id and checksum. Tiny sentence-transformers folders that the
tests save themselves; one check on the shared all-MiniLM-L6-v2 when it is at hand."""

from __future__ import annotations

import json
import runpy
import zipfile

import pytest

from metagui.cli import main
from metagui.core.config import RunConfig
from metagui.core.export import BundleError, EncoderNeeded, export_run, open_bundle, predict
from metagui.core.export.bundle import zip_bytes
from tests.helpers import MINILM, needs_minilm, save_sentence_transformer, train_on_encoder

TEXTS = ["turn on the light", "switch off the fan", "what is the weather today", "set a timer for minutes"]
LABELS = ["on", "off", "weather", "timer"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoders") / "tiny-encoder"
    save_sentence_transformer(folder)
    return folder


@pytest.mark.parametrize("algorithm", ["protonet", "maml"])
def test_graphs_carry_the_encoder_and_match_the_live_model(encoder, tmp_path, algorithm):
    store, run_id = train_on_encoder(tmp_path, encoder, algorithm)
    for fmt in ("torchscript", "onnx", "onnx-adaptive"):
        result = export_run(store, run_id, fmt, tmp_path, episodes=3)
        assert result.passed and 0 < result.max_abs_diff <= 1e-4, (fmt, result.parity)
        names = {p.rsplit("/", 1)[-1] for p in result.files}
        assert f"{result.path.rsplit('/', 1)[-1]}.tokenizer.json" in names
        assert "Text encoder: **the folder tiny-encoder**" in result.card and "chosen by you" in result.card
        assert "WordPiece" in result.card and "truncated to 32 tokens" in result.card
    if algorithm != "protonet":
        return  # MAML's graphs adapt the head only (the card measures the gap): no raw-text match
    # the adaptive ONNX file, run by its own snippet with onnxruntime and the tokenizer beside it
    adaptive = tmp_path / f"run-{run_id}-{algorithm}-adaptive.onnx"
    snippet = json.loads(adaptive.with_name(adaptive.name + ".json").read_text())
    assert snippet["input"]["dtype"] == "int64"
    code = export_run(store, run_id, "onnx-adaptive", tmp_path, episodes=0).snippet
    (tmp_path / "snippet.py").write_text(code)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        ns = runpy.run_path(str(tmp_path / "snippet.py"))
    support, labels = TEXTS[:3], LABELS[:3]
    out = ns["predict"](support, labels, ["turn on the lamp", "cancel my card"])
    bundle_path = export_run(store, run_id, "bundle", tmp_path, episodes=0).path
    bundle = open_bundle(bundle_path)
    live = predict(bundle.learner, bundle.pre, support, labels, ["turn on the lamp", "cancel my card"])
    for got, want in zip(out, live["predictions"], strict=True):
        assert max(abs(got[k] - want["probabilities"][k]) for k in got) <= 1e-4


def test_a_bundle_pins_its_encoder_and_refuses_another(encoder, tmp_path, monkeypatch, capsys):
    store, run_id = train_on_encoder(tmp_path, encoder)
    result = export_run(store, run_id, "bundle", tmp_path, episodes=0)
    assert result.files[result.path] < 1_000_000  # the encoder's weights are not inside
    model = json.loads(zipfile.ZipFile(result.path).read("model.json"))
    pin = model["text_encoder"]
    assert pin["id"] == "" and pin["name"] == "tiny-encoder" and len(pin["sha256"]) == 64
    here = predict(*_parts(open_bundle(result.path)), TEXTS[:3], LABELS[:3], ["turn on the lamp"])

    # another computer: no record of where that encoder was used
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(EncoderNeeded, match=r"tiny-encoder .*--encoder FOLDER"):
        open_bundle(result.path)
    there = predict(*_parts(open_bundle(result.path, encoder=encoder)), TEXTS[:3], LABELS[:3], ["turn on the lamp"])
    assert there == here
    (tmp_path / "support.csv").write_text("text,label\n" + "".join(f"{t},{la}\n" for t, la in zip(TEXTS[:3], LABELS[:3], strict=True)))
    (tmp_path / "queries.txt").write_text("turn on the lamp\n")
    assert main(["predict", result.path, "--support", str(tmp_path / "support.csv"),
                 "--query", str(tmp_path / "queries.txt"), "--encoder", str(encoder)]) == 0
    assert json.loads(capsys.readouterr().out) == here
    other = tmp_path / "other-encoder"
    save_sentence_transformer(other, seed=1)
    with pytest.raises(BundleError, match="not the one this model was trained on"):
        open_bundle(result.path, encoder=other)

    # a tampered pin is refused before anything is looked up
    members = {n: zipfile.ZipFile(result.path).read(n) for n in zipfile.ZipFile(result.path).namelist()}
    for bad in ({"id": "../../etc"}, {"sha256": "0" * 10}, {"weights": "evil.py"}, {"dim": 10**9}):
        tampered = {**model, "text_encoder": {**pin, **bad}}
        data = zip_bytes({n: b for n, b in members.items() if n != "manifest.json"} | {"model.json": json.dumps(tampered).encode()})
        with pytest.raises(BundleError, match="text encoder"):
            open_bundle(data, encoder=encoder)


def _parts(bundle):
    return bundle.learner, bundle.pre


@needs_minilm
def test_minilm_models_export_with_the_transformer_inside(tmp_path):
    from metagui.core import algorithms
    from metagui.core.encoder_source import encoder_reference
    from metagui.core.export import ModelSource, export_model
    from metagui.core.models import Preprocessing, make_backbone

    # an untrained learner on the real encoder: the export is what is under test, not training
    pre = Preprocessing(modality="text", text_encoder=encoder_reference(str(MINILM)), text_encoder_dim=384)
    learner = algorithms.create("protonet", make_backbone("text", pre), 3, {"distance": "cosine"})
    cfg = RunConfig(name="minilm")
    cfg.dataset.source, cfg.algorithm.name, cfg.algorithm.text_encoder = "intents", "protonet", str(MINILM)
    src = ModelSource(learner, {"algorithm": "protonet", "n_way": 3, "step": 0}, cfg, pre)
    result = export_model(src, "onnx-adaptive", tmp_path, load_data=False)
    assert result.passed and result.max_abs_diff <= 1e-4
    assert result.files[result.path] > 80_000_000  # the transformer's weights are in the graph
    bundle = export_model(src, "bundle", tmp_path, load_data=False)
    pin = json.loads(zipfile.ZipFile(bundle.path).read("model.json"))["text_encoder"]
    assert pin["id"] == "sentence-transformers/all-MiniLM-L6-v2" and pin["licence"] == "Apache-2.0"
