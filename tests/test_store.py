import os

from metagui.core.store import RunStore
from tests.helpers import start_store_writer, stop_store_writer, store_call


def test_wal_store_is_readable_from_another_process_while_written(tmp_path):
    path = tmp_path / "s.db"
    writer = start_store_writer(path)  # a process of its own, as `metagui train` in a terminal
    try:
        assert store_call(writer, "db.journal_mode") == "wal"
        run_id = store_call(writer, "create_run", name="r", config_toml="x = 1\n", algorithm="protonet",
                            dataset="d", task="5-way 1-shot", device="cpu")
        reader = RunStore(path)  # its own connection, as the GUI has
        assert reader.run(run_id)["pid"] == writer.pid != os.getpid()
        seen = []
        for step, loss in [(1, 2.0), (2, 1.5), (3, 1.25)]:
            store_call(writer, "add_metrics", run_id, [(step, "train/loss", loss)])
            seen.append(reader.metric_series(run_id, "train/loss"))
            assert writer.poll() is None  # read while the writer still holds its connection
        assert seen == [([1], [2.0]), ([1, 2], [2.0, 1.5]), ([1, 2, 3], [2.0, 1.5, 1.25])]
        assert reader.metric_series(run_id, "train/loss", after_step=1) == ([2, 3], [1.5, 1.25])
        reader.close()
    finally:
        stop_store_writer(writer)
    assert writer.returncode == 0


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
