"""The pretrained text encoder of a model, as exports carry it.

- **Bundles pin it**: the encoder's model id (or, for a private folder, its name) and the
  sha256 of its weights file go into ``model.json``. Opening the bundle finds the encoder the
  way the app does (installed package, Hugging Face cache; a private folder only when the
  user names it) and refuses a copy whose weights differ. An 88 MB encoder is not copied into
  every bundle, and a bundle never makes MetaGUI load a folder it names.
- **TorchScript and ONNX carry it inside**: ``SentenceTower`` is the encoder as a torch
  module (token ids -> transformer -> pooling -> unit length), traced together with the
  learner. The tokenizer travels beside the file (``<file>.tokenizer.json``) and the model
  card gives its specification.
"""

from __future__ import annotations

import functools
import json
import random
import re
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metagui.core.errors import ConfigError, MetaGUIError
from metagui.core.export.source import Episode, ExportError, ModelSource

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")
_SHA = re.compile(r"[0-9a-f]{64}")


class EncoderMismatch(MetaGUIError):
    """The encoder at hand is not the one a model was trained on, or cannot be found."""


class EncoderNotFound(EncoderMismatch):
    """This computer has no copy of the pinned encoder that it can find by itself."""


@dataclass(frozen=True)
class EncoderPin:
    """What a bundle records to find its encoder again and to know it is the same one."""

    id: str  # hub model id; "" for a private folder (then ``name`` is the folder's name)
    name: str
    weights: str  # the weights file the checksum is of
    sha256: str
    dim: int
    licence: str
    why: str  # why the run used it (the config's text_encoder_why)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        return self.id or f"the folder {self.name}"

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> EncoderPin:
        """A pin read from an untrusted bundle: every field checked."""
        from metagui.core.encoder_source import is_model_id

        if not isinstance(raw, dict):
            raise EncoderMismatch(f"{where}: model.json describes no text encoder")
        try:
            pin = cls(**{k: raw[k] for k in ("id", "name", "weights", "sha256", "dim", "licence", "why")})
        except (KeyError, TypeError):
            raise EncoderMismatch(f"{where}: model.json has an incomplete text encoder entry") from None
        text_ok = all(isinstance(v, str) and len(v) < 500 for v in (pin.id, pin.name, pin.licence, pin.why))
        if (not text_ok or pin.weights not in WEIGHT_FILES or not isinstance(pin.sha256, str)
                or not _SHA.fullmatch(pin.sha256) or isinstance(pin.dim, bool) or not isinstance(pin.dim, int)
                or not 1 <= pin.dim <= 16384 or (pin.id and not is_model_id(pin.id)) or "/" in pin.name
                or "\\" in pin.name):
            raise EncoderMismatch(f"{where}: model.json has an invalid text encoder entry")
        return pin


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"{folder} has no weights file ({', '.join(WEIGHT_FILES)})")


def encoder_folder(reference: str) -> Path:
    """The folder of a run's encoder on this computer (never downloads)."""
    from metagui.core.encoder_source import resolve_encoder

    return resolve_encoder(reference, download=False)


def pin_encoder(reference: str, dim: int, why: str) -> EncoderPin:
    from metagui.core.encoder_source import KNOWN_ENCODERS, canonical_id, file_sha256, is_model_id

    folder = encoder_folder(reference)
    weights = weights_file(folder)
    sha = file_sha256(weights)
    model_id = canonical_id(reference) if is_model_id(reference) else ""
    if not model_id:  # a folder holding a model we know by its checksum
        model_id = next((k.id for k in KNOWN_ENCODERS.values() if k.sha256 == sha and weights.name == "model.safetensors"), "")
    known = KNOWN_ENCODERS.get(model_id)
    licence = known.licence if known else "see the encoder's own licence"
    return EncoderPin(model_id, folder.name, weights.name, sha, int(dim), licence, why or "")


