"""``metagui bench chat``: the "Try it" engine on Banking77 (banking customer-service intents).

1. Meta-train ProtoNet and MAML on 50 of the 77 intents, each with its Text preset (MAML:
   a shared head, 1 second-order inner step of size 3 in training, 20 of size 0.5 when
   adapting; seeded split; 5-way 5-shot 5-query episodes; a fixed CPU budget of meta-steps).
2. In the chat engine, adapt to all 27 held-out intents at once from 5 examples each (from
   train.csv), as the pane does, and report accuracy on those intents' test.csv examples
   (40 each); also 5-way episodes of held-out intents, the usual few-shot figure.
3. A brand-new intent that Banking77 does not have (branch opening hours), typed as five
   examples: how many of ten held-out paraphrases it recognises among 28 intents, and how
   many other messages it wrongly claims.
4. Latency of re-adapting to that support set (28 intents, 140 examples) plus answering one
   message: median and 95th percentile over repeated runs on 2 CPU threads.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

NEW_INTENT = "branch_opening_hours"
NEW_INTENT_REPLY = "Our branches are open 9:00-17:00 on weekdays and 10:00-14:00 on Saturdays."
NEW_INTENT_EXAMPLES = [
    "What are your opening hours?",
    "When does the branch open tomorrow?",
    "Is your office open on Saturday?",
    "What time do you close today?",
    "Are you open on bank holidays?",
]
NEW_INTENT_HELD_OUT = [
    "until what time is the branch open",
    "are you open on sundays",
    "what time does the bank open in the morning",
    "opening times for this weekend please",
    "is the office closed on public holidays",
    "when do you open on monday",
    "how late are you open tonight",
    "what are the hours of your branch",
    "can I visit the branch on saturday afternoon",
    "what time does the branch shut",
]
BENCH_HYPERPARAMS = {"meta_batch": 4}  # on top of each learner's text preset


def banking_split(train_csv: str | Path, n_train: int = 50, seed: int = 0):
    """The Banking77 training table and a seeded split of its intents: (dataset, meta-train
    intents, held-out intents)."""
    from metagui.core.data.text import load_text_table

    ds = load_text_table(train_csv)
    order = np.random.default_rng(seed).permutation(len(ds.classes))
    train = [ds.classes[i] for i in order[:n_train]]
    held = [ds.classes[i] for i in order[n_train:]]
    return ds, train, held


def chat_config(algorithm: str, train_csv: str | Path, train: list[str], held: list[str], steps: int,
                encoder: str = ""):
    from metagui.core.config import RunConfig
    from metagui.core.presets import default_hyperparams

    cfg = RunConfig(name=f"{algorithm} on Banking77 ({len(train)} intents)")
    cfg.dataset.source, cfg.dataset.path = "text_table", str(train_csv)
    cfg.task.way, cfg.task.shot, cfg.task.query = 5, 5, 5
    cfg.task.split, cfg.task.train_classes, cfg.task.val_classes, cfg.task.test_classes = "classes", train, [], held
    cfg.algorithm.name = algorithm
    cfg.algorithm.hyperparams = {**default_hyperparams(algorithm, "text", bool(encoder)), **BENCH_HYPERPARAMS}
    cfg.algorithm.text_encoder = encoder
    cfg.training.steps, cfg.training.val_every, cfg.training.log_every = steps, steps, max(1, steps // 10)
    return cfg


def meta_train(cfg, dataset):
    """Meta-train ``cfg`` on ``dataset``; the trained learner, the experiment and seconds taken."""
    from metagui.core.experiment import Experiment
    from metagui.core.trainer import train_to_completion

    exp = Experiment.prepare(cfg, dataset=dataset)
    learner, seconds = train_to_completion(cfg, exp)
    return learner, exp, seconds


def held_out_messages(test_csv: str | Path, intents: list[str]) -> tuple[list[str], list[str]]:
    from metagui.core.data.text import load_text_table

    ds = load_text_table(test_csv)
    keep = set(intents)
    pairs = [(t, ds.classes[y]) for t, y in zip(ds.texts, ds.labels, strict=True) if ds.classes[y] in keep]
    return [t for t, _ in pairs], [y for _, y in pairs]


def evaluate_engine(engine, dataset, held: list[str], items: list[str], labels: list[str],
                    shots: int = 5, seeds: tuple[int, ...] = (1, 2, 3)) -> dict:
    """All held-out intents at once from ``shots`` examples each (one support draw per
    seed), then the same support set plus the brand-new intent."""
    from metagui.core.chat import held_out_accuracy, support_from_dataset

    accs, new_recall, new_false, accs_with_new = [], [], [], []
    for seed in seeds:
        engine.support, _ = support_from_dataset(dataset, held, shots, seed=seed)
        engine.adapt()
        accs.append(held_out_accuracy(engine, items, labels))
        engine.support.add_intent(NEW_INTENT, NEW_INTENT_EXAMPLES, NEW_INTENT_REPLY)
        engine.adapt()
        new_recall.append(float(np.mean([p == NEW_INTENT for p in engine.predict(NEW_INTENT_HELD_OUT)])))
        predicted = engine.predict(items)
        new_false.append(float(np.mean([p == NEW_INTENT for p in predicted])))
        accs_with_new.append(float(np.mean([p == y for p, y in zip(predicted, labels, strict=True)])))
    return {
        "way": len(held), "accuracy": float(np.mean(accs)), "accuracy_sd": float(np.std(accs)),
        "new_intent_recall": float(np.mean(new_recall)), "new_intent_false_rate": float(np.mean(new_false)),
        "accuracy_with_new_intent": float(np.mean(accs_with_new)), "support_draws": len(seeds),
        "queries": len(items),
    }


def episode_accuracy(engine, dataset, held: list[str], items: list[str], labels: list[str],
                     episodes: int = 100, way: int = 5, shots: int = 5, seed: int = 0) -> tuple[float, float]:
    """Mean accuracy (and 95% CI half-width) over ``way``-way episodes of held-out intents:
    support from train.csv, every test.csv example of the episode's intents as queries."""
    from metagui.core.chat import held_out_accuracy, support_from_dataset
    from metagui.core.experiment import mean_ci95

    rng = np.random.default_rng(seed)
    by_intent: dict[str, list[str]] = {}
    for t, y in zip(items, labels, strict=True):
        by_intent.setdefault(y, []).append(t)
    accs = []
    for e in range(episodes):
        chosen = [held[i] for i in rng.choice(len(held), way, replace=False)]
        engine.support, _ = support_from_dataset(dataset, chosen, shots, seed=seed * 1000 + e)
        engine.adapt()
        q = [(t, c) for c in chosen for t in by_intent.get(c, [])]
        accs.append(held_out_accuracy(engine, [t for t, _ in q], [c for _, c in q]))
    return mean_ci95(np.array(accs))


