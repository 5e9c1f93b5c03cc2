"""Parent and child: a run fine-tuned from another (``metagui train CONFIG --from RUN``) beside
its parent, on the same held-out episodes of the parent's data and on the parent's feedback,
so that whoever promotes the child decides with numbers.

- Held-out: one set of episodes drawn (seeded) from the parent's test split; both learners
  answer exactly those episodes. Did the child forget what the parent knew?
- Feedback: the messages the deployed parent was corrected on, in ``folds``-fold
  cross-validation: each learner adapts (as the chat does) to the other folds' messages and
  answers the held-back ones. Did the child learn what the parent was taught?
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metagui.core.errors import DataError, MetaGUIError

FOLDS = 5


def compare_with_parent(db, child_id: int, parent_id: int | None = None, episodes: int = 200,
                        folds: int = FOLDS) -> dict[str, Any]:
    """The figures described in the module docstring, as plain data."""
    from metagui.core.chat import ChatEngine
    from metagui.core.config import RunConfig
    from metagui.core.experiment import Experiment, evaluate
    from metagui.core.store import RunStore
    from metagui.core.tasks import step_rng

    store = RunStore.for_reading(db)
    try:
        child = store.run(child_id)
        parent_id = parent_id if parent_id is not None else child.get("parent_id")
        if parent_id is None:
            raise MetaGUIError(f"run {child_id} was not fine-tuned from another run: it has no parent to compare with")
        parent = store.run(parent_id)
        for rid in (parent_id, child_id):
            if not store.checkpoints(rid):
                raise MetaGUIError(f"run {rid} has no checkpoint to compare")
        feedback = store.feedback(parent_id)
        engines = {key: ChatEngine.from_run(store, rid) for key, rid in (("parent", parent_id), ("child", child_id))}
    finally:
        store.close()
    if engines["parent"].pre.as_dict() != engines["child"].pre.as_dict():
        raise DataError(f"runs {parent_id} and {child_id} read their inputs differently (another encoder or image "
                        "size): they cannot answer the same episodes")
    out: dict[str, Any] = {"parent": parent_id, "child": child_id,
                           "names": {"parent": parent["name"], "child": child["name"]}}

    cfg = RunConfig.from_toml(parent["config"])
    exp = Experiment.prepare(cfg)
    rng = step_rng(cfg.training.seed + 1, "test", 0)
    batches, left = [], episodes
    while left > 0:
        n = min(32, left)
        batches.append(exp.sample("test", n, rng))
        left -= n
    held: dict[str, Any] = {"dataset": cfg.dataset.path or cfg.dataset.source, "way": exp.n_way,
                            "shot": cfg.task.shot, "query": cfg.task.query, "episodes": episodes}
    for key, engine in engines.items():
        learner = engine.learner.eval()
        r = evaluate(learner, batches, torch.device("cpu"))
        held[key], held[f"{key}_ci95"] = r[learner.metric_name], r["ci95"]
    held["metric"] = engines["parent"].learner.metric_name
    out["held_out"] = held
    out["feedback"] = feedback_accuracy(engines, feedback, folds)
    _what_the_child_saw(out, RunConfig.from_toml(child["config"]), exp, feedback)
    return out


def _what_the_child_saw(out: dict[str, Any], child_cfg, parent_exp, feedback: list[dict]) -> None:
    """Say how far the figures are held out for the child: how many of the parent's test
    classes the child meta-trained on, and how many feedback messages are in its data (a child
    fine-tuned on the feedback has seen them: its feedback figure then is not held out)."""
    from metagui.core.data import TASK_FAMILIES, load_dataset
    from metagui.core.tasks import split_classes

    if child_cfg.dataset.source in TASK_FAMILIES or parent_exp.dataset is None:
        return
    try:
        ds = load_dataset(child_cfg.dataset)
        trained = {ds.classes[i] for i in split_classes(ds, child_cfg.task).get("train", [])}
    except MetaGUIError:
        return
    pds = parent_exp.dataset
    test = {pds.classes[i] for i in split_classes(pds, parent_exp.config.task).get("test", [])}
    out["held_out"]["child_trained_on_classes"] = len(test & trained)
    out["held_out"]["test_classes"] = len(test)
    texts = {" ".join(str(t).split()) for t in getattr(ds, "texts", []) or []}
    messages = {" ".join(r["message"].split()) for r in feedback}
    out["feedback"]["child_trained_on"] = len(messages & texts)


def feedback_accuracy(engines: dict[str, Any], feedback: list[dict], folds: int = FOLDS) -> dict[str, Any]:
    """Cross-validated accuracy of each engine on the feedback messages (see the module
    docstring); ``{"messages": 0, ...}`` with a note when there are too few to say."""
    from metagui.core.chat import SupportSet

    items = list(dict.fromkeys((r["message"], r["intent"]) for r in feedback))
    intents = sorted({i for _, i in items})
    res: dict[str, Any] = {"messages": len(items), "intents": len(intents), "folds": folds}
    if len(intents) < 2 or len(items) < folds:
        res["note"] = "too little feedback to measure (at least two intents and as many messages as folds)"
        return res
    rng = np.random.default_rng(0)
    fold_of = rng.permutation(len(items)) % folds
    right = {k: 0 for k in engines}
    asked = 0
    for f in range(folds):
        support = SupportSet()
        for (msg, intent), fo in zip(items, fold_of, strict=True):
            if fo != f:
                if intent not in support:
                    support.add_intent(intent)
                support.add_example(intent, msg)
        queries = [(m, i) for (m, i), fo in zip(items, fold_of, strict=True) if fo == f and i in support]
        if support.problem() or not queries:
            continue
        asked += len(queries)
        for key, engine in engines.items():
            engine.adapt(support)
            predicted = engine.predict([m for m, _ in queries])
            right[key] += sum(p == i for p, (_, i) in zip(predicted, queries, strict=True))
    res["answered"] = asked
    for key in engines:
        res[key] = right[key] / asked if asked else None
    if not asked:
        res["note"] = "no message had another of its intent to learn from"
    return res
