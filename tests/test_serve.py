"""`metagui serve`: every endpoint over real HTTP (httpx), bad requests (422 naming the field,
413, 401), the token and the loopback rule, feedback and support-set changes committed to the
run store before the answer (a SIGKILL loses nothing acknowledged, a restart restores the
support set), `metagui feedback --export`, and `metagui train --from RUN` starting from the
parent's weights."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from metagui.cli import main  # noqa: E402
from metagui.core.chat import ChatEngine, ChatSession, SupportSet, journal_to_store  # noqa: E402
from metagui.core.errors import MetaGUIError, StoreError  # noqa: E402
from metagui.core.lineage import compare_with_parent  # noqa: E402
from metagui.core.store import MIGRATIONS, SCHEMA_VERSION, RunStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

INTENTS = {
    "lights_on": ["turn on the lights", "switch the lamp on", "lights on please", "put the light on in the hall",
                  "make the kitchen bright", "switch on the bedroom light", "turn the lamp on", "light up the room"],
    "weather": ["what is the weather", "will it rain today", "is it sunny outside", "forecast for tomorrow",
                "how cold is it outside", "is it going to snow", "weather in paris", "do i need an umbrella"],
    "timer": ["set a timer for ten minutes", "start a 5 minute timer", "timer for an hour", "count down two minutes",
              "remind me in twenty minutes", "set an alarm timer", "start the kitchen timer", "timer please"],
    "music": ["play some jazz", "put on music", "play my playlist", "next song", "play the radio",
              "turn up the music", "play something relaxing", "shuffle my songs"],
    "shopping": ["add milk to the list", "put eggs on my shopping list", "buy bread", "add apples to groceries",
                 "shopping list add coffee", "we need butter", "add rice to the list", "remember to buy cheese"],
    "card_lost": ["i lost my card", "my card was stolen", "block my card", "cannot find my bank card",
                  "freeze my card", "someone took my card", "card missing", "report a lost card"],
}


def small_run_config(data: Path, **hp):
    from metagui.core.config import DatasetConfig
    from metagui.core.presets import default_config

    cfg = default_config("protonet", "intents")
    cfg.dataset = DatasetConfig(source="text_table", path=str(data), text_column="text", label_column="intent")
    cfg.task.way, cfg.task.shot, cfg.task.query, cfg.task.train_ratio, cfg.task.val_ratio = 2, 2, 2, 0.34, 0.33
    cfg.training.steps, cfg.training.val_every, cfg.training.val_episodes, cfg.training.log_every = 3, 3, 4, 1
    cfg.training.device = "cpu"
    cfg.algorithm.hyperparams = dict(hp)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ProtoNet run trained for 3 steps on six small intents: (db, run id, data file)."""
    from metagui.core.trainer import Trainer

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("serve")
    data = root / "intents.csv"
    data.write_text("text,intent\n" + "".join(f"{t},{n}\n" for n, ts in INTENTS.items() for t in ts), encoding="utf-8")
    db = root / "runs.db"
    store = RunStore(db)
    result = Trainer(small_run_config(data), store).run()
    store.close()
    assert result.status == "completed", result.error
    return db, result.run_id, data


SUPPORT = [
    {"name": "lights_on", "examples": INTENTS["lights_on"][:3], "reply": "Lights are on."},
    {"name": "weather", "examples": INTENTS["weather"][:3], "reply": "It is sunny."},
    {"name": "timer", "examples": INTENTS["timer"][:3]},
]


def own_store(trained, tmp_path) -> Path:
    """A copy of the trained store (and its checkpoints) for a test that writes to it."""
    import shutil

    src, _, _ = trained
    shutil.copy(src, tmp_path / "runs.db")
    shutil.copytree(src.parent / "runs-runs", tmp_path / "runs-runs")
    return tmp_path / "runs.db"


@contextlib.contextmanager
def serving(db, run_id, token="", max_body=None, start="empty"):
    """``metagui serve`` of run ``run_id`` on a free loopback port, in this process."""
    from metagui.serve.deployment import Deployment
    from metagui.serve.server import ThreadedServer

    server = ThreadedServer(Deployment(db, run_id, start=start), token=token, max_body=max_body).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def client(db, run_id, **options):
    """An HTTP client of ``serving(db, run_id, **options)``."""
    with serving(db, run_id, **options) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


