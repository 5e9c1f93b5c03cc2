"""Bring-your-own sentence encoders (``core.pretrained``), with tiny randomly initialised
models that each test saves itself: nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metagui.core.config import RunConfig
from metagui.core.errors import ConfigError
from metagui.core.pretrained import SentenceEncoder, detect_format
from tests.helpers import WORDS, save_sentence_transformer

TEXTS = ["turn on the light", "please switch off the fan", "what is the weather today", "set a timer for 5 minutes",
         "cancel my card", "unknown words only"]


class TokenStates(torch.nn.Module):
    """A toy 'transformer': embedding + linear, one state per token."""

    def __init__(self, vocab: int, dim: int = 12) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, input_ids, attention_mask):
        return torch.tanh(self.proj(self.emb(input_ids))) * attention_mask.unsqueeze(-1).to(torch.float32)


def save_onnx_encoder(folder: Path) -> TokenStates:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    model = TokenStates(len(vocab)).eval()
    ids = torch.tensor([[2, 3, 4]])
    torch.onnx.export(model, (ids, torch.ones_like(ids)), str(folder / "model.onnx"), dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                                    "last_hidden_state": {0: "b", 1: "t"}})
    return model


def test_onnx_folder_embeds_like_the_model(tmp_path):
    model = save_onnx_encoder(tmp_path / "enc")
    assert detect_format(tmp_path / "enc") == "onnx"
    enc = SentenceEncoder(tmp_path / "enc")
    got = enc.encode(TEXTS)
    assert got.shape == (len(TEXTS), 12) and enc.dim == 12
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tmp_path / "enc" / "tokenizer.json"))
    for text, row in zip(TEXTS, got, strict=True):
        ids = torch.tensor([tok.encode(text).ids])
        with torch.no_grad():
            want = model(ids, torch.ones_like(ids)).mean(1)[0]
        np.testing.assert_allclose(row, (want / want.norm()).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_sentence_transformers_folder_embeds_like_the_package(tmp_path):
    from sentence_transformers import SentenceTransformer

    save_sentence_transformer(tmp_path / "st")
    assert detect_format(tmp_path / "st") == "sentence-transformers"
    enc = SentenceEncoder(tmp_path / "st")
    assert enc.dim == 16
    want = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(enc.encode(TEXTS), want, atol=1e-5)


def test_folders_that_are_not_encoders_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        detect_format(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="modules.json"):
        detect_format(tmp_path / "empty")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match="tokenizer.json"):
        detect_format(tmp_path / "half")


def test_a_run_on_a_pretrained_encoder_trains_saves_and_reloads(tmp_path):
    from metagui.core.evaluation import load_learner
    from metagui.core.experiment import Experiment
    from metagui.core.models import EmbeddingAdapter, TextFeaturizer
    from metagui.core.trainer import Trainer

    save_onnx_encoder(tmp_path / "enc")
    cfg = RunConfig(name="byo")
    cfg.dataset.source = "intents"
    cfg.algorithm.name = "protonet"
    cfg.algorithm.text_encoder = str(tmp_path / "enc")
    cfg.task.way, cfg.task.shot, cfg.task.query = 3, 2, 2
    cfg.training.steps, cfg.training.val_every, cfg.training.val_episodes = 6, 3, 10
    assert RunConfig.from_toml(cfg.to_toml()).algorithm.text_encoder == str(tmp_path / "enc")
    exp = Experiment.prepare(cfg)
    assert exp.inputs.dtype == torch.float32 and exp.inputs.shape[1] == 12
    trainer = Trainer(cfg, experiment=exp, run_dir=tmp_path / "run")
    result = trainer.run()
    assert result.status == "completed"
    trained = trainer.learner.state_dict()
    initial = exp.build_learner().state_dict()
    assert any(not torch.equal(v, initial[k]) for k, v in trained.items())  # training moved the weights
    learner, meta = load_learner(tmp_path / "run", "last", torch.device("cpu"))
    assert isinstance(learner.backbone, EmbeddingAdapter) and meta["step"] == 6
    assert learner.backbone.guards_domain  # the meta-training domain travels with the checkpoint
    reloaded = learner.state_dict()
    assert reloaded.keys() == trained.keys()
    for k, v in trained.items():
        assert torch.equal(reloaded[k], v), k
    assert json.loads(json.dumps(meta["preprocessing"]))["text_encoder"] == str((tmp_path / "enc").resolve())
    from metagui.core.models import Preprocessing

    texts = ["turn on the light", "cancel my card", "turn off the lamp"]
    pre = Preprocessing.from_dict(meta["preprocessing"])
    assert torch.equal(TextFeaturizer(pre)(texts), TextFeaturizer(exp.pre)(texts))  # the same encoder inputs
    from metagui.core.chat import ChatEngine

    assert ChatEngine(learner, pre).method().endswith("on enc sentence embeddings")  # the Try it pane says which