def measure_latency(engine, reps: int = 50, warmup: int = 3, message: str = "my card still has not arrived") -> dict:
    """Re-adapt to the engine's support set and answer one message, ``reps`` times. Each
    answer is to a message not seen before (the message with a number appended), so a
    pretrained encoder embeds it afresh, as it would a user's new message; the support set's
    embeddings are cached, as they are in the app after the first adaptation."""
    from metagui.core.chat import latency_stats

    samples, adapt_only = [], []
    for i in range(warmup + reps):
        start = time.perf_counter()
        ad = engine.adapt()
        engine.answer(f"{message} ({i})")
        if i >= warmup:
            samples.append((time.perf_counter() - start) * 1000)
            adapt_only.append(ad.ms)
    out = latency_stats(samples)
    out["adapt_median_ms"] = float(np.median(adapt_only))
    return out


def bench_chat(algorithms: list[str], data_dir: str | Path, steps: dict[str, int], threads: int = 2,
               reps: int = 50, episodes: int = 100, encoder: str = "", echo=print) -> list[dict]:
    from metagui.core.chat import ChatEngine, support_from_dataset

    torch.set_num_threads(threads)
    data = Path(data_dir)
    train_csv, test_csv = data / "train.csv", data / "test.csv"
    ds, train, held = banking_split(train_csv)
    items, labels = held_out_messages(test_csv, held)
    echo(f"Banking77: meta-train on {len(train)} intents (seeded split), test on the other {len(held)} "
         f"({len(items)} test.csv messages); 5 examples per intent from train.csv; "
         f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; text encoder: {encoder or 'built-in'}")
    rows = []
    for algo in algorithms:
        n = steps.get(algo, 200)
        cfg = chat_config(algo, train_csv, train, held, n, encoder)
        learner, exp, seconds = meta_train(cfg, ds)
        engine = ChatEngine(learner, exp.pre, config=cfg)
        r = {"algorithm": algo, "steps": n, "train_seconds": seconds, "hyperparams": cfg.algorithm.hyperparams}
        r.update(evaluate_engine(engine, ds, held, items, labels))
        r["episode_accuracy"], r["episode_ci95"] = episode_accuracy(engine, ds, held, items, labels, episodes)
        engine.support, _ = support_from_dataset(ds, held, 5, seed=1)
        engine.support.add_intent(NEW_INTENT, NEW_INTENT_EXAMPLES, NEW_INTENT_REPLY)
        r["latency"] = measure_latency(engine, reps)
        r["support_examples"] = engine.support.n_examples
        rows.append(r)
        echo(f"\n{algo} ({engine.method()}), {n} meta-steps in {seconds:.0f} s")
        echo(f"  {r['way']}-way, all held-out intents:  accuracy {r['accuracy']:.3f} (sd {r['accuracy_sd']:.3f} over "
             f"{r['support_draws']} support draws; chance {1 / r['way']:.3f})")
        echo(f"  5-way episodes of held-out intents: accuracy {r['episode_accuracy']:.3f} ± {r['episode_ci95']:.3f} "
             f"({episodes} episodes; chance 0.200)")
        echo(f"  new intent '{NEW_INTENT}' (5 typed examples, 28 intents): recognised {r['new_intent_recall']:.0%} of "
             f"{len(NEW_INTENT_HELD_OUT)} paraphrases; claimed {r['new_intent_false_rate']:.1%} of other messages; "
             f"accuracy on the 27 intents {r['accuracy_with_new_intent']:.3f}")
        lat = r["latency"]
        echo(f"  adapt + answer ({r['support_examples']} examples, 28 intents): median {lat['median_ms']:.1f} ms, "
             f"p95 {lat['p95_ms']:.1f} ms over {lat['n']} runs (adapt alone: median {lat['adapt_median_ms']:.1f} ms)")
    echo("\n" + f"{'algorithm':<10} {'27-way acc':>10} {'5-way acc':>10} {'new recall':>10} {'new false':>10} "
         f"{'median ms':>10} {'p95 ms':>8}")
    for r in rows:
        echo(f"{r['algorithm']:<10} {r['accuracy']:>10.3f} {r['episode_accuracy']:>10.3f} {r['new_intent_recall']:>10.0%} "
             f"{r['new_intent_false_rate']:>10.1%} {r['latency']['median_ms']:>10.1f} {r['latency']['p95_ms']:>8.1f}")
    return rows
