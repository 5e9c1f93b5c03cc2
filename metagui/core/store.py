"""The run store: one SQLite database (WAL) of datasets, projects, runs, metrics,
checkpoints and chat transcripts.

Every thread opens its own ``RunStore``; the training worker writes metrics in small
transactions while the GUI (or another process) reads, so a run started with
``metagui train`` in a terminal can be watched live in the app.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlite_utils
from platformdirs import user_data_dir

RUN_STATES = ("created", "running", "paused", "completed", "cancelled", "diverged", "failed")


def default_db_path() -> Path:
    """METAGUI_DB, else the user's data folder (one database per user)."""
    env = os.environ.get("METAGUI_DB")
    if env:
        return Path(env)
    return Path(user_data_dir("metagui", appauthor=False)) / "metagui.db"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.enable_wal()
        conn.execute("PRAGMA synchronous=NORMAL")
        self._create_schema()

    @property
    def runs_dir(self) -> Path:
        """Checkpoints live next to the database, one folder per run."""
        return self.path.parent / f"{self.path.stem}-runs"

    def close(self) -> None:
        self.db.conn.close()

    def _create_schema(self) -> None:
        db = self.db
        if "runs" in db.table_names():
            return
        with db.conn:
            db["datasets"].create(
                {"id": str, "name": str, "source": str, "path": str, "config": str, "stats": str, "created": float},
                pk="id", if_not_exists=True,
            )
            db["projects"].create(
                {"id": int, "name": str, "config": str, "created": float, "updated": float},
                pk="id", if_not_exists=True,
            )
            db["runs"].create(
                {
                    "id": int, "name": str, "project_id": int, "dataset_id": str, "config": str,
                    "algorithm": str, "dataset": str, "task": str, "status": str, "device": str,
                    "created": float, "started": float, "finished": float, "duration_s": float,
                    "steps_done": int, "best_val": float, "best_val_ci": float, "error": str,
                    "tags": str, "pid": int,
                },
                pk="id", if_not_exists=True,
            )
            db["metrics"].create(
                {"run_id": int, "step": int, "name": str, "value": float, "time": float},
                if_not_exists=True,
            )
            db["metrics"].create_index(["run_id", "name", "step"], if_not_exists=True)
            db["checkpoints"].create(
                {"run_id": int, "kind": str, "path": str, "step": int, "metric": float, "created": float},
                pk=("run_id", "kind"), if_not_exists=True,
            )
            db["transcripts"].create(
                {"id": int, "run_id": int, "title": str, "created": float, "updated": float, "messages": str, "support": str},
                pk="id", if_not_exists=True,
            )

    # --- datasets and projects -------------------------------------------------------------
    def record_dataset(self, dataset_id: str, name: str, source: str, path: str, config: dict, stats: dict) -> None:
        with self.db.conn:
            self.db["datasets"].upsert(
                {"id": dataset_id, "name": name, "source": source, "path": path,
                 "config": json.dumps(config), "stats": json.dumps(stats), "created": time.time()},
                pk="id",
            )

    def save_project(self, name: str, config_toml: str, project_id: int | None = None) -> int:
        now = time.time()
        with self.db.conn:
            if project_id is None:
                return int(self.db["projects"].insert({"name": name, "config": config_toml, "created": now, "updated": now}).last_pk)
            self.db["projects"].update(project_id, {"name": name, "config": config_toml, "updated": now})
            return project_id

    def projects(self) -> list[dict]:
        return list(self.db["projects"].rows_where(order_by="updated desc"))

    # --- runs -----------------------------------------------------------------------------
    def create_run(self, *, name: str, config_toml: str, algorithm: str, dataset: str, task: str,
                   device: str, project_id: int | None = None, dataset_id: str = "") -> int:
        with self.db.conn:
            row = self.db["runs"].insert({
                "name": name, "project_id": project_id, "dataset_id": dataset_id, "config": config_toml,
                "algorithm": algorithm, "dataset": dataset, "task": task, "status": "created",
                "device": device, "created": time.time(), "steps_done": 0, "tags": "[]", "pid": os.getpid(),
            })
        return int(row.last_pk)

    def update_run(self, run_id: int, **fields: Any) -> None:
        if "status" in fields and fields["status"] not in RUN_STATES:
            raise ValueError(fields["status"])
        if "tags" in fields and not isinstance(fields["tags"], str):
            fields["tags"] = json.dumps(list(fields["tags"]))
        with self.db.conn:
            self.db["runs"].update(run_id, fields)

    def run(self, run_id: int) -> dict:
        try:
            row = self.db["runs"].get(run_id)
        except sqlite_utils.db.NotFoundError:
            from metagui.core.errors import MetaGUIError

            raise MetaGUIError(f"no run with id {run_id} in {self.path}") from None
        row["tags"] = json.loads(row.get("tags") or "[]")
        return row

    def runs(self) -> list[dict]:
        rows = list(self.db["runs"].rows_where(order_by="id desc"))
        for r in rows:
            r["tags"] = json.loads(r.get("tags") or "[]")
        return rows

    def reap_stale_runs(self) -> list[int]:
        """Mark runs "failed" whose training process on this machine is gone (killed or
        crashed while running or paused), so they do not look alive forever."""
        stale = []
        for row in self.db["runs"].rows_where("status IN ('running', 'paused', 'created')"):
            if row["pid"] and row["pid"] != os.getpid() and not _process_alive(row["pid"]):
                stale.append(row["id"])
        for run_id in stale:
            self.update_run(run_id, status="failed", error="the process training this run ended without finishing it")
        return stale

    def delete_run(self, run_id: int) -> None:
        with self.db.conn:
            for table in ("metrics", "checkpoints", "transcripts"):
                self.db[table].delete_where("run_id = ?", [run_id])
            self.db["runs"].delete(run_id)

    # --- metrics ----------------------------------------------------------------------------
    def add_metrics(self, run_id: int, rows: Iterable[tuple[int, str, float]]) -> None:
        """Append (step, name, value) rows in one small transaction."""
        now = time.time()
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, s, n, float(v), now) for s, n, v in rows],
            )

    def metric_names(self, run_id: int) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT name FROM metrics WHERE run_id = ?", [run_id])]

    def metric_series(self, run_id: int, name: str, after_step: int = -1) -> tuple[list[int], list[float]]:
        rows = self.db.execute(
            "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? AND step > ? ORDER BY step",
            [run_id, name, after_step],
        ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    # --- checkpoints ------------------------------------------------------------------------
    def record_checkpoint(self, run_id: int, kind: str, path: str, step: int, metric: float | None) -> None:
        with self.db.conn:
            self.db["checkpoints"].upsert(
                {"run_id": run_id, "kind": kind, "path": path, "step": step, "metric": metric, "created": time.time()},
                pk=("run_id", "kind"),
            )

    def checkpoints(self, run_id: int) -> dict[str, dict]:
        return {r["kind"]: r for r in self.db["checkpoints"].rows_where("run_id = ?", [run_id])}

    # --- chat transcripts -------------------------------------------------------------------
    def save_transcript(self, run_id: int, title: str, messages: list[dict], support: dict,
                        transcript_id: int | None = None) -> int:
        now = time.time()
        row = {"run_id": run_id, "title": title, "updated": now,
               "messages": json.dumps(messages), "support": json.dumps(support)}
        with self.db.conn:
            if transcript_id is None:
                return int(self.db["transcripts"].insert({**row, "created": now}).last_pk)
            self.db["transcripts"].update(transcript_id, row)
            return transcript_id

    def transcripts(self, run_id: int | None = None) -> list[dict]:
        where = ("run_id = ?", [run_id]) if run_id is not None else (None, None)
        rows = list(self.db["transcripts"].rows_where(where[0], where[1], order_by="updated desc"))
        for r in rows:
            r["messages"] = json.loads(r["messages"])
            r["support"] = json.loads(r["support"])
        return rows
