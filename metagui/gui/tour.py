"""``metagui tour``: a scripted walk through the real window, clicked as a user would, with
one screenshot per step and a summary of measured figures (summary.json).

    from metagui.gui.tour import run_tour
    summary = run_tour("/tmp/tour", steps=60)

Runs offscreen when there is no display. The run store is a fresh database inside
``out_dir`` unless ``db`` is given, and the app's settings go to a temporary folder, so a
tour never touches the user's own settings.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any


def run_tour(out_dir: str | os.PathLike[str], steps: int = 60, db: str | os.PathLike[str] | None = None,
             timeout_s: float = 300.0) -> dict[str, Any]:
    """Open the demo project, sample an episode, choose ProtoNet, train ``steps`` meta-steps,
    open the Runs page, then Try it: adapt, chat, correct, add an intent, before / after,
    demo mode. Writes NN-name.png screenshots and summary.json into ``out_dir``;
    returns the summary (``error`` is None when every step worked)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    settings_dir = tempfile.mkdtemp(prefix="metagui-tour-settings-")
    saved_env = os.environ.get("METAGUI_SETTINGS_DIR")
    os.environ["METAGUI_SETTINGS_DIR"] = settings_dir
    db_path = Path(db) if db else out / "tour-runs.db"
    if db is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(db_path.parent / f"{db_path.stem}-runs", ignore_errors=True)

    summary: dict[str, Any] = {"steps_requested": steps, "screenshots": [], "error": None, "db": str(db_path)}
    window = None
    try:
        from PySide6.QtCore import QPoint, Qt
        from PySide6.QtTest import QTest

        from metagui.gui.app import make_application
        from metagui.gui.mainwindow import MainWindow

        app = make_application()
        summary["platform"] = app.platformName()
        window = MainWindow(db=str(db_path), demo=True)
        window.resize(1280, 800)
        window.show()
        deadline = time.monotonic() + timeout_s

        def pump(ms: int) -> None:
            # Not QTest.qWait: it sleeps holding the GIL, which starves the training thread.
            end = time.monotonic() + ms / 1000
            while True:
                app.processEvents()
                if time.monotonic() >= end:
                    return
                time.sleep(0.005)

        def wait_for(cond, what: str, limit: float = 120.0) -> None:
            end = min(deadline, time.monotonic() + limit)
            while not cond():
                if time.monotonic() > end:
                    raise TimeoutError(f"timed out waiting for {what}")
                pump(20)

        def shot(name: str) -> None:
            pump(150)  # let pending paints and layouts finish
            path = out / f"{len(summary['screenshots']) + 1:02d}-{name}.png"
            window.grab().save(str(path))
            summary["screenshots"].append(path.name)

        def click(widget) -> None:
            QTest.mouseClick(widget, Qt.MouseButton.LeftButton)
            pump(30)

        def click_step(key: str) -> None:
            lst = window.sidebar.list
            item = window.sidebar.item(key)
            rect = lst.visualItemRect(item)
            QTest.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
            pump(50)

        def type_into(spin, value: int) -> None:
            spin.setFocus()
            spin.selectAll()
            QTest.keyClicks(spin, str(value))
            QTest.keyClick(spin, Qt.Key.Key_Return)

        # 1. the demo project opens on the Data page and loads the built-in intents
        wait_for(lambda: window.state.dataset_ready, "the demo dataset to load")
        wait_for(lambda: not getattr(window, "_warm_task", None) or not window._warm_task.running, "start-up")
        ds = window.state.dataset
        summary["dataset"] = {"name": ds.name, **ds.stats().as_dict()} if ds is not None else None
        shot("data")

        # 2. Tasks: sample an episode
        click_step("tasks")
        click(window.tasks_page.sample_button)
        ep = window.tasks_page.last_episode
        summary["episode"] = {"classes": ep["classes"], "support": len(ep["support"]), "query": len(ep["query"])} if ep else None
        shot("tasks")

        # 3. Algorithm: choose Prototypical Networks
        click_step("algorithm")
        tree = window.algorithm_page.tree
        item = window.algorithm_page.items["protonet"]
        tree.scrollToItem(item)
        rect = tree.visualItemRect(item)
        QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         rect.center() + QPoint(0, 0))
        pump(50)
        summary["algorithm"] = window.state.config.algorithm.name
        shot("algorithm")

        # 4. Train: a short fixed budget
        click_step("train")
        tp = window.train_page
        type_into(tp.steps, steps)
        type_into(tp.val_every, max(1, steps // 4))
        type_into(tp.val_episodes, 60)
        click(tp.start_button)
        if not tp.running:
            raise RuntimeError("training did not start: " + (tp.banner.message() or "no reason shown"))
        wait_for(lambda: tp.step >= steps // 2 or not tp.running, "training to get half way")
        shot("training")
        wait_for(lambda: not tp.running, "training to finish", limit=timeout_s)
        pump(100)
        shot("trained")
        result = tp.last_result or {}
        summary.update(
            run_id=result.get("run_id"),
            status=result.get("status"),
            steps_trained=result.get("steps"),
            duration_s=round(result.get("duration_s") or 0.0, 2),
            best_val_accuracy=result.get("best_val"),
            final_val_accuracy=result.get("last_val"),
            max_stall_ms=round(tp.last_stall_ms or 0.0, 1),
            max_gap_ms=round(tp.last_gap_ms or 0.0, 1),
            heartbeat_ms=tp.stall.interval_ms,
            curve_points={"loss": tp.loss_plot.point_count(), "accuracy": tp.metric_plot.point_count()},
        )
        if result.get("status") != "completed":
            summary["error"] = f"training ended {result.get('status')}: {result.get('error')}"

        # 5. Runs: the run is in the store; select it to see its curves
        click_step("runs")
        rp = window.runs_page
        rp.refresh()
        if rp.proxy.rowCount():
            rect = rp.table.visualRect(rp.proxy.index(0, 1))
            QTest.mouseClick(rp.table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
            pump(100)
        summary["runs_listed"] = rp.proxy.rowCount()
        shot("runs")

        # 6. Try it: the trained run adapts to the held-out intents, answers, learns a new intent
        summary["chat"] = _tour_chat(window, click_step, wait_for, pump, shot)

        # 7. the same window in the dark theme
        window.actions["theme_dark"].trigger()
        pump(100)
        click_step("train")
        shot("dark-train")
        window.actions["theme_light"].trigger()
    except Exception as exc:  # the tour reports what went wrong instead of dying
        summary["error"] = f"{type(exc).__name__}: {exc}"
        summary["traceback"] = traceback.format_exc()
        if window is not None:
            try:
                path = out / "error.png"
                window.grab().save(str(path))
                summary["screenshots"].append(path.name)
            except Exception:
                pass
    finally:
        if window is not None:
            window.close()
        if saved_env is None:
            os.environ.pop("METAGUI_SETTINGS_DIR", None)
        else:
            os.environ["METAGUI_SETTINGS_DIR"] = saved_env
        shutil.rmtree(settings_dir, ignore_errors=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return summary


TOUR_NEW_INTENT = ("order_pizza", ["order a pizza", "I want to order a pizza", "get me a large pizza",
                                   "can I order pizza for delivery", "pizza delivery please"],
                   "Your pizza is on its way.")


def _tour_chat(window, click_step, wait_for, pump, shot) -> dict[str, Any]:
    """The chat steps: adapt to the run's held-out intents, ask about two of them (with
    sentences the support set does not hold), type a new intent with five examples and
    ask about it, compare before / after, and show demo mode."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    click_step("chat")
    page = window.chat_page
    wait_for(lambda: page.engine is not None and page.engine.adaptation is not None and not page.busy,
             "the chat to load and adapt")
    eng = page.engine
    first = eng.adaptation
    out: dict[str, Any] = {"run_id": page.run_id, "algorithm": eng.learner.name, "intents": len(first.names),
                           "examples": first.examples, "adapt_ms": round(first.ms, 1), "method": first.method,
                           "threshold": eng.threshold, "answers": []}
    shot("chat-adapted")

    def ask(text: str, expected: str) -> None:
        page.input.setFocus()
        QTest.keyClicks(page.input, text)
        QTest.keyClick(page.input, Qt.Key.Key_Return)
        pump(30)
        a = eng.transcript[-1]["answer"]
        out["answers"].append({"message": text, "expected": expected, "intent": a["intent"],
                               "confidence": round(a["confidence"], 3), "fallback": a["fallback"],
                               "correct": a["intent"] == expected, "latency_ms": round(a["latency_ms"], 2)})

    ds = page.dataset

    def unseen(name: str) -> list[str]:
        seen = set(eng.support[name].examples)
        label = ds.classes.index(name)
        return [t for t, y in zip(ds.texts, ds.labels, strict=True) if y == label and t not in seen]

    for name in eng.support.names[:2]:
        if unseen(name):
            ask(unseen(name)[len(unseen(name)) // 2], name)
    for turn, a in enumerate(list(out["answers"])):
        if not a["correct"]:  # the user corrects it: the message joins the right intent, re-adapt
            adapts = page.adapt_count
            page.give_feedback(turn, a["expected"])
            wait_for(lambda n=adapts: page.adapt_count > n and not page.busy, "re-adapting after feedback")
            again = eng.answer(a["message"])
            a["after_feedback"] = {"intent": again.intent, "confidence": round(again.confidence, 3)}
    adapts = page.adapt_count
    name, examples, reply = TOUR_NEW_INTENT
    page.add_intent(name, examples, reply)
    wait_for(lambda: page.adapt_count > adapts and not page.busy, "adapting to the new intent")
    out["adapt_ms_with_new_intent"] = round(eng.adaptation.ms, 1)
    ask("please order me a pizza", name)
    shot("chat-answers")
    page.compare.setChecked(True)
    second = eng.support.names[1]
    ask((unseen(second) or ["turn on the lights"])[0], second)
    out["answers"][-1]["before_intent"] = eng.transcript[-1]["before"]["intent"]
    out["answers"][-1]["before_confidence"] = round(eng.transcript[-1]["before"]["confidence"], 3)
    out["baseline"] = eng.baseline_label
    shot("chat-before-after")
    page.compare.setChecked(False)
    window.actions["demo_mode"].trigger()
    pump(200)
    third = eng.support.names[2]
    ask((unseen(third) or ["turn on the lights"])[-1], third)
    shot("chat-demo")
    window.set_demo_mode(False)
    pump(100)
    return out