def find_pinned(pin: EncoderPin, folder: str | Path | None = None) -> str:
    """The reference under which this computer has the pinned encoder: the folder given, else
    the pinned model id (installed package or Hugging Face cache; never a download), else a
    folder where the same weights were used before. Checked by the weights' sha256."""
    from metagui.core.encoder_source import encoder_reference, file_sha256, folders_with

    def matches(path: Path) -> bool:
        weights = path / pin.weights
        return weights.is_file() and file_sha256(weights) == pin.sha256

    if folder is not None:
        try:
            path = encoder_folder(str(folder))
        except ConfigError as exc:
            raise EncoderMismatch(f"this model needs its text encoder {pin.label}: {exc}") from None
        if not matches(path):
            raise EncoderMismatch(f"the encoder at {path} is not the one this model was trained on: its "
                                  f"{pin.weights} does not have the sha256 {pin.sha256[:16]}… the model records")
        return encoder_reference(str(folder))
    problem = ""
    if pin.id:
        try:
            if matches(encoder_folder(pin.id)):
                return pin.id
            problem = f"the copy of {pin.id} here has other weights than the model records"
        except ConfigError as exc:
            problem = str(exc)
    for path in folders_with(pin.sha256, pin.weights):
        return encoder_reference(str(path))
    how = f"{problem}; or give its folder" if problem else "give its folder"
    raise EncoderNotFound(f"this model needs its text encoder {pin.label} (sha256 {pin.sha256[:16]}…), which is "
                          f"not on this computer: {how} (--encoder FOLDER, or the Open bundle dialog)")


# --- the encoder as a torch module --------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None


@dataclass(frozen=True)
class TokenizerSpec:
    file: str
    kind: str
    lowercase: bool
    vocab: int
    max_tokens: int
    pad_id: int
    specials: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenizer_spec(folder: Path) -> TokenizerSpec:
    """The sentence encoder's tokenizer, as a model card states it (read once per version of
    its tokenizer.json: a card, a spec and a bundle each ask for it)."""
    path = Path(folder) / "tokenizer.json"
    return _tokenizer_spec(Path(folder), path.stat().st_mtime_ns if path.is_file() else -1)


@functools.lru_cache(maxsize=8)
def _tokenizer_spec(folder: Path, _version: int) -> TokenizerSpec:
    raw = _read_json(folder / "tokenizer.json")
    model = raw.get("model") or {}
    norm = raw.get("normalizer") or {}
    max_tokens = 0  # as sentence-transformers truncates: its own setting, else the tokenizer's
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        value = _read_json(folder / name).get(key) if (folder / name).is_file() else None
        if isinstance(value, int) and 0 < value < 100_000 and not max_tokens:
            max_tokens = value
    post = json.dumps(raw.get("post_processor") or {})
    specials = "[CLS] text [SEP]" if "[CLS]" in post else "the tokenizer's own template"
    pad = (raw.get("padding") or {}).get("pad_id", (model.get("vocab") or {}).get("[PAD]", 0))
    return TokenizerSpec("tokenizer.json", f"{model.get('type', 'unknown')} (Hugging Face tokenizers)",
                         bool(norm.get("lowercase", False)), len(model.get("vocab") or {}), max_tokens or 512, int(pad), specials)


