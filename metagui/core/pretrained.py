"""Bring your own sentence encoder: a pretrained model in a local folder in place of the
built-in n-gram encoder.

Two folder formats, detected from their files (nothing is downloaded):

- **sentence-transformers**: a folder written by ``SentenceTransformer.save`` (it has
  ``modules.json``); loaded with the ``sentence-transformers`` package.
- **ONNX**: ``model.onnx`` and a Hugging Face ``tokenizer.json``; run with ``onnxruntime``
  and ``tokenizers``. If the graph has an output named ``sentence_embedding`` it is used,
  otherwise the first output ([batch, tokens, dim]) is mean-pooled over the attention mask.

The encoder stays frozen: every text is embedded once (L2-normalised) and the meta-learner
trains a residual linear adapter on top (``models.EmbeddingAdapter``). Install the optional
packages with ``pip install "metagui[encoders]"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from metagui.core.embedding_cache import EmbeddingCache, folder_hash
from metagui.core.errors import ConfigError

FORMATS = ("sentence-transformers", "onnx")
MAX_TOKENS = 256


def detect_format(folder: str | Path) -> str:
    p = Path(folder).expanduser()
    if not p.is_dir():
        raise ConfigError(f"text encoder folder not found: {p}")
    if (p / "modules.json").is_file():
        return "sentence-transformers"
    if (p / "model.onnx").is_file():
        if not (p / "tokenizer.json").is_file():
            raise ConfigError(f"{p} has model.onnx but no tokenizer.json (a Hugging Face tokenizers file)")
        return "onnx"
    raise ConfigError(f"{p} is not a sentence encoder folder: expected modules.json (sentence-transformers) "
                      "or model.onnx with tokenizer.json (ONNX)")


def _missing(package: str) -> ConfigError:
    return ConfigError(f"this text encoder needs the '{package}' package: pip install \"metagui[encoders]\"")


class SentenceEncoder:
    """A frozen pretrained sentence encoder: texts -> float32 [n, dim], rows of unit length."""

    def __init__(self, folder: str | Path, batch_size: int = 64) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.format = detect_format(self.folder)
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}
        self._disk: EmbeddingCache | None = None
        if self.format == "sentence-transformers":
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise _missing("sentence-transformers") from None
            try:
                with offline_hub():
                    self._model: Any = SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)
            except Exception as exc:  # the package raises many kinds; the user needs the message
                raise ConfigError(f"cannot load the sentence-transformers model in {self.folder}: {exc}") from None
            dim_of = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
            self.dim = int(dim_of() or self._embed(["x"]).shape[1])
        else:
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise _missing(exc.name or "onnxruntime") from None
            try:
                self._tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
                self._session = ort.InferenceSession(str(self.folder / "model.onnx"), providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise ConfigError(f"cannot load the ONNX encoder in {self.folder}: {exc}") from None
            self._tokenizer.enable_truncation(MAX_TOKENS)
            self._tokenizer.no_padding()
            self._inputs = {i.name for i in self._session.get_inputs()}
            if "input_ids" not in self._inputs:
                raise ConfigError(f"{self.folder / 'model.onnx'} has no 'input_ids' input "
                                  f"(it has: {', '.join(sorted(self._inputs))})")
            outputs = [o.name for o in self._session.get_outputs()]
            self._output = "sentence_embedding" if "sentence_embedding" in outputs else outputs[0]
            self.dim = int(self._embed(["x"]).shape[1])

    def encode(self, texts: list[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Embeddings of ``texts``: from memory, else from the persistent cache
        (``core.embedding_cache``), else computed (``progress(done, total)`` per batch)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            rows = self._persistent().encode(todo, lambda new: self._embed_batches(new, progress))
            self._cache.update(zip(todo, rows, strict=True))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def _persistent(self) -> EmbeddingCache:
        if self._disk is None:
            self._disk = EmbeddingCache(folder_hash(self.folder), self.dim)
        return self._disk

    def _embed_batches(self, texts: list[str], progress: Callable[[int, int], None] | None) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            out.append(self._embed(texts[i : i + self.batch_size]))
            if progress is not None:
                progress(min(i + self.batch_size, len(texts)), len(texts))
        return np.concatenate(out)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.format == "sentence-transformers":
            out = self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        else:
            out = self._onnx(texts)
        out = np.asarray(out, dtype=np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _onnx(self, texts: list[str]) -> np.ndarray:
        encs = self._tokenizer.encode_batch(texts)
        width = max(1, max(len(e.ids) for e in encs))
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for r, e in enumerate(encs):
            ids[r, : len(e.ids)] = e.ids
            mask[r, : len(e.ids)] = 1
            types[r, : len(e.type_ids)] = e.type_ids
        feed = {"input_ids": ids}
        if "attention_mask" in self._inputs:
            feed["attention_mask"] = mask
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = types
        out = self._session.run([self._output], feed)[0]
        if out.ndim == 3:  # token states: mean over real tokens
            m = mask[..., None].astype(out.dtype)
            out = (out * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return out


@contextmanager
def offline_hub() -> Iterator[None]:
    """A local folder only: never ask a model hub while loading (it may be unreachable, and slow
    to say so). The environment is restored afterwards, so a download asked for later (a model
    id, ``core.encoder_source``) is still allowed."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {v: os.environ.get(v) for v in names}
    for v in names:
        os.environ.setdefault(v, "1")
    try:
        yield
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


_LOADED: dict[str, SentenceEncoder] = {}


def sentence_encoder(spec: str | Path, progress: Callable[[int, int], None] | None = None,
                     cancel: Callable[[], bool] | None = None) -> SentenceEncoder:
    """One loaded encoder per folder per process. ``spec`` is a folder or a model id, resolved
    by ``core.encoder_source`` (installed package, hub cache, else a download with ``progress``)."""
    from metagui.core.encoder_source import encoder_reference, resolve_encoder

    key = encoder_reference(str(spec))
    if key not in _LOADED:
        folder = str(resolve_encoder(key, progress, cancel))
        if folder not in _LOADED:
            _LOADED[folder] = SentenceEncoder(folder)
        _LOADED[key] = _LOADED[folder]
    return _LOADED[key]
