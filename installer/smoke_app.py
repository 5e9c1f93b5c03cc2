"""Smoke test of a frozen MetaGUI program, on any platform (standard library only):

    python installer/smoke_app.py --bin PATH/TO/metagui --out FOLDER

`--version`; `tour` offscreen (every screenshot, no error); `train` on the built-in intents
(40 steps); the run store lands in the per-user data folder a pip install uses; `export` a
bundle of that run and `predict` with it; `metagui BUNDLE` (a double-click) opens it in the app. Logs in FOLDER/logs; exit status = failed checks.
On Linux and macOS the program runs as a new user (HOME=FOLDER/home); on Windows, where the
data folder does not follow an environment variable, in the current user's
%LOCALAPPDATA%\\metagui (a CI runner's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SUPPORT = """item,label
turn on the kitchen light,on
switch on the lamp,on
lights on in the bedroom,on
turn off the kitchen light,off
switch off the lamp,off
lights off in the bedroom,off
what is the weather today,weather
will it rain tomorrow,weather
how hot is it outside,weather
"""
QUERIES = "please turn on the hall light\nis it going to snow\n"


def user_store(env: dict) -> Path:
    """Where platformdirs.user_data_dir("metagui", appauthor=False) puts metagui.db."""
    if sys.platform == "win32":
        return Path(env["LOCALAPPDATA"]) / "metagui" / "metagui.db"
    if sys.platform == "darwin":
        return Path(env["HOME"]) / "Library" / "Application Support" / "metagui" / "metagui.db"
    return Path(env.get("XDG_DATA_HOME") or Path(env["HOME"]) / ".local" / "share") / "metagui" / "metagui.db"


class Smoke:
    def __init__(self, program: str, out: Path) -> None:
        self.program, self.out, self.failures = program, out, 0
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("METAGUI_", "QT_", "XDG_"))}
        if sys.platform != "win32":
            env["HOME"] = str(out / "home")
            (out / "home").mkdir(exist_ok=True)
        env["QT_QPA_PLATFORM"] = "offscreen"
        self.env = env

    def ok(self, what: str) -> None:
        print(f"ok   {what}", flush=True)

    def fail(self, what: str) -> None:
        print(f"FAIL {what}", flush=True)
        self.failures += 1

    def run(self, name: str, *args: str, timeout: float = 600) -> str | None:
        """Run the program; its output (stdout + stderr logged), or None when it failed."""
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([self.program, *args], env=self.env, capture_output=True, text=True,
                                  timeout=timeout, cwd=self.out)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.fail(f"{name}: {exc}")
            return None
        (self.logs / f"{name}.log").write_text(f"$ metagui {' '.join(args)}\n{proc.stdout}\n--- stderr\n{proc.stderr}",
                                               encoding="utf-8")
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            self.fail(f"{name}: exit {proc.returncode}: {' | '.join(tail)} (log: {self.logs / name}.log)")
            return None
        self.ok(f"{name} ({time.perf_counter() - t0:.1f} s)")
        return proc.stdout

    def check(self, what: str, test) -> None:
        try:
            detail = test()
        except Exception as exc:  # a failed check is reported, and the next one runs
            self.fail(f"{what}: {type(exc).__name__}: {exc}")
        else:
            self.ok(f"{what}{': ' + detail if detail else ''}")

    def all(self) -> int:
        out = self.out
        version = self.run("version", "--version")
        if version is not None:
            self.check("version", lambda: _assert(re.match(r"metagui \d", version), version) or version.strip())

        if self.run("tour", "tour", "--out", str(out / "tour"), "--steps", "10", "--db", str(out / "tour.db")) is not None:
            def tour():
                s = json.loads((out / "tour" / "summary.json").read_text(encoding="utf-8"))
                pngs = sorted(p.name for p in (out / "tour").glob("*.png"))
                _assert(s["error"] is None, s["error"])
                _assert(s["screenshots"] and sorted(s["screenshots"]) == pngs, (s["screenshots"], pngs))
                for name in pngs:
                    data = (out / "tour" / name).read_bytes()
                    _assert(data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, f"{name} is no screenshot")
                return f"{len(pngs)} screenshots, training {s['status']}, no error"
            self.check("tour", tour)

        config = self.run("config", "config", "--dataset", "intents")
        if config is None:
            return self.failures
        config = re.sub(r"(?m)^steps = .*", "steps = 40", config)
        config = re.sub(r"(?m)^val_every = .*", "val_every = 20", config)
        config = re.sub(r"(?m)^val_episodes = .*", "val_episodes = 50", config)
        (out / "run.toml").write_text(config, encoding="utf-8")
        store = user_store(self.env)
        trained = self.run("train", "train", str(out / "run.toml"), "--quiet")
        if trained is None:
            return self.failures
        result = json.loads(trained.strip().splitlines()[-1])
        self.check("train on the built-in intents",
                   lambda: _assert(result["status"] == "completed", result)
                   or f"run {result['run']}, best validation accuracy {result['best_val']:.3f}")
        self.check("the run store is the per-user one of a pip install",
                   lambda: _assert(store.is_file(), f"no {store}") or str(store))
        bundle = out / "smoke.metagui"
        if self.run("export", "export", str(result["run"]), "--out", str(bundle)) is None:
            return self.failures
        (out / "support.csv").write_text(SUPPORT, encoding="utf-8")
        (out / "query.txt").write_text(QUERIES, encoding="utf-8")
        predicted = self.run("predict", "predict", str(bundle), "--support", str(out / "support.csv"),
                             "--query", str(out / "query.txt"))
        if predicted is not None:
            def predict():
                r = json.loads(predicted)
                _assert(len(r["predictions"]) == 2, r)
                return f"{len(r['predictions'])} answers"
            self.check("predict", predict)
        # as a file manager opens a bundle: `metagui FILE.metagui`, the window adds it to Runs
        self.env["METAGUI_FIRST_WINDOW_EXIT"] = "1"
        opened = self.run("open-bundle", "--db", str(out / "opened.db"), str(bundle))
        del self.env["METAGUI_FIRST_WINDOW_EXIT"]
        if opened is not None:
            listed = self.run("runs-after-open", "runs", "--db", str(out / "opened.db"), "--json")
            if listed is not None:
                self.check("the app opened the bundle given on its command line",
                           lambda: _assert(len(json.loads(listed)) == 1, listed) or "1 run imported")
        return self.failures


def _assert(condition, detail) -> None:
    if not condition:
        raise AssertionError(detail)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="the frozen metagui program (or its launcher)")
    p.add_argument("--out", required=True, help="scratch folder (logs, tour, run store)")
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    failures = Smoke(os.path.abspath(args.bin), out).all()  # the program runs in OUT
    print(f"smoke_app: {failures} failed check(s)" if failures else "smoke_app: all checks passed")
    return min(failures, 100)


if __name__ == "__main__":
    raise SystemExit(main())
