"""``metagui bench serve``: a bounded load test of ``metagui serve`` on loopback.

A ProtoNet intent model (trained here for a few steps on the built-in Home Assistant intents,
or a given run) is served by ``metagui serve`` in a process of its own; ``clients`` threads of
this process each send ``requests`` one-message ``POST /predict`` requests, one after the
other, over keep-alive HTTP connections. Latency is measured by the client, per request, from
send to parsed answer. The test stops by itself: every request has a timeout and the whole
run a deadline. Clients and server share the machine's cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DEADLINE_S = 900.0  # the whole load test stops by then, finished or not


def _train(db: Path, steps: int) -> int:
    from metagui.core.presets import default_config
    from metagui.core.store import RunStore
    from metagui.core.trainer import Trainer

    cfg = default_config("protonet", "intents")
    cfg.training.steps = steps
    cfg.training.val_every = steps
    cfg.training.val_episodes = 50
    cfg.training.device = "cpu"
    store = RunStore(db)
    try:
        result = Trainer(cfg, store).run()
    finally:
        store.close()
    if result.status != "completed":
        raise RuntimeError(f"training the ProtoNet model failed: {result.error}")
    return int(result.run_id)


def _messages(db: Path, run_id: int) -> list[str]:
    """Texts of the run's dataset (what customers would type), for the queries."""
    from metagui.core.config import RunConfig
    from metagui.core.data import load_dataset
    from metagui.core.store import RunStore

    store = RunStore.for_reading(db)
    try:
        cfg = RunConfig.from_toml(store.run(run_id)["config"])
    finally:
        store.close()
    texts = list(load_dataset(cfg.dataset).texts)
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:2000]]


def _start_server(db: Path, run_id: int) -> tuple[subprocess.Popen, str]:
    import metagui

    env = {**os.environ, "PYTHONPATH": str(Path(metagui.__file__).resolve().parents[1]), "METAGUI_SERVE_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "metagui", "--db", str(db), "serve", str(run_id), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "serving run" not in line:
        proc.kill()
        raise RuntimeError(f"metagui serve did not start: {line}{proc.stderr.read()}")
    return proc, line.split(" on ", 1)[1].split()[0]


def load_test(url: str, messages: list[str], clients: int, requests: int, timeout: float = 30.0,
              deadline_s: float = DEADLINE_S) -> dict:
    """``clients`` threads x ``requests`` one-message /predict requests against ``url``."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop_at = time.monotonic() + deadline_s
    barrier = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=timeout) as c:
            c.get("/health")  # connect before the clock starts
            barrier.wait()
            for i in range(requests):
                if time.monotonic() > stop_at:
                    errors.append("deadline")
                    return
                msg = messages[(k * requests + i) % len(messages)]
                t = time.perf_counter()
                try:
                    r = c.post("/predict", json={"messages": [msg]})
                    ok = r.status_code == 200 and len(r.json()["predictions"]) == 1
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies[k].append((time.perf_counter() - t) * 1000)
                if not ok:
                    errors.append(f"HTTP {r.status_code}")

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(max(1.0, stop_at - time.monotonic() + timeout))
    wall = time.perf_counter() - start
    lat = np.asarray([x for per in latencies for x in per], dtype=np.float64)
    done = int(lat.size)
    return {
        "clients": clients, "requests": clients * requests, "answered": done, "errors": len(errors),
        "error_kinds": sorted(set(errors)), "seconds": round(wall, 2), "requests_per_s": round(done / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if done else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 1) if done else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if done else None,
        "max_ms": round(float(lat.max()), 1) if done else None,
    }


def bench_serve(clients: int = 20, requests: int = 200, steps: int = 100, db: str | None = None,
                run_id: int | None = None) -> dict:
    import torch

    with tempfile.TemporaryDirectory(prefix="metagui-bench-serve-") as tmp:
        if run_id is None:
            db_path = Path(tmp) / "runs.db"
            print(f"training ProtoNet on the built-in intents ({steps} steps)...", flush=True)
            run_id = _train(db_path, steps)
        else:
            from metagui.core.store import default_db_path

            db_path = Path(db) if db else default_db_path()
            copy = Path(tmp) / "runs.db"  # served from a copy: the load test adds nothing to the user's store
            import shutil

            shutil.copy(db_path, copy)
            runs = db_path.parent / f"{db_path.stem}-runs" / f"run-{run_id}"
            if runs.is_dir():
                shutil.copytree(runs, Path(tmp) / "runs-runs" / f"run-{run_id}")
            db_path = copy
        messages = _messages(db_path, run_id)
        proc, url = _start_server(db_path, run_id)
        try:
            import httpx

            model = httpx.get(url + "/model", timeout=30).json()
            load_test(url, messages, min(clients, 4), 10)  # warm-up, not counted
            out = load_test(url, messages, clients, requests)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    out.update(run=run_id, intents=len(model["support"]["adapted_to"]), cores=os.cpu_count(),
               torch_threads=torch.get_num_threads())
    print(f"\nmetagui serve, loopback: {out['clients']} clients x {requests} POST /predict (1 message each), "
          f"ProtoNet run {run_id} adapted to {out['intents']} intents; {out['cores']} cores shared by clients and server")
    head = ("requests", "errors", "seconds", "requests/s", "p50 ms", "p95 ms", "p99 ms", "max ms")
    row = (out["requests"], out["errors"], out["seconds"], out["requests_per_s"], out["p50_ms"], out["p95_ms"],
           out["p99_ms"], out["max_ms"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    print("| " + " | ".join(str(v) for v in row) + " |")
    if out["errors"]:
        print(f"errors: {', '.join(out['error_kinds'])}")
    return out
