import threading

from metagui.core.store import RunStore


def test_wal_store_is_readable_from_another_connection_while_written(tmp_path):
    path = tmp_path / "s.db"
    writer = RunStore(path)
    assert writer.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    run_id = writer.create_run(name="r", config_toml="x = 1\n", algorithm="protonet", dataset="d", task="5-way 1-shot", device="cpu")
    seen = []

    def read():
        reader = RunStore(path)  # its own connection, as the GUI thread has
        seen.append(reader.metric_series(run_id, "train/loss"))
        reader.close()

    writer.add_metrics(run_id, [(1, "train/loss", 2.0), (2, "train/loss", 1.5)])
    t = threading.Thread(target=read)
    t.start()
    t.join()
    assert seen == [([1, 2], [2.0, 1.5])]
    assert writer.metric_series(run_id, "train/loss", after_step=1) == ([2], [1.5])


def test_runs_tags_transcripts_and_delete(tmp_path):
    store = RunStore(tmp_path / "s.db")
    run_id = store.create_run(name="r", config_toml="", algorithm="maml", dataset="d", task="t", device="cpu")
    store.update_run(run_id, name="renamed", tags=["demo", "best"])
    assert store.run(run_id)["name"] == "renamed" and store.run(run_id)["tags"] == ["demo", "best"]
    tid = store.save_transcript(run_id, "chat", [{"role": "user", "text": "hi"}], {"greet": ["hi"]})
    store.save_transcript(run_id, "chat", [{"role": "user", "text": "hi"}, {"role": "bot", "text": "hello"}], {}, tid)
    assert store.transcripts(run_id)[0]["messages"][-1]["text"] == "hello"
    store.add_metrics(run_id, [(1, "train/loss", 1.0)])
    store.delete_run(run_id)
    assert store.runs() == [] and store.transcripts(run_id) == [] and store.metric_names(run_id) == []


def test_runs_whose_process_died_are_marked_failed(tmp_path):
    import subprocess
    import sys

    store = RunStore(tmp_path / "s.db")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_id = store.create_run(name="r", config_toml="", algorithm="maml", dataset="d", task="t", device="cpu")
    store.update_run(run_id, status="running", pid=int(dead.stdout))
    alive = store.create_run(name="mine", config_toml="", algorithm="maml", dataset="d", task="t", device="cpu")
    store.update_run(alive, status="running")  # this process: alive
    assert store.reap_stale_runs() == [run_id]
    assert store.run(run_id)["status"] == "failed" and "ended without finishing" in store.run(run_id)["error"]
    assert store.run(alive)["status"] == "running"
