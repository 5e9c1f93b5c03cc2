"""The persistent embedding cache: each text is embedded once per encoder, across runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metagui.core.embedding_cache import EmbeddingCache, folder_hash


def _embedder(calls: list[list[str]]):
    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    return embed


def test_each_text_is_embedded_once_and_reopened_from_disk(tmp_path: Path) -> None:
    db = tmp_path / "emb.sqlite"
    calls: list[list[str]] = []
    first = EmbeddingCache("enc-a", 3, db)
    out = first.encode(["hello", "banana", "hello"], _embedder(calls))
    assert calls == [["hello", "banana"]]  # duplicates embedded once
    assert out.tolist() == [[5, 0, 1], [6, 3, 1], [5, 0, 1]]
    reopened = EmbeddingCache("enc-a", 3, db)  # a later run: nothing in memory
    again = reopened.encode(["banana", "new", "hello"], _embedder(calls))
    assert calls[1:] == [["new"]]
    assert again.tolist() == [[6, 3, 1], [3, 0, 1], [5, 0, 1]]


def test_another_encoder_or_size_never_reads_these_rows(tmp_path: Path) -> None:
    db = tmp_path / "emb.sqlite"
    EmbeddingCache("enc-a", 3, db).encode(["hello"], _embedder([]))
    calls: list[list[str]] = []
    EmbeddingCache("enc-b", 3, db).encode(["hello"], _embedder(calls))
    assert calls == [["hello"]]
    calls.clear()
    wide = EmbeddingCache("enc-a", 4, db)
    wide.encode(["hello"], lambda ts: calls.append(ts) or np.ones((len(ts), 4), np.float32))
    assert calls == [["hello"]]  # a 3-wide row is not a 4-wide embedding


def test_unwritable_cache_folder_still_embeds(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    calls: list[list[str]] = []
    out = EmbeddingCache("enc-a", 3, blocker / "emb.sqlite").encode(["a"], _embedder(calls))
    assert calls == [["a"]] and out.shape == (1, 3)


def test_folder_hash_follows_content_not_place(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        (folder / "sub").mkdir(parents=True)
        (folder / "model.bin").write_bytes(b"weights")
        (folder / "sub" / "config.json").write_text("{}")
    assert folder_hash(a) == folder_hash(b)
    (b / "model.bin").write_bytes(b"weightz")
    assert folder_hash(a) != folder_hash(b)