class SentenceTower(nn.Module):
    """A sentence-transformers encoder as one torch module: int64 token ids [n, L] (0 =
    padding) -> float32 unit-length sentence embeddings [n, dim], as
    ``core.pretrained.SentenceEncoder`` computes them."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        folder = Path(folder)
        self.folder = folder
        if not (folder / "modules.json").is_file():
            raise ExportError("TorchScript and ONNX exports carry sentence-transformers encoders; this encoder is "
                              f"an ONNX folder ({folder.name}): export a MetaGUI bundle instead")
        modules = _read_json(folder / "modules.json")
        kinds = {m.get("type", "").rsplit(".", 1)[-1]: m.get("path", "") for m in modules if isinstance(m, dict)}
        if set(kinds) - {"Transformer", "Pooling", "Normalize"} or "Transformer" not in kinds or "Pooling" not in kinds:
            raise ExportError(f"the encoder {folder.name} has modules this export does not know ({', '.join(kinds)})")
        pooling = _read_json(folder / kinds["Pooling"] / "config.json")
        if isinstance(pooling.get("pooling_mode"), str):  # sentence-transformers 6
            mode = pooling["pooling_mode"]
        else:  # earlier releases: one flag per mode
            flags = [k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
            mode = {"mean_tokens": "mean", "cls_token": "cls"}.get(flags[0], flags[0]) if len(flags) == 1 else "+".join(flags)
        if mode not in ("mean", "cls"):
            raise ExportError(f"the encoder {folder.name} pools with '{mode}'; exports carry mean or CLS pooling")
        self.mean_pooling = mode == "mean"
        self.tokenizer = tokenizer_spec(folder)
        if self.tokenizer.pad_id != 0:
            raise ExportError(f"the encoder's tokenizer pads with id {self.tokenizer.pad_id}; exports use 0 for padding")
        try:
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise ExportError('exporting a pretrained encoder needs transformers: pip install "metagui[encoders]"') from None
        from metagui.core.pretrained import offline_hub

        hf_logging.disable_progress_bar()
        with offline_hub(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                # eager attention: traces and exports to ONNX with plain ops
                self.transformer = AutoModel.from_pretrained(str(folder / kinds["Transformer"]),
                                                             attn_implementation="eager", local_files_only=True)
            except Exception as exc:  # transformers raises many kinds; the message is what helps
                raise ExportError(f"cannot load the transformer of {folder.name}: {exc}") from None
        self.transformer.eval()
        self.emb_dim = int(self.transformer.config.hidden_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).to(torch.int64)
        states = self.transformer(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))[0]
        if self.mean_pooling:
            m = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * m).sum(1) / m.sum(1).clamp_min(1e-9)
        else:
            pooled = states[:, 0]
        return F.normalize(pooled, dim=-1)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids [n, L] of ``texts``, padded with 0, as an exported graph takes them."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(self.tokenizer.max_tokens)
        encs = tok.encode_batch(list(texts))
        out = torch.zeros(len(encs), max(len(e.ids) for e in encs), dtype=torch.int64)
        for i, e in enumerate(encs):
            out[i, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.int64)
        return out

    def copy_tokenizer(self, to: Path) -> None:
        shutil.copyfile(self.folder / "tokenizer.json", to)


_WORDS = ("please", "my", "card", "account", "turn", "on", "the", "light", "transfer", "money", "why", "is",
          "not", "working", "can", "you", "help", "me", "with", "a", "refund", "how", "long", "does", "it",
          "take", "to", "arrive", "set", "timer", "for", "ten", "minutes", "kitchen", "weather", "tomorrow",
          "cancel", "order", "lost", "phone", "pin", "blocked", "exchange", "rate", "euro", "top", "up")


def random_texts(count: int, seed: int) -> list[str]:
    """Sentences of 1 to 14 everyday words: varied lengths, so padding is exercised."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 14))) for _ in range(count)]


def text_episode(src: ModelSource, tower: SentenceTower | None, n_way: int, shot: int, query: int,
                 seed: int) -> Episode:
    """Random sentences as an episode of a model on a pretrained encoder: the learner's inputs
    are their embeddings as MetaGUI computes them (``core.pretrained``), a graph's are their
    token ids (with ``tower``)."""
    from metagui.core.pretrained import sentence_encoder

    texts = random_texts(n_way * (shot + query), seed)
    emb = torch.from_numpy(sentence_encoder(src.pre.text_encoder).encode(texts))
    s = n_way * shot
    ep = Episode(emb[:s], torch.arange(n_way).repeat_interleave(shot), emb[s:],
                 torch.arange(n_way).repeat_interleave(query))
    if tower is not None:
        ids = tower.tokenize(texts)
        ep.graph_sx, ep.graph_qx = ids[:s], ids[s:]
    return ep
