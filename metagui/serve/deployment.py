"""One deployed model: a stored run opened as a Try-it ``ChatSession``, its support set
restored from the run store, every change journalled there before it is acknowledged, and one
lock that concurrent requests take turns on.

A bundle is served as the run it becomes in the store (``bundle_run``): imported once, found
again by the bundle's sha256 (tag ``bundle-sha256:<hex>``), so that its feedback and support
set are kept like a run's, can be exported (``metagui feedback RUN``) and fine-tuned from
(``metagui train CONFIG --from RUN``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from pathlib import Path
from typing import Any

from metagui.core.chat import (
    ChatEngine,
    ChatSession,
    SupportSet,
    held_out_classes,
    journal_to_store,
)
from metagui.core.chat.session import START_FROM
from metagui.core.config import RunConfig
from metagui.core.errors import ConfigError, DataError, MetaGUIError
from metagui.core.store import RunStore

SOURCE = "serve"  # how the store's feedback and support rows name what wrote them


def loopback(host: str) -> bool:
    """True for a host that only this machine can reach (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bundle_run(db: str | Path | None, path: str | Path, encoder: str | Path | None = None) -> tuple[int, bool]:
    """The run that bundle ``path`` is in the store at ``db``: found by the bundle's sha256,
    or imported now (checked first; nothing is executed). (run id, imported now)."""
    from metagui.core.export import BUNDLE_MEMBERS, BundleError, import_bundle
    from metagui.core.files import read_bytes

    p = Path(path)
    try:
        sha = hashlib.sha256(read_bytes(p, sum(BUNDLE_MEMBERS.values()), "bundle")).hexdigest()
    except DataError as exc:
        raise BundleError(str(exc)) from None
    tag = f"bundle-sha256:{sha}"
    store = RunStore(db)
    try:
        found = store.find_runs_tagged(tag)
        if found:
            return found[0], False
        run_id = import_bundle(store, p, encoder)
        store.update_run(run_id, tags=["imported", tag])
        return run_id, True
    finally:
        store.close()


class Deployment:
    """A ChatSession on run ``run_id`` of the store at ``db``, as ``serve`` runs it."""

    def __init__(self, db: str | Path | None, run_id: int, start: str = "held_out", threshold: float | None = None,
                 card: str | None = None) -> None:
        if start not in START_FROM:
            raise ConfigError(f"--start takes {', '.join(START_FROM)}, not '{start}'")
        self.db = Path(db) if db else None
        self.lock = threading.Lock()
        self.started = time.time()
        self.note = ""
        store = RunStore(db)
        try:
            self.db = store.path
            self.run = store.run(run_id)
            cfg = RunConfig.from_toml(self.run["config"])
            if cfg.dataset.source == "sinusoid":
                raise ConfigError(f"run {run_id} is a regression model: serve takes intent and image classifiers")
            if not store.checkpoints(run_id):
                raise ConfigError(f"run {run_id} has no checkpoint to serve (it stopped before its first one)")
            engine = ChatEngine.from_run(store, run_id)
            live = store.live_support(run_id)
        finally:
            store.close()
        if engine.pre.modality not in ("text", "image"):
            raise ConfigError(f"run {run_id} is a {engine.pre.modality} model: serve takes intent and image classifiers")
        if threshold is not None:
            engine.threshold = float(threshold)
        self.config = cfg
        self.card = card  # the bundle's model card; None: the run's, made when first asked for
        self.session = ChatSession(engine, None, [], cfg.task.shot, self.run)
        self.restored = live is not None
        if live is not None:  # the support set it was serving when it stopped (or was killed)
            self.session.engine.support = SupportSet.from_dict(live)
        elif start != "empty":
            self._start_from_data(start)
        self.session.on_change = journal_to_store(self.db, run_id, SOURCE, synchronous_full=True)
        if live is None:  # from now on a restart finds exactly this support set
            self.session.on_change(self.session, None)
        self._adapt_quietly()

    @property
    def run_id(self) -> int:
        return int(self.run["id"])

    def _start_from_data(self, start: str) -> None:
        from metagui.core.data import load_dataset

        try:
            ds = load_dataset(self.config.dataset)
        except MetaGUIError as exc:
            self.note = f"the run's dataset could not be read ({exc}): the support set starts empty; POST /adapt sets it"
            return
        held, note = held_out_classes(ds, self.config.task)
        self.session.dataset, self.session.held_out = ds, held
        try:
            self.session.start(start)
        except MetaGUIError as exc:
            self.note = f"the first adaptation failed ({exc})"
        self.note = self.note or note or self.session.note

    def _adapt_quietly(self) -> None:
        if self.session.problem():
            return
        try:
            self.session.adapt()
        except MetaGUIError as exc:
            self.note = f"the support set could not be adapted to ({exc}); POST /adapt sets another"

    def close(self) -> None:
        close = getattr(self.session.on_change, "close", None)
        if close is not None:
            close()

    # --- what the endpoints do (each under the lock) ----------------------------------------------------
    def set_support(self, intents: list[dict[str, Any]], replace: bool = True, threshold: float | None = None) -> dict:
        """Replace (or merge into) the support set, record it, adapt to it."""
        s = self.session
        with self.lock:
            new = SupportSet(modality=s.modality) if replace else s.support.copy()
            for it in intents:
                name = " ".join(str(it["name"]).split())
                if name not in new:
                    new.add_intent(name)
                for ex in it.get("examples") or []:
                    self.check_item(ex)
                    new.add_example(name, ex)
                if it.get("reply"):
                    new.set_reply(name, str(it["reply"]))
            problem = new.problem()
            if problem:
                raise DataError(problem)
            ad = s.replace_support(new)  # recorded (committed) before the answer; a failure changes nothing
            if threshold is not None:
                s.threshold = threshold
            return self._adaptation(ad)

    def predict(self, messages: list[str]) -> dict:
        for m in messages:
            self.check_item(m)
        with self.lock:
            s = self.session
            if s.adaptation is None:
                from metagui.core.chat import NotAdapted

                raise NotAdapted("the model has no support set to answer from yet: POST /adapt first "
                                 "(at least two intents with examples)")
            answers = s.engine.answers(messages)
            threshold = s.threshold
        out = []
        for a in answers:
            top = [(a.intent, a.confidence), *a.alternatives[:2]]
            out.append({"message": a.message, "intent": a.intent, "confidence": round(a.confidence, 6),
                        "top3": [{"intent": n, "confidence": round(p, 6)} for n, p in top],
                        "reply": a.reply, "fallback": a.fallback})
        return {"predictions": out, "threshold": threshold}

    def feedback(self, message: str, intent: str, reply: str = "") -> dict:
        """``message`` was ``intent``: recorded (committed) first, then the model re-adapts."""
        self.check_item(message)
        with self.lock:
            s = self.session
            item = s.teach(message, intent)
            if reply and s.support[item["intent"]].reply != reply.strip():
                s.set_reply(item["intent"], reply)
            out = {**item, "recorded": True, "adapted": False, "adapt_ms": None, "problem": s.problem()}
            if not out["problem"]:
                try:
                    out.update(adapted=True, adapt_ms=round(s.adapt().ms, 2))
                except MetaGUIError as exc:
                    out["problem"] = str(exc)
            return out

    def support(self) -> dict:
        with self.lock:
            return self.session.support.to_dict()

    def health(self) -> dict:
        s = self.session
        return {"status": "ok", "run": self.run_id, "adapted": s.adaptation is not None,
                "intents": len(s.adaptation.names) if s.adaptation else 0, "uptime_s": round(time.time() - self.started, 1)}

    def model(self) -> dict:
        s = self.session
        learner, pre = s.engine.learner, s.engine.pre
        run = {k: self.run.get(k) for k in ("id", "name", "algorithm", "dataset", "task", "status", "steps_done",
                                            "best_val", "best_val_ci", "parent_id", "tags")}
        if self.card is None:
            self.card = run_card(self.db, self.run_id)
        with self.lock:
            support = {"intents": s.support.counts(), "adapted_to": list(s.adaptation.names) if s.adaptation else [],
                       "adapt_ms": round(s.adaptation.ms, 2) if s.adaptation else None}
        return {
            "run": run,
            "encoder": {"modality": pre.modality, "text_encoder": pre.text_encoder or ("built-in" if pre.modality == "text" else ""),
                        "backbone": self.config.algorithm.backbone},
            "algorithm": {"name": learner.name, "label": learner.label, "family": learner.family,
                          "n_way": learner.n_way, "hyperparams": dict(learner.hp), "adapts_by": s.engine.method()},
            "threshold": s.threshold, "support": support, "restored": self.restored, "note": self.note,
            "card": self.card,
        }

    def check_item(self, item: str) -> None:
        """Image models take PNG data URIs, never paths on the server's disk."""
        from metagui.core.chat import DATA_URI

        if self.session.modality == "image" and not str(item).startswith(DATA_URI):
            raise DataError("this is an image model: send images as PNG data URIs (data:image/png;base64,...)")

    def _adaptation(self, ad) -> dict:
        return {"intents": list(ad.names), "examples": ad.examples, "adapt_ms": round(ad.ms, 2), "method": ad.method}


def run_card(db: str | Path | None, run_id: int) -> str:
    """The model card of a stored run (as its bundle export would write it, without parity
    figures); "" when it cannot be made."""
    try:
        from metagui.core.export import load_source, model_card

        store = RunStore.for_reading(db)
        try:
            src = load_source(store, run_id)
        finally:
            store.close()
        card = model_card(src, "bundle", {}, {}, {}, [])
    except Exception:  # noqa: BLE001  the card is a courtesy; serving does not depend on it
        return ""
    lines = card.splitlines()  # served from the store, not exported: say so where the card says how it was made
    for i, line in enumerate(lines):
        if line.startswith("Exported by MetaGUI"):
            lines[i] = f"Served by `metagui serve` from run {run_id} of the run store (not an exported file)."
            break
    return "\n".join(lines)