# --- the endpoints ------------------------------------------------------------------------------------
def test_every_endpoint_over_http(trained, tmp_path):
    _, run_id, _ = trained
    db = own_store(trained, tmp_path)
    with client(db, run_id, max_body=20_000) as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["run"] == run_id and h["adapted"] is False
        assert c.post("/predict", json={"messages": ["hello"]}).status_code == 409  # nothing to answer from yet

        r = c.post("/adapt", json={"intents": SUPPORT, "threshold": 0.0})
        assert r.status_code == 200, r.text
        ad = r.json()
        assert ad["intents"] == ["lights_on", "weather", "timer"] and ad["examples"] == 9 and ad["adapt_ms"] > 0

        r = c.post("/predict", json={"messages": ["switch on the bedroom light", "will it snow tomorrow"]})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert [p["message"] for p in preds] == ["switch on the bedroom light", "will it snow tomorrow"]
        for p in preds:
            confs = [t["confidence"] for t in p["top3"]]
            assert len(p["top3"]) == 3 and confs == sorted(confs, reverse=True)
            assert p["top3"][0] == {"intent": p["intent"], "confidence": p["confidence"]}
            assert {t["intent"] for t in p["top3"]} == {"lights_on", "weather", "timer"}
            assert p["fallback"] is False  # threshold 0: never the fallback
        assert preds[0]["reply"] == {"lights_on": "Lights are on.", "weather": "It is sunny."}.get(
            preds[0]["intent"], preds[0]["reply"])

        # a threshold above every confidence: each answer is the fallback question
        assert c.post("/adapt", json={"intents": SUPPORT, "threshold": 1.0}).status_code == 200
        p = c.post("/predict", json={"messages": ["turn the lamp on"]}).json()["predictions"][0]
        assert p["fallback"] is True and "not sure" in p["reply"]

        # feedback: a brand-new intent, recorded before the answer, adapted at once
        msg = "add oat milk to my shopping list"
        fb = c.post("/feedback", json={"message": msg, "intent": "shopping", "reply": "Added."}).json()
        assert fb["recorded"] and fb["new_intent"] and fb["added"] and fb["adapted"], fb
        assert fb["predicted"] in {"lights_on", "weather", "timer"}  # what it said before learning
        store = RunStore.for_reading(db)
        rows, live = store.feedback(run_id), store.live_support(run_id)
        store.close()
        assert (rows[-1]["message"], rows[-1]["intent"], rows[-1]["source"]) == (msg, "shopping", "serve")
        support = c.get("/support").json()
        assert live == support and any(i["name"] == "shopping" and i["examples"] == [msg]
                                       and i["reply"] == "Added." for i in support["intents"])
        p = c.post("/predict", json={"messages": [msg]}).json()["predictions"][0]
        assert p["intent"] == "shopping"  # the example it was given is its own prototype

        m = c.get("/model").json()
        assert m["run"]["id"] == run_id and m["algorithm"]["name"] == "protonet"
        assert m["encoder"]["modality"] == "text" and m["encoder"]["text_encoder"] == "built-in"
        assert m["support"]["intents"]["shopping"] == 1 and "Model card" in m["card"]
        assert "Served by `metagui serve`" in m["card"] and "Exported by" not in m["card"]
        assert {"/adapt", "/predict", "/feedback", "/health", "/model"} <= set(c.get("/openapi.json").json()["paths"])


