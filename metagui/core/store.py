"""The run store: one SQLite database (WAL) of datasets, projects, runs, metrics,
checkpoints and chat transcripts.

Every thread opens its own ``RunStore``; the training worker writes metrics in small
transactions while the GUI (or another process) reads, so a run started with
``metagui train`` in a terminal can be watched live in the app.

A store is marked as MetaGUI's with SQLite's ``application_id`` and versioned with its
``user_version``. Opening a file writes nothing until it is known to be ours: a new or empty
file becomes a store; a store of the first release (MetaGUI's exact tables, no mark) is
adopted; anything else is refused with a :class:`StoreError` and left byte for byte as it was.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlite_utils
from platformdirs import user_data_dir

from metagui.core.errors import MetaGUIError, StoreError

RUN_STATES = ("created", "running", "paused", "completed", "cancelled", "diverged", "failed")
ACTIVE_STATES = ("created", "running", "paused")

APPLICATION_ID = 0x4D475549  # "MGUI": PRAGMA application_id of every MetaGUI run store
SQLITE_MAGIC = b"SQLite format 3\x00"

# The first release's tables as sqlite-utils created them; such a store had no application_id
# and user_version 0. Its exact table and column set is how an unmarked store is recognised.
_V1_SCHEMA = (
    'CREATE TABLE "datasets" (\n   "id" TEXT PRIMARY KEY,\n   "name" TEXT,\n   "source" TEXT,\n   "path" TEXT,\n'
    '   "config" TEXT,\n   "stats" TEXT,\n   "created" REAL\n)',
    'CREATE TABLE "projects" (\n   "id" INTEGER PRIMARY KEY,\n   "name" TEXT,\n   "config" TEXT,\n   "created" REAL,\n'
    '   "updated" REAL\n)',
    'CREATE TABLE "runs" (\n   "id" INTEGER PRIMARY KEY,\n   "name" TEXT,\n   "project_id" INTEGER,\n'
    '   "dataset_id" TEXT,\n   "config" TEXT,\n   "algorithm" TEXT,\n   "dataset" TEXT,\n   "task" TEXT,\n'
    '   "status" TEXT,\n   "device" TEXT,\n   "created" REAL,\n   "started" REAL,\n   "finished" REAL,\n'
    '   "duration_s" REAL,\n   "steps_done" INTEGER,\n   "best_val" REAL,\n   "best_val_ci" REAL,\n'
    '   "error" TEXT,\n   "tags" TEXT,\n   "pid" INTEGER\n)',
    'CREATE TABLE "metrics" (\n   "run_id" INTEGER,\n   "step" INTEGER,\n   "name" TEXT,\n   "value" REAL,\n'
    '   "time" REAL\n)',
    'CREATE INDEX "idx_metrics_run_id_name_step"\n    ON "metrics" ("run_id", "name", "step")',
    'CREATE TABLE "checkpoints" (\n   "run_id" INTEGER,\n   "kind" TEXT,\n   "path" TEXT,\n   "step" INTEGER,\n'
    '   "metric" REAL,\n   "created" REAL,\n   PRIMARY KEY ("run_id", "kind")\n)',
    'CREATE TABLE "transcripts" (\n   "id" INTEGER PRIMARY KEY,\n   "run_id" INTEGER,\n   "title" TEXT,\n'
    '   "created" REAL,\n   "updated" REAL,\n   "messages" TEXT,\n   "support" TEXT\n)',
)
V1_TABLES: dict[str, tuple[str, ...]] = {
    "datasets": ("id", "name", "source", "path", "config", "stats", "created"),
    "projects": ("id", "name", "config", "created", "updated"),
    "runs": ("id", "name", "project_id", "dataset_id", "config", "algorithm", "dataset", "task", "status",
             "device", "created", "started", "finished", "duration_s", "steps_done", "best_val", "best_val_ci",
             "error", "tags", "pid"),
    "metrics": ("run_id", "step", "name", "value", "time"),
    "checkpoints": ("run_id", "kind", "path", "step", "metric", "created"),
    "transcripts": ("id", "run_id", "title", "created", "updated", "messages", "support"),
}


def _create_v1(conn: sqlite3.Connection) -> None:
    for sql in _V1_SCHEMA:
        conn.execute(sql)


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Runs record which machine and which process (not only which pid) trains them, so that
    a run whose process is gone is told apart from one whose pid was reused."""
    conn.execute('ALTER TABLE "runs" ADD COLUMN "host" TEXT')
    conn.execute('ALTER TABLE "runs" ADD COLUMN "pid_start" TEXT')


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """A deployed model keeps learning: the feedback it is given (a message and its right
    intent) and its live support set are kept per run, and a run fine-tuned from another
    records its parent."""
    conn.execute('ALTER TABLE "runs" ADD COLUMN "parent_id" INTEGER')
    conn.execute('CREATE TABLE "feedback" (\n   "id" INTEGER PRIMARY KEY,\n   "run_id" INTEGER,\n   "time" REAL,\n'
                 '   "message" TEXT,\n   "intent" TEXT,\n   "predicted" TEXT,\n   "confidence" REAL,\n'
                 '   "source" TEXT\n)')
    conn.execute('CREATE INDEX "idx_feedback_run_id" ON "feedback" ("run_id", "id")')
    conn.execute('CREATE TABLE "support_sets" (\n   "run_id" INTEGER PRIMARY KEY,\n   "support" TEXT,\n'
                 '   "updated" REAL,\n   "source" TEXT\n)')


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Runs record how many processes trained them (torchrun's world size; 1 before)."""
    conn.execute('ALTER TABLE "runs" ADD COLUMN "world_size" INTEGER')


# MIGRATIONS[n] takes a store from schema version n to n + 1. Never edit one: add the next.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_create_v1, _v1_to_v2, _v2_to_v3, _v3_to_v4)
SCHEMA_VERSION = len(MIGRATIONS)


def default_db_path() -> Path:
    """METAGUI_DB, else the user's data folder (one database per user)."""
    env = os.environ.get("METAGUI_DB")
    if env:
        return Path(env)
    return Path(user_data_dir("metagui", appauthor=False)) / "metagui.db"


# --- is the process training a run still there? -------------------------------------------------
def this_host() -> str:
    return socket.gethostname()


def _process_alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        try:
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        finally:
            kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a killed process whose parent has not collected it yet is a zombie, not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def process_identity(pid: int) -> str | None:
    """What tells one process from a later one with the same pid: on Linux the boot id and the
    process's start time; None where the system does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def owner_fields() -> dict[str, Any]:
    """This process, as a run records the process training it."""
    return {"pid": os.getpid(), "host": this_host(), "pid_start": process_identity(os.getpid())}


def training_process_state(row: dict) -> str:
    """"alive", "dead" or "unknown" (another machine's process, or no pid recorded)."""
    pid = row.get("pid")
    if not pid:
        return "unknown"
    host = row.get("host")
    if host and host != this_host():
        return "unknown"
    if not _process_alive(int(pid)):
        return "dead"
    started = row.get("pid_start")
    if started:
        now = process_identity(int(pid))
        if now is not None and now != started:
            return "dead"  # the pid belongs to another process now
    return "alive"


# --- what is this file? -----------------------------------------------------------------------------
def _sqlite_uri(path: Path, immutable: bool) -> str:
    return path.resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")


def _wal_has_content(path: Path) -> bool:
    wal = path.with_name(path.name + "-wal")
    try:
        return wal.stat().st_size > 0
    except OSError:
        return False


def _read_only_connection(path: Path) -> sqlite3.Connection:
    """A connection that cannot write and leaves no -wal/-shm files behind: read through the
    write-ahead log where one has content (a writer is at work), else as an immutable file."""
    return sqlite3.connect(_sqlite_uri(path, immutable=not _wal_has_content(path)), uri=True,
                           timeout=30, check_same_thread=False)


def _schema_of(conn: sqlite3.Connection) -> tuple[int, int, dict[str, tuple[str, ...]]]:
    """application_id, user_version and each table's columns."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    tables = {n: tuple(r[1] for r in conn.execute(f'PRAGMA table_info("{n}")')) for n in names}
    return app_id, version, tables


def _classify(path: Path, app_id: int, version: int, tables: dict[str, tuple[str, ...]], empty_file: bool) -> str:
    """"new" (``empty_file``, still blank), "ours" or "v1" (a first-release store, to adopt);
    StoreError for anything else."""
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path} was written by a newer MetaGUI (store version {version}; this one knows "
                             f"up to {SCHEMA_VERSION}): update MetaGUI to open it")
        return "ours"
    if app_id != 0:
        raise StoreError(f"{path} is not a MetaGUI run store: it is another program's SQLite database "
                         f"(application id 0x{app_id & 0xFFFFFFFF:08x}); it was left unchanged")
    if empty_file and not tables and version == 0:
        return "new"
    if version == 0 and tables == V1_TABLES:
        return "v1"
    if not tables:
        raise StoreError(f"{path} is not a MetaGUI run store: it is an empty SQLite database that MetaGUI "
                         "did not create; it was left unchanged")
    shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
    raise StoreError(f"{path} is not a MetaGUI run store: it is another program's SQLite database "
                     f"(tables: {shown or 'none'}); it was left unchanged")


def inspect_store_file(path: Path) -> str:
    """Look at ``path`` without writing to it: "missing", "empty", "ours" or "v1"."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a run store file")
    if not path.exists():
        return "missing"
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except PermissionError:
        raise StoreError(f"cannot read the run store {path}: permission denied") from None
    except OSError as exc:
        raise StoreError(f"cannot read the run store {path}: {exc.strerror or exc}") from None
    if not header:
        return "empty"
    if not header.startswith(SQLITE_MAGIC):
        raise StoreError(f"{path} is not a MetaGUI run store (not a SQLite database); it was left unchanged")
    if len(header) < 100:
        raise StoreError(f"{path} is damaged: a truncated SQLite file; it was left unchanged")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id == APPLICATION_ID:
        return "ours"  # its version is checked on the connection that uses it
    try:
        conn = _read_only_connection(path)
        try:
            found = _schema_of(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is damaged or not a SQLite database ({exc}); it was left unchanged") from None
    kind = _classify(path, *found, empty_file=False)
    return kind


def _translate(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    low = text.lower()
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return StoreError(f"the run store {path} is damaged ({text})")
    if "readonly" in low or "read-only" in low:
        return StoreError(f"the run store {path} is read-only ({text}); use a writable --db")
    if "locked" in low or "busy" in low:
        return StoreError(f"the run store {path} is locked by another program ({text}); try again")
    if "unable to open" in low:
        return StoreError(f"cannot open the run store {path} ({text})")
    return StoreError(f"run store {path}: {text}")


def _guarded(method):
    """SQLite errors become one readable StoreError."""

    @functools.wraps(method)
    def wrapper(self: RunStore, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from exc

    return wrapper


class RunStore:
    """``RunStore(path)`` opens (or creates) a store to write; ``readonly=True`` opens an
    existing one to read only (``mode=ro``: no write-ahead-log switch, no migration, no
    writes). :meth:`for_reading` picks the one a listing or an evaluation can have."""

    def __init__(self, path: str | Path | None = None, *, readonly: bool = False) -> None:
        self.path = Path(path) if path else default_db_path()
        self.readonly = readonly
        self._dead: dict[int, str] = {}  # read-only stores: dead runs shown failed, not recorded
        kind = inspect_store_file(self.path)
        if readonly:
            conn = self._open_readonly(kind)
        else:
            conn = self._open_writable(kind)
        self.db = sqlite_utils.Database(conn)

    @classmethod
    def for_reading(cls, path: str | Path | None = None) -> RunStore:
        """For commands that only read: writable when the file and its folder are (so that dead
        runs are recorded as such and a first-release store is adopted), read-only otherwise.
        Never creates a store."""
        p = Path(path) if path else default_db_path()
        writable = p.is_file() and os.access(p, os.W_OK) and os.access(p.parent, os.W_OK | os.X_OK)
        return cls(p, readonly=not writable)

    def _open_readonly(self, kind: str) -> sqlite3.Connection:
        if kind == "missing":
            raise StoreError(f"there is no run store at {self.path}")
        if kind == "empty":  # nothing in it yet: an empty store in memory answers the same
            conn = sqlite3.connect(":memory:", check_same_thread=False)
            for migrate in MIGRATIONS:
                migrate(conn)
            self.version = SCHEMA_VERSION
            return conn
        try:
            conn = _read_only_connection(self.path)
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from None
        try:
            app_id, version, tables = _schema_of(conn)
            self.version = 1 if _classify(self.path, app_id, version, tables, False) == "v1" else version
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(self.path, exc) from None
        except StoreError:
            conn.close()
            raise
        return conn

    def _open_writable(self, kind: str) -> sqlite3.Connection:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the run store folder {path.parent}: {exc.strerror or exc}") from None
        if kind != "missing" and not os.access(path, os.W_OK):
            raise StoreError(f"the run store {path} is read-only; training and the app need a writable one "
                             "(pass --db with another file)")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"the run store's folder {path.parent} is read-only; training and the app need "
                             "a writable one (pass --db with another file)")
        try:
            conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _translate(path, exc) from None
        try:
            self.version = self._migrate(conn, empty_file=kind in ("missing", "empty"))
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(path, exc) from None
        return conn

    def _migrate(self, conn: sqlite3.Connection, empty_file: bool) -> int:
        """Under the write lock: check again what the file is, mark it, bring it up to date."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id, version, tables = _schema_of(conn)
            kind = _classify(self.path, app_id, version, tables, empty_file)
            if kind == "new":
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                version = 0
            elif kind == "v1":
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                version = 1
            for n in range(version, SCHEMA_VERSION):
                MIGRATIONS[n](conn)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        return SCHEMA_VERSION

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"the run store {self.path} was opened read-only")

    @property
    def runs_dir(self) -> Path:
        """Checkpoints live next to the database, one folder per run."""
        return self.path.parent / f"{self.path.stem}-runs"

    def close(self) -> None:
        self.db.conn.close()

    # --- datasets and projects -------------------------------------------------------------
    @_guarded
    def record_dataset(self, dataset_id: str, name: str, source: str, path: str, config: dict, stats: dict) -> None:
        self._check_writable()
        with self.db.conn:
            self.db["datasets"].upsert(
                {"id": dataset_id, "name": name, "source": source, "path": path,
                 "config": json.dumps(config), "stats": json.dumps(stats), "created": time.time()},
                pk="id",
            )

    @_guarded
    def save_project(self, name: str, config_toml: str, project_id: int | None = None) -> int:
        self._check_writable()
        now = time.time()
        with self.db.conn:
            if project_id is None:
                return int(self.db["projects"].insert({"name": name, "config": config_toml, "created": now, "updated": now}).last_pk)
            self.db["projects"].update(project_id, {"name": name, "config": config_toml, "updated": now})
            return project_id

    @_guarded
    def projects(self) -> list[dict]:
        return list(self.db["projects"].rows_where(order_by="updated desc"))

    # --- runs -----------------------------------------------------------------------------
    @_guarded
    def create_run(self, *, name: str, config_toml: str, algorithm: str, dataset: str, task: str,
                   device: str, project_id: int | None = None, dataset_id: str = "",
                   parent_id: int | None = None) -> int:
        """A new run; ``parent_id``: the run it is fine-tuned from (warm start)."""
        self._check_writable()
        with self.db.conn:
            row = self.db["runs"].insert({
                "name": name, "project_id": project_id, "dataset_id": dataset_id, "parent_id": parent_id,
                "config": config_toml,
                "algorithm": algorithm, "dataset": dataset, "task": task, "status": "created",
                "device": device, "created": time.time(), "steps_done": 0, "tags": "[]", **owner_fields(),
            })
        return int(row.last_pk)

    @_guarded
    def update_run(self, run_id: int, **fields: Any) -> None:
        self._check_writable()
        if "status" in fields and fields["status"] not in RUN_STATES:
            raise ValueError(fields["status"])
        if "tags" in fields and not isinstance(fields["tags"], str):
            fields["tags"] = json.dumps(list(fields["tags"]))
        with self.db.conn:
            self.db["runs"].update(run_id, fields)

    def start_run(self, run_id: int, device: str, world_size: int = 1) -> None:
        """The run is being trained now, by this process (rank 0 of ``world_size`` processes)."""
        self.update_run(run_id, status="running", started=time.time(), device=device, error="",
                        world_size=world_size, **owner_fields())

    @_guarded
    def run(self, run_id: int) -> dict:
        try:
            row = self.db["runs"].get(run_id)
        except sqlite_utils.db.NotFoundError:
            raise MetaGUIError(f"no run with id {run_id} in {self.path}") from None
        return self._shown(row)

    @_guarded
    def runs(self) -> list[dict]:
        """Every run, newest first; runs whose training process is gone are reaped first."""
        self.reap_stale_runs()
        return [self._shown(r) for r in self.db["runs"].rows_where(order_by="id desc")]

    def _shown(self, row: dict) -> dict:
        row["tags"] = json.loads(row.get("tags") or "[]")
        if row["id"] in self._dead and row.get("status") in ACTIVE_STATES:
            row["status"], row["error"] = "failed", self._dead[row["id"]]
        return row

    @_guarded
    def reap_stale_runs(self) -> list[int]:
        """Mark runs "failed" whose training process on this machine is gone (killed or
        crashed while running or paused), so they do not look alive forever. A read-only
        store shows them failed without recording it."""
        stale = []
        for row in self.db["runs"].rows_where(f"status IN {ACTIVE_STATES}"):
            if training_process_state(row) == "dead":
                stale.append(row["id"])
                last = self.checkpoints(row["id"]).get("last")
                error = f"the process training this run (pid {row['pid']}) ended without finishing it"
                if last:
                    error += f"; `metagui train --resume {row['id']}` continues from step {last['step']}"
                if self.readonly:
                    self._dead[row["id"]] = error
                else:
                    self.update_run(row["id"], status="failed", error=error)
        return stale

    @_guarded
    def delete_run(self, run_id: int) -> None:
        self._check_writable()
        with self.db.conn:
            for table in ("metrics", "checkpoints", "transcripts", "feedback", "support_sets"):
                self.db[table].delete_where("run_id = ?", [run_id])
            self.db["runs"].delete(run_id)

    # --- metrics ----------------------------------------------------------------------------
    @_guarded
    def add_metrics(self, run_id: int, rows: Iterable[tuple[int, str, float]]) -> None:
        """Append (step, name, value) rows in one small transaction."""
        self._check_writable()
        now = time.time()
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, s, n, float(v), now) for s, n, v in rows],
            )

    @_guarded
    def drop_metrics_after(self, run_id: int, step: int) -> None:
        """Forget metrics after ``step`` (a resumed run trains those steps again)."""
        self._check_writable()
        with self.db.conn:
            self.db.conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", [run_id, step])

    @_guarded
    def metric_names(self, run_id: int) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT name FROM metrics WHERE run_id = ?", [run_id])]

    @_guarded
    def metric_series(self, run_id: int, name: str, after_step: int = -1) -> tuple[list[int], list[float]]:
        rows = self.db.execute(
            "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? AND step > ? ORDER BY step",
            [run_id, name, after_step],
        ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    # --- checkpoints ------------------------------------------------------------------------
    @_guarded
    def record_checkpoint(self, run_id: int, kind: str, path: str, step: int, metric: float | None) -> None:
        self._check_writable()
        with self.db.conn:
            self.db["checkpoints"].upsert(
                {"run_id": run_id, "kind": kind, "path": path, "step": step, "metric": metric, "created": time.time()},
                pk=("run_id", "kind"),
            )

    @_guarded
    def checkpoints(self, run_id: int) -> dict[str, dict]:
        return {r["kind"]: r for r in self.db["checkpoints"].rows_where("run_id = ?", [run_id])}

    # --- chat transcripts -------------------------------------------------------------------
    @_guarded
    def save_transcript(self, run_id: int, title: str, messages: list[dict], support: dict,
                        transcript_id: int | None = None) -> int:
        self._check_writable()
        now = time.time()
        row = {"run_id": run_id, "title": title, "updated": now,
               "messages": json.dumps(messages), "support": json.dumps(support)}
        with self.db.conn:
            if transcript_id is None:
                return int(self.db["transcripts"].insert({**row, "created": now}).last_pk)
            self.db["transcripts"].update(transcript_id, row)
            return transcript_id

    @_guarded
    def transcripts(self, run_id: int | None = None) -> list[dict]:
        where = ("run_id = ?", [run_id]) if run_id is not None else (None, None)
        rows = list(self.db["transcripts"].rows_where(where[0], where[1], order_by="updated desc"))
        for r in rows:
            r["messages"] = json.loads(r["messages"])
            r["support"] = json.loads(r["support"])
        return rows

    # --- a deployed model's feedback and live support set -----------------------------------
    @_guarded
    def record_support(self, run_id: int, support: dict, source: str = "",
                       feedback: dict | None = None) -> int | None:
        """Keep ``support`` as run ``run_id``'s live support set and, in the same committed
        transaction, append one ``feedback`` item ({message, intent, predicted, confidence});
        the feedback row's id (None without one). Returns only once it is committed."""
        self._check_writable()
        now = time.time()
        fid = None
        with self.db.conn:
            self.db.conn.execute(
                "INSERT INTO support_sets (run_id, support, updated, source) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET support = excluded.support, updated = excluded.updated, "
                "source = excluded.source", [run_id, json.dumps(support), now, source])
            if feedback is not None:
                cur = self.db.conn.execute(
                    "INSERT INTO feedback (run_id, time, message, intent, predicted, confidence, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [run_id, now, str(feedback["message"]), str(feedback["intent"]), feedback.get("predicted"),
                     feedback.get("confidence"), source])
                fid = int(cur.lastrowid)
        return fid

    @_guarded
    def live_support(self, run_id: int) -> dict | None:
        """The support set last recorded for run ``run_id`` (None when there is none)."""
        if "support_sets" not in self.db.table_names():
            return None
        row = self.db.execute("SELECT support FROM support_sets WHERE run_id = ?", [run_id]).fetchone()
        return json.loads(row[0]) if row else None

    @_guarded
    def feedback(self, run_id: int) -> list[dict]:
        """The feedback given to run ``run_id``, oldest first."""
        if "feedback" not in self.db.table_names():
            return []
        return list(self.db["feedback"].rows_where("run_id = ?", [run_id], order_by="id"))

    @_guarded
    def feedback_counts(self) -> dict[int, int]:
        """Feedback items per run, for runs that have any."""
        if "feedback" not in self.db.table_names():
            return {}
        return {int(r[0]): int(r[1]) for r in
                self.db.execute("SELECT run_id, COUNT(*) FROM feedback GROUP BY run_id ORDER BY run_id")}

    @_guarded
    def children(self, run_id: int) -> list[dict]:
        """Runs fine-tuned from run ``run_id``."""
        if "parent_id" not in self.db["runs"].columns_dict:
            return []
        return [self._shown(r) for r in self.db["runs"].rows_where("parent_id = ?", [run_id], order_by="id")]

    @_guarded
    def find_runs_tagged(self, tag: str) -> list[int]:
        """Ids of the runs whose tags hold ``tag``, oldest first."""
        return [int(r["id"]) for r in self.db["runs"].rows_where(order_by="id")
                if tag in json.loads(r.get("tags") or "[]")]
