"""A persistent cache of sentence embeddings, so each text is embedded once per encoder.

Embedding is the slow part of a pretrained encoder (about 100 sentences a second on two CPU
threads for a 6-layer MiniLM): without a cache every ``metagui eval``, benchmark and app
start re-embeds whole datasets. Rows are keyed by the encoder's content hash (its files,
not its path, so a moved or re-downloaded copy hits the same rows) and the text's SHA-256.
One SQLite file in the user cache folder (``METAGUI_CACHE_DIR`` overrides it), in WAL mode,
so the app and a CLI run can share it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import platformdirs

CACHE_DIR_ENV = "METAGUI_CACHE_DIR"
_CHUNK = 500  # SQLite's host-parameter limit is 999 on old builds


def cache_path() -> Path:
    base = os.environ.get(CACHE_DIR_ENV) or platformdirs.user_cache_dir("metagui", appauthor=False)
    return Path(base).expanduser() / "embeddings.sqlite"


def folder_hash(folder: str | Path) -> str:
    """SHA-256 over a model folder's files (relative names and contents), in a stable order."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Embeddings of one encoder (``encoder_id``: its content hash) of a fixed ``dim``."""

    def __init__(self, encoder_id: str, dim: int, path: str | Path | None = None) -> None:
        self.encoder_id, self.dim = encoder_id, dim
        self.path = Path(path) if path is not None else cache_path()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS embeddings (encoder TEXT, key BLOB, vector BLOB, "
                           "PRIMARY KEY (encoder, key)) WITHOUT ROWID")
                self._db = db
            except (OSError, sqlite3.Error):
                return None  # no writable cache folder: embed every time, as without a cache
        return self._db

    def encode(self, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Rows for ``texts``: cached ones read, the rest embedded with ``embed`` and stored."""
        unique = list(dict.fromkeys(texts))
        found: dict[str, np.ndarray] = {}
        db = self._connect()
        if db is not None:
            keys = {_key(t): t for t in unique}
            ks = list(keys)
            try:
                for i in range(0, len(ks), _CHUNK):
                    part = ks[i : i + _CHUNK]
                    rows = db.execute(
                        f"SELECT key, vector FROM embeddings WHERE encoder = ? AND key IN ({','.join('?' * len(part))})",
                        [self.encoder_id, *part],
                    ).fetchall()
                    for k, blob in rows:
                        vec = np.frombuffer(blob, dtype=np.float32)
                        if vec.shape[0] == self.dim:
                            found[keys[bytes(k)]] = vec
            except sqlite3.Error:
                found.clear()
        todo = [t for t in unique if t not in found]
        if todo:
            fresh = np.asarray(embed(todo), dtype=np.float32)
            found.update(zip(todo, fresh, strict=True))
            if db is not None:
                try:
                    with db:
                        db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                                       [(self.encoder_id, _key(t), v.tobytes()) for t, v in zip(todo, fresh, strict=True)])
                except sqlite3.Error:
                    pass  # a full disk or a locked file costs speed next time, never a result
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[t] for t in texts])