def test_bad_requests_get_a_4xx_that_names_the_problem(trained, tmp_path):
    _, run_id, _ = trained
    db = own_store(trained, tmp_path)
    with client(db, run_id, max_body=20_000) as c:
        def fields(r):
            assert r.status_code == 422, r.text
            return {e["loc"][-1] for e in r.json()["detail"]}

        assert "messages" in fields(c.post("/predict", json={"message": ["typo in the field name"]}))
        assert "messages" in fields(c.post("/predict", json={"messages": "not a list"}))
        assert "messages" in fields(c.post("/predict", json={"messages": ["x"] * 257}))  # batch limit
        assert "intent" in fields(c.post("/feedback", json={"message": "hello"}))
        assert "threshold" in fields(c.post("/adapt", json={"intents": SUPPORT, "threshold": 2}))
        r = c.post("/predict", content=b'{"messages": [', headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
        r = c.post("/predict", json={"messages": ["x" * 30_000]})
        assert r.status_code == 413 and "larger than 20000 bytes" in r.json()["detail"]

        def chunks():
            for _ in range(30):
                yield b"x" * 1000

        r = c.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413  # streamed without a length: counted as it comes
        r = c.post("/adapt", json={"intents": [{"name": "only_one", "examples": ["a", "b"]}]})
        assert r.status_code == 400 and "two intents" in r.json()["detail"]  # a user error, never a 500
        assert c.get("/health").status_code == 200  # and it still serves


def test_token_and_loopback(trained, tmp_path, monkeypatch, capsys):
    _, run_id, _ = trained
    db = own_store(trained, tmp_path)
    monkeypatch.delenv("METAGUI_SERVE_TOKEN", raising=False)
    started = time.monotonic()
    assert main(["--db", str(db), "serve", str(run_id), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--token" in err and "0.0.0.0" in err
    assert time.monotonic() - started < 5  # refused before anything is loaded

    with client(db, run_id, token="s3cret", start="held_out") as c:
        assert c.get("/health").status_code == 200  # for load balancers: no token
        for path in ("/model", "/support"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/predict", json={"messages": ["hi"]}).status_code == 401
        r = c.post("/predict", json={"messages": ["hi"]}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200  # started from the run's held-out intents, already adapted


# --- nothing lost ---------------------------------------------------------------------------------------
def start_process(db: Path, run_id: int, *extra: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "METAGUI_SERVE_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "metagui", "--db", str(db), "serve", str(run_id), "--port", "0",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    line = proc.stdout.readline()
    if "serving run" not in line:
        proc.kill()
        raise AssertionError(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, line.split(" on ", 1)[1].split()[0]


def test_sigkill_during_feedback_loses_nothing_acknowledged_and_a_restart_restores_the_support_set(trained, tmp_path):
    _, run_id, _ = trained
    db = own_store(trained, tmp_path)
    proc, url = start_process(db, run_id, "--start", "empty")
    acknowledged: list[tuple[str, str]] = []
    errors: list[str] = []
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.post("/adapt", json={"intents": SUPPORT}).status_code == 200

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                for i in range(500):
                    msg, intent = f"client {k} message {i}", ["lights_on", "weather", "timer", f"new_{k}"][i % 4]
                    try:
                        r = c.post("/feedback", json={"message": msg, "intent": intent})
                    except httpx.TransportError:
                        return  # the server is gone
                    if r.status_code == 200:
                        acknowledged.append((msg, intent))
                    else:
                        errors.append(r.text)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        end = time.monotonic() + 60
        while len(acknowledged) < 40 and time.monotonic() < end and not errors:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # mid-stream: requests are in flight
        for t in threads:
            t.join(30)
    finally:
        proc.kill()
        proc.wait()
    assert not errors and len(acknowledged) >= 40

    store = RunStore.for_reading(db)
    recorded = {(r["message"], r["intent"]) for r in store.feedback(run_id)}
    live = SupportSet.from_dict(store.live_support(run_id))
    store.close()
    assert set(acknowledged) <= recorded  # every acknowledged item is in the store
    for msg, intent in acknowledged:
        assert msg in live[intent].examples

    # restarted (on what the killed process left): the same support set, adapted
    with serving(db, run_id) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert server.deployment.restored
        assert c.get("/support").json() == live.to_dict()
        assert c.get("/health").json()["adapted"] is True
        r = c.post("/predict", json={"messages": ["switch the lamp on"]})
        assert r.status_code == 200 and r.json()["predictions"][0]["intent"] in live.names


def test_a_failed_journal_write_leaves_the_support_set_as_it_was(trained):
    db, run_id, _ = trained
    store = RunStore.for_reading(db)
    session = ChatSession(ChatEngine.from_run(store, run_id), None)
    store.close()
    session.engine.support = SupportSet.from_dict({"intents": SUPPORT})
    before = session.support.to_dict()

    def failing(_session, _feedback):
        raise StoreError("disk full")

    session.on_change = failing
    with pytest.raises(StoreError):
        session.add_example("timer", "a brand new example")
    with pytest.raises(StoreError):
        session.teach("buy milk", "shopping")
    assert session.support.to_dict() == before


def test_try_it_edits_and_feedback_are_journalled(trained, tmp_path):
    _, run_id, _ = trained
    db = own_store(trained, tmp_path)
    store = RunStore.for_reading(db)
    session = ChatSession(ChatEngine.from_run(store, run_id), None)
    store.close()
    session.engine.support = SupportSet.from_dict({"intents": SUPPORT})
    journal = journal_to_store(db, run_id, "app")
    session.on_change = journal
    try:
        session.adapt()
        session.add_example("timer", "wake me in an hour")
        answer = session.ask("play some jazz please")
        session.feedback(0, "music")
        store = RunStore.for_reading(db)
        live, rows = store.live_support(run_id), store.feedback(run_id)
        store.close()
        assert live == session.support.to_dict() and "wake me in an hour" in live["intents"][2]["examples"]
        assert (rows[-1]["message"], rows[-1]["intent"], rows[-1]["predicted"], rows[-1]["source"]) == (
            "play some jazz please", "music", answer.intent, "app")
    finally:
        journal.close()


def test_store_version_2_gains_the_feedback_tables(tmp_path):
    import sqlite3

    from metagui.core.store import APPLICATION_ID

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for migrate in MIGRATIONS[:2]:
        migrate(conn)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO runs (id, name, status, tags) VALUES (7, 'old', 'completed', '[]')")
    conn.commit()
    conn.close()
    store = RunStore(path)
    assert store.version == SCHEMA_VERSION >= 3
    assert store.run(7)["parent_id"] is None and store.feedback(7) == [] and store.live_support(7) is None
    store.record_support(7, {"intents": []}, "serve", {"message": "m", "intent": "i"})
    assert store.feedback(7)[0]["message"] == "m"
    store.delete_run(7)
    assert store.feedback(7) == [] and store.live_support(7) is None
    store.close()


# --- feedback becomes data; fine-tuning from a run ------------------------------------------------------
def _weights(db: Path, run_id: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(db.parent / f"{db.stem}-runs" / f"run-{run_id}" / "best.safetensors"))


def test_feedback_export_and_train_from_a_run_start_from_its_weights(trained, tmp_path, capsys):
    _, parent, data = trained
    db = own_store(trained, tmp_path)
    store = RunStore(db)
    for name in ("music", "shopping", "card_lost", "timer"):  # what the deployed model was taught
        for text in INTENTS[name][:5]:
            store.record_support(parent, {"intents": []}, "serve", {"message": text, "intent": name})
    store.close()

    out = tmp_path / "feedback.csv"
    assert main(["--db", str(db), "feedback", str(parent), "--export", str(out)]) == 0
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0] == ["text", "label"] and len(rows) == 21 and rows[1] == [INTENTS["music"][0], "music"]
    assert main(["--db", str(db), "feedback", str(parent)]) == 0 and "card_lost" in capsys.readouterr().out
    combined = tmp_path / "combined.csv"  # feedback and the original data, for fine-tuning on both
    assert main(["--db", str(db), "feedback", str(parent), "--export", str(combined), "--with", str(data)]) == 0
    both = list(csv.reader(combined.open(encoding="utf-8")))
    assert both[1:21] == rows[1:] and len(both) == 1 + 48  # the 20 feedback messages are among the 48, once
    assert {r[1] for r in both[1:]} == set(INTENTS)

    # fine-tune on the feedback table with the smallest learning rate: the child's weights stay the parent's
    cfg = small_run_config(out, meta_lr=1e-6)
    cfg.dataset.label_column = "label"
    cfg.task.shot, cfg.task.query, cfg.task.train_ratio, cfg.task.val_ratio = 1, 1, 0.5, 0.5
    cfg.training.steps = cfg.training.val_every = 2
    toml = tmp_path / "child.toml"
    cfg.save(toml)
    capsys.readouterr()
    assert main(["--db", str(db), "train", str(toml), "--from", str(parent), "--quiet"]) == 0
    child = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run"]
    assert main(["--db", str(db), "train", str(toml), "--quiet"]) == 0  # the same, from scratch
    scratch = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run"]
    p, c, s = _weights(db, parent), _weights(db, child), _weights(db, scratch)
    assert p.keys() == c.keys()
    # the smallest learning rate moves no weight by more than a few 1e-6 in 2 steps: the child holds the
    # parent's weights; the same config from scratch (same seed: the parent's own initial weights) does not
    child_gap = max(float((p[k] - c[k]).abs().max()) for k in p)
    scratch_gap = max(float((p[k] - s[k]).abs().max()) for k in p)
    assert child_gap < 2e-5 and scratch_gap > 1e-3, (child_gap, scratch_gap)

    store = RunStore.for_reading(db)
    assert store.run(child)["parent_id"] == parent and store.run(scratch)["parent_id"] is None
    assert [r["id"] for r in store.children(parent)] == [child]
    store.close()

    # parent beside child: the same held-out episodes (the child holds the parent's weights: the same answers)
    # and the parent's 20 feedback messages, cross-validated
    capsys.readouterr()
    assert main(["--db", str(db), "compare", str(child), "--episodes", "16"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    held, fb = cmp["held_out"], cmp["feedback"]
    assert (cmp["parent"], cmp["child"], held["episodes"], held["metric"]) == (parent, child, 16, "accuracy")
    assert 0 <= held["parent"] <= 1 and abs(held["parent"] - held["child"]) < 0.02
    assert (fb["messages"], fb["intents"], fb["answered"]) == (20, 4, 20) and 0 <= fb["child"] <= 1
    assert fb["child_trained_on"] == 20  # said plainly: the child was fine-tuned on these very messages
    vs_scratch = compare_with_parent(db, scratch, parent, episodes=16)
    assert vs_scratch["held_out"]["parent"] == held["parent"]  # the very same episodes
    with pytest.raises(MetaGUIError, match="no parent"):
        compare_with_parent(db, scratch)

    cfg.algorithm.name = "matching"
    cfg.save(toml)
    assert main(["--db", str(db), "train", str(toml), "--from", str(parent), "--quiet"]) == 2
    assert "keeps the algorithm" in capsys.readouterr().err


def test_bench_load_test_counts_every_request(trained, tmp_path):
    from metagui.bench.serve import load_test

    _, run_id, _ = trained
    db = own_store(trained, tmp_path)
    with serving(db, run_id, start="held_out") as server:
        out = load_test(server.url, ["turn on the lights", "is it sunny"], clients=3, requests=5)
    assert out["requests"] == out["answered"] == 15 and out["errors"] == 0
    assert 0 < out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"] <= out["max_ms"] and out["requests_per_s"] > 0
    with serving(db, run_id, token="t") as server:  # every request refused: counted as errors, never hangs
        out = load_test(server.url, ["hi"], clients=2, requests=3)
    assert out["errors"] == 6 and out["error_kinds"] == ["HTTP 401"]


def test_a_bundle_is_served_as_the_run_it_becomes_in_the_store(trained, tmp_path, monkeypatch, capsys):
    from metagui.core.export import export_run
    from metagui.serve.server import deployment_for

    src_db, run_id, _ = trained
    bundle = tmp_path / "model.metagui"
    export_run(src_db, run_id, "bundle", bundle, load_data=False, episodes=0)
    db = tmp_path / "deploy.db"  # another machine's store: the bundle is all it has
    d = deployment_for(str(bundle), db, "empty", None)
    try:
        first = d.run_id
        assert "Model card" in d.model()["card"] and d.model()["run"]["tags"][0] == "imported"
        d.set_support(SUPPORT)
        d.feedback("buy oat milk", "shopping")
    finally:
        d.close()
    assert "is run" in capsys.readouterr().err
    d = deployment_for(str(bundle), db, "empty", None)  # found again by its sha256: the same run, restored
    try:
        assert d.run_id == first and d.restored and "buy oat milk" in d.session.support["shopping"].examples
        store = RunStore.for_reading(db)
        assert len(store.runs()) == 1 and store.feedback(first)[0]["message"] == "buy oat milk"
        store.close()
    finally:
        d.close()
    monkeypatch.delenv("METAGUI_SERVE_TOKEN", raising=False)
    assert main(["--db", str(tmp_path / "none.db"), "serve", "3"]) == 2
    assert "no run store" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    assert main(["--db", str(db), "serve", str(tmp_path / "missing.metagui")]) == 2
    assert "neither a run id" in capsys.readouterr().err
