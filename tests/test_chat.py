"""The chat engine: support sets, adaptation of every family to any number of intents,
answers and fallbacks, feedback, before / after, transcripts; and the Banking77 check
(`metagui bench chat` runs it at full scale): meta-train on 50 intents, adapt to the 27
held-out ones from 5 examples each, and recognise a brand-new typed intent."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metagui.bench.chat import (
    NEW_INTENT,
    NEW_INTENT_EXAMPLES,
    NEW_INTENT_HELD_OUT,
    NEW_INTENT_REPLY,
    banking_split,
    chat_config,
    held_out_messages,
    meta_train,
)
from metagui.core import algorithms
from metagui.core.chat import (
    DATA_URI,
    ChatEngine,
    ChatSession,
    NotAdapted,
    RegressionEngine,
    SupportSet,
    gradient_start,
    held_out_accuracy,
    held_out_classes,
    humanise,
    image_to_data_uri,
    open_run,
    support_from_dataset,
)
from metagui.core.errors import ConfigError, DataError, MetaGUIError
from metagui.core.models import Preprocessing, make_backbone
from tests.helpers import BANKING, needs_banking

TEXT = Preprocessing(modality="text")


@pytest.fixture(scope="module")
def banking():
    torch.set_num_threads(2)
    ds, train, held = banking_split(BANKING / "train.csv")
    items, labels = held_out_messages(BANKING / "test.csv", held)
    return ds, train, held, items, labels


@pytest.fixture(scope="module")
def protonet(banking):
    """ProtoNet meta-trained briefly (150 steps of 2 episodes) on 50 Banking77 intents."""
    ds, train, held, _, _ = banking
    cfg = chat_config("protonet", BANKING / "train.csv", train, held, 150)
    cfg.algorithm.hyperparams["meta_batch"] = 2
    learner, exp, _ = meta_train(cfg, ds)
    return learner, exp.pre, cfg


def untrained(name: str, n_way: int = 5, **hp) -> algorithms.MetaLearner:
    torch.manual_seed(0)
    return algorithms.create(name, make_backbone("text", TEXT), n_way, hp)


def toy_support() -> SupportSet:
    s = SupportSet()
    s.add_intent("lights_on", ["turn on the lights", "switch the lamp on", "lights on please"], "Lights are on.")
    s.add_intent("weather", ["what is the weather", "will it rain today", "is it sunny outside"], "It is sunny.")
    s.add_intent("timer", ["set a timer for ten minutes", "start a 5 minute timer", "timer for an hour"])
    return s


# --- support sets -------------------------------------------------------------------------------
def test_support_set_editing_and_round_trips(tmp_path):
    s = toy_support()
    assert s.counts() == {"lights_on": 3, "weather": 3, "timer": 3} and s.n_examples == 9
    assert not s.add_example("weather", "  what is   the weather ")  # same text, whitespace aside
    assert s.add_example("timer", "wake me in 20 minutes")
    with pytest.raises(DataError, match="already"):
        s.add_intent("timer")
    s.rename_intent("timer", "set_timer")
    assert s.names == ["lights_on", "weather", "set_timer"]
    assert s.reply("set_timer").startswith("[set timer]")  # no reply text: a placeholder that says so
    s.remove_example("set_timer", 0)
    assert s["set_timer"].examples[0] == "start a 5 minute timer"
    s.add_intent("empty")
    assert s.usable() == ["lights_on", "weather", "set_timer"] and not s.problem()
    assert SupportSet.from_dict(json.loads(json.dumps(s.to_dict()))).to_dict() == s.to_dict()
    # CSV out and back in (into an empty set)
    path = tmp_path / "support.csv"
    path.write_text(s.to_csv(), encoding="utf-8")
    back = SupportSet()
    assert back.import_csv(path) == (4, s.n_examples)
    assert back.counts() == s.counts() and back["lights_on"].reply == "Lights are on."
    only_one = SupportSet([s["weather"]])
    assert "two intents" in only_one.problem()


def test_import_csv_finds_columns_and_reports_bad_files(tmp_path):
    p = tmp_path / "intents.tsv"
    p.write_text("Label\tUtterance\tResponse\nopening_hours\twhen do you open\tWe open at 9.\n"
                 "opening_hours\tare you open on sunday\t\n", encoding="utf-8")
    s = toy_support()
    assert s.import_csv(p) == (1, 2)
    assert s["opening_hours"].reply == "We open at 9." and len(s["opening_hours"].examples) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match="needs an intent column"):
        s.import_csv(bad)
    with pytest.raises(DataError, match="cannot read"):
        s.import_csv(tmp_path / "missing.csv")


def test_humanise_names():
    assert humanise("card_arrival") == "card arrival"
    assert humanise("HassTurnOn") == "turn on"
    assert humanise("en/HassLightSet") == "light set"


# --- adaptation of each family ----------------------------------------------------------------------
def test_metric_learner_answers_with_reply_confidence_alternatives_and_fallback():
    eng = ChatEngine(untrained("protonet"), TEXT, toy_support())
    with pytest.raises(DataError, match="adapt"):
        eng.answer("hello")
    ad = eng.adapt()
    assert ad.names == ["lights_on", "weather", "timer"] and ad.examples == 9 and ad.seconds > 0
    eng.threshold = 0.0
    a = eng.answer("turn on the lights")  # one of the examples: nearest to its own prototype
    assert a.intent == "lights_on" and a.reply == "Lights are on." and not a.fallback
    probs = [p for _, p in a.alternatives]
    assert {n for n, _ in a.alternatives} == {"weather", "timer"} and probs == sorted(probs, reverse=True)
    assert a.confidence >= probs[0] and 0 < a.confidence <= 1 and a.latency_ms > 0
    eng.threshold = 1.0
    a = eng.answer("turn on the lights")
    assert a.fallback and a.reply.startswith("I'm not sure") and "lights on" in a.reply


def test_maml_family_adapts_to_more_intents_than_it_was_trained_for():
    learner = untrained("maml", 2, inner_lr=0.5, eval_steps=5)
    eng = ChatEngine(learner, TEXT, toy_support())  # 3 intents, a 2-way head
    assert eng.gradient_head and "5 inner gradient steps" in eng.method()
    ad = eng.adapt()
    assert ad.predictor.n_way == 3
    assert eng.predict(["switch the lamp on", "will it rain today", "timer for an hour"]) == ["lights_on", "weather", "timer"]
    params, _ = gradient_start(learner, 3)
    w = params["head.weight"]
    assert w.shape[0] == 3 and torch.allclose(w[0], w[1]) and torch.allclose(w[0], learner.head.weight.mean(0))
    before, after = eng.compare("timer for an hour")  # before: zero inner steps, identical rows: uniform
    assert before.confidence == pytest.approx(1 / 3, abs=1e-5) and after.intent == "timer"


@pytest.mark.parametrize("name", ["maml", "metasgd", "reptile"])
def test_same_number_of_intents_is_exactly_the_learners_own_adaptation(name):
    learner = untrained(name, 3)
    support = toy_support()
    eng = ChatEngine(learner, TEXT, support)
    eng.adapt()
    sx, sy, _ = eng._support_tensors(support)
    own = learner.adapt(sx, sy, 3)
    q = eng.encode(["lights please", "sunny today?"])
    assert torch.allclose(eng.adaptation.predictor.predict(q), own.predict(q), atol=1e-5)


def test_before_for_metric_learners_is_the_untrained_encoder():
    learner = untrained("protonet")
    with torch.no_grad():  # make the "trained" model differ from its initialisation
        for p in learner.parameters():
            p.add_(0.05)
    eng = ChatEngine(learner, TEXT, toy_support())
    eng.adapt()
    fresh = eng.untrained_learner()
    reference = untrained("protonet").state_dict()
    assert fresh is not learner and all(torch.equal(v, reference[k]) for k, v in fresh.state_dict().items())
    assert not torch.equal(learner.backbone.token_weight, reference["backbone.token_weight"])
    before, after = eng.compare("set a timer please")
    assert before.message == after.message and "never meta-trained" in eng.baseline_help


def test_feedback_adds_the_message_and_reanswers_correctly():
    eng = ChatEngine(untrained("protonet"), TEXT, toy_support(), threshold=0.0)
    eng.adapt()
    message = "put the kettle timer on for me"
    eng.ask(message)
    eng.feedback(0, "lights_on")  # deliberately odd: the model must follow the user
    assert message in eng.support["lights_on"].examples
    assert eng.transcript[0]["feedback"] == {"intent": "lights_on", "correct": eng.transcript[0]["answer"]["intent"] == "lights_on", "added": True}
    assert eng.adaptation.examples == 10
    assert eng.answer(message).intent == "lights_on"
    eng.feedback(0, "brand_new")  # a new intent from feedback: 1 example is enough to exist
    assert eng.support["brand_new"].examples == [message]
    assert eng.answer(message).intent == "brand_new"  # the latest correction wins


def test_transcripts_save_reopen_and_export(tmp_path):
    from metagui.core.store import RunStore

    store = RunStore(tmp_path / "runs.db")
    eng = ChatEngine(untrained("protonet"), TEXT, toy_support(), run_id=7)
    eng.adapt()
    eng.ask("is it going to rain", compare=True)
    eng.ask("lights on in the kitchen")
    eng.feedback(1, "lights_on")
    tid = eng.save(store, "demo")
    row = store.transcripts(7)[0]
    assert row["id"] == tid and row["title"] == "demo" and len(row["messages"]) == 2
    other = ChatEngine(untrained("protonet"), TEXT, run_id=7)
    other.restore(row)
    assert other.support.counts() == eng.support.counts() and other.transcript[1]["feedback"]["intent"] == "lights_on"
    data = json.loads(eng.to_json("demo"))
    assert data["run_id"] == 7 and data["messages"][0]["before"]["intent"] and data["support"]["intents"][0]["name"] == "lights_on"
    rows = list(csv.DictReader(io.StringIO(eng.transcript_csv())))
    assert [r["message"] for r in rows] == ["is it going to rain", "lights on in the kitchen"]
    assert rows[1]["feedback_intent"] == "lights_on" and rows[0]["before_intent"]
    store.close()


def test_from_run_loads_the_best_checkpoint(tmp_path):
    from metagui.core.presets import default_config
    from metagui.core.store import RunStore
    from metagui.core.trainer import Trainer

    store = RunStore(tmp_path / "runs.db")
    cfg = default_config("maml", "sinusoid")
    cfg.training.steps, cfg.training.val_every, cfg.training.val_episodes = 3, 3, 4
    run = Trainer(cfg, store).run()
    with pytest.raises(ConfigError, match="regression"):
        ChatEngine.from_run(store, run.run_id)
    reg = RegressionEngine.from_run(store, run.run_id)
    reg.new_sine(np.random.default_rng(0))
    fit = reg.fit()
    assert fit.after is None and fit.before.shape == fit.truth.shape == (200,)
    reg.sample_points(5, np.random.default_rng(1))
    reg.add_point(0.0, 1.0)
    fit = reg.fit()
    assert len(reg.points) == 6 and fit.after.shape == (200,) and fit.mse_after is not None and fit.adapt_ms > 0
    assert not np.allclose(fit.before, fit.after)
    store.close()


def test_image_examples_from_data_uris_and_files(tmp_path):
    from PIL import Image

    pre = Preprocessing(modality="image", image_size=28, channels=1, invert=True)
    torch.manual_seed(0)
    learner = algorithms.create("protonet", make_backbone("conv4", pre, 8), 5)
    s = SupportSet(modality="image")
    rng = np.random.default_rng(0)
    for c in range(3):
        s.add_intent(f"class {c}")
        for _ in range(3):
            img = np.zeros((1, 28, 28), np.uint8)
            img[0, 4 + 6 * c : 10 + 6 * c, :] = 255  # a bar at a class-specific height
            img[0] += rng.integers(0, 30, (28, 28), dtype=np.uint8)
            s.add_example(f"class {c}", image_to_data_uri(img))
    eng = ChatEngine(learner, pre, s, threshold=0.0)
    eng.adapt()
    assert all(ex.startswith(DATA_URI) for ex in s["class 0"].examples)
    # a file is preprocessed as in training: resized, and inverted (black bar on white -> white on black)
    a = np.full((56, 56), 255, np.uint8)
    a[8 + 24 : 20 + 24, :] = 0
    path = tmp_path / "query.png"
    Image.fromarray(a).save(path)
    x = eng.encode([str(path)])
    assert x.shape == (1, 1, 28, 28) and float(x[0, 0, 18, 5]) > 0.9 and float(x[0, 0, 2, 5]) < 0.1
    assert eng.answer(str(path)).intent == "class 2"
    with pytest.raises(DataError, match="cannot read"):
        eng.answer(str(tmp_path / "nope.png"))


# --- the chat session (what the "Try it" pane runs) ------------------------------------------------------
INTENTS = {
    "lights_on": ["turn on the lights", "switch the lamp on", "lights on please", "light up the room"],
    "weather": ["what is the weather", "will it rain today", "is it sunny outside", "forecast for tomorrow"],
    "timer": ["set a timer for ten minutes", "start a 5 minute timer", "timer for an hour", "count down 3 minutes"],
    "music": ["play some jazz", "put on music", "next song please", "turn the music up"],
    "shopping": ["add milk to my list", "put eggs on the shopping list", "I need bread", "buy apples"],
    "call": ["call mum", "phone my brother", "ring the office", "dial 911"],
    "alarm": ["wake me at 7", "set an alarm", "alarm for six tomorrow", "cancel my alarm"],
    "news": ["read the news", "what happened today", "latest headlines", "any news"],
}


@pytest.fixture
def intents_table(tmp_path):
    from metagui.core.config import DatasetConfig
    from metagui.core.data import load_dataset

    path = tmp_path / "intents.csv"
    path.write_text("text,intent\n" + "".join(f"{t},{n}\n" for n, ts in INTENTS.items() for t in ts), encoding="utf-8")
    cfg = DatasetConfig(source="text_table", path=str(path), text_column="text", label_column="intent")
    return cfg, load_dataset(cfg)


def test_session_starts_from_held_out_classes_else_the_datasets(intents_table):
    from metagui.core.config import TaskConfig

    _, ds = intents_table
    held, note = held_out_classes(ds, TaskConfig(train_ratio=0.5, val_ratio=0.25))
    assert len(held) == 2 and set(held) < set(ds.classes) and note == ""
    everything, note = held_out_classes(ds, TaskConfig(train_ratio=1.0, val_ratio=0.0))
    assert everything == ds.classes and "no test classes" in note  # nothing held out: the dataset's classes
    session = ChatSession(ChatEngine(untrained("protonet"), TEXT), ds, held, shots=3)
    assert session.start_classes("held_out") == held and session.start_classes("all") == ds.classes
    assert session.start_classes("empty") == []
    with pytest.raises(ConfigError, match="starts from"):
        session.start_classes("everything")
    ad = session.start("held_out")
    assert ad.names == held and session.support.counts() == dict.fromkeys(held, 3) and session.note == ""
    assert session.start("empty") is None and len(session.support) == 0 and "two intents" in session.problem()
    ad = session.start("all")
    assert ad.names == ds.classes and session.adaptation is ad


def test_session_platipus_starts_with_as_many_classes_as_it_was_trained_for(intents_table):
    _, ds = intents_table
    session = ChatSession(ChatEngine(untrained("platipus", 2), TEXT), ds, ds.classes[:4], shots=2)
    ad = session.start("held_out")  # PLATIPUS adapts to exactly its training way: 2 of the 4
    assert ad.names == ds.classes[:2] and session.support.names == ds.classes[:2]
    assert "exactly 2 classes" in session.note
    with pytest.raises(ConfigError, match="cannot adapt to 3"):
        session.add_intent("extra", ["one more example"])
        session.adapt()


def test_open_run_makes_a_session_on_the_runs_held_out_classes(tmp_path, intents_table):
    from metagui.core.presets import default_config
    from metagui.core.store import RunStore
    from metagui.core.tasks import split_classes
    from metagui.core.trainer import Trainer

    data_cfg, ds = intents_table
    cfg = default_config("protonet", "intents")
    cfg.dataset = data_cfg
    cfg.task.way, cfg.task.shot, cfg.task.query, cfg.task.train_ratio, cfg.task.val_ratio = 2, 2, 1, 0.5, 0.25
    cfg.training.steps, cfg.training.val_every, cfg.training.val_episodes = 2, 2, 2
    store = RunStore(tmp_path / "runs.db")
    run_id = Trainer(cfg, store).run().run_id
    store.close()
    asked = []
    session = open_run(tmp_path / "runs.db", run_id, reuse=lambda d: asked.append(d) or ds)
    assert isinstance(session, ChatSession) and session.run_id == run_id and session.dataset is ds
    assert asked and asked[0].path == data_cfg.path  # the dataset the app holds was offered first
    held = [ds.classes[i] for i in split_classes(ds, cfg.task)["test"]]
    assert session.held_out == held and session.support.names == held
    assert set(session.support.counts().values()) == {2} and session.adaptation.names == held
    empty = open_run(tmp_path / "runs.db", run_id, start="empty")
    assert len(empty.support) == 0 and empty.adaptation is None and empty.dataset is not ds


def test_session_edits_the_support_set():
    session = ChatSession(ChatEngine(untrained("protonet"), TEXT, toy_support()))
    assert session.add_intent("  order   pizza ", ["a pizza please", "pizza"], "On its way.") == "order pizza"
    assert session.add_example("order pizza", "large pizza") and not session.add_example("order pizza", " pizza ")
    with pytest.raises(DataError, match="already"):
        session.add_intent("order pizza")
    with pytest.raises(DataError, match="no intent"):
        session.add_example("nothing", "text")
    assert session.set_reply("order pizza", " Coming! ") and not session.set_reply("order pizza", "Coming!")
    assert session.support["order pizza"].reply == "Coming!"
    assert session.remove(["weather"], [("weather", 0), ("timer", 0), ("timer", 2)])
    assert "weather" not in session.support and session.support["timer"].examples == ["start a 5 minute timer"]
    assert not session.remove()
    with pytest.raises(DataError, match="image model"):
        session.add_images("timer", ["x.png"])
    image = ChatSession(ChatEngine(untrained("protonet"), Preprocessing(modality="image", image_size=28, channels=1)))
    image.support.add_intent("cats")
    assert image.add_images("", ["/data/cats/1.png", "/data/cats/2.png"]) == "cats 2"  # named after the folder
    assert image.add_images("cats", ["/data/x/3.png"]) == "cats" and image.support.counts() == {"cats": 1, "cats 2": 2}


def test_session_feedback_changes_the_next_answer():
    session = ChatSession(ChatEngine(untrained("protonet"), TEXT, toy_support(), threshold=0.0))
    with pytest.raises(NotAdapted, match="Adapt to the support set first"):
        session.ask("hello")
    assert issubclass(NotAdapted, DataError) and session.ask("   ") is None
    session.adapt()
    message = "put the kettle timer on for me"
    first = session.ask(message)
    wrong = session.corrections(0)
    assert first.intent not in wrong and set(wrong) | {first.intent} == set(session.support.names)
    target = next(n for n in wrong if n != "timer")  # deliberately odd: the model must follow the user
    assert session.feedback(0, target) == {"intent": target, "correct": False, "added": True}
    assert message in session.support[target].examples
    assert session.adaptation.examples == 9  # nothing re-adapts before the caller asks
    session.adapt(session.snapshot())
    again = session.ask(message)
    assert again.intent == target != first.intent
    assert session.feedback(1) == {"intent": target, "correct": True, "added": False}  # right: already an example
    session.feedback(1, "brand_new")
    session.adapt()
    assert session.support["brand_new"].examples == [message] and session.ask(message).intent == "brand_new"


def test_session_transcripts_round_trip(tmp_path):
    from metagui.core.store import RunStore

    session = ChatSession(ChatEngine(untrained("protonet"), TEXT, toy_support(), run_id=3))
    session.adapt()
    session.ask("is it going to rain", compare=True)
    session.ask("lights on in the kitchen")
    session.feedback(1, "lights_on")
    out = session.export_transcript(tmp_path / "chat.json")
    rows = list(csv.DictReader(session.export_transcript(tmp_path / "chat.csv").open(encoding="utf-8")))
    assert [r["message"] for r in rows] == ["is it going to rain", "lights on in the kitchen"]
    assert rows[0]["before_intent"] and rows[1]["feedback_intent"] == "lights_on"
    other = ChatSession(ChatEngine(untrained("protonet"), TEXT, run_id=3))
    other.import_transcript(out)
    assert json.loads(json.dumps(other.transcript)) == json.loads(json.dumps(session.transcript))
    assert other.support.to_dict() == session.support.to_dict() and other.adaptation is None
    assert json.loads(out.read_text())["title"] == "chat"
    with pytest.raises(DataError, match="not a transcript"):
        other.import_transcript(tmp_path / "chat.csv")
    with pytest.raises(DataError, match="cannot read"):
        other.import_transcript(tmp_path / "missing.json")
    # in the run store: saving again updates the same transcript; reopening continues it
    store = RunStore(tmp_path / "runs.db")
    tid = session.save(store, "demo")
    session.ask("start a timer")
    assert session.save(store, "demo") == tid and len(session.saved(store)) == 1
    session.clear()
    assert session.transcript == [] and session.transcript_id is None
    session.open(session.saved(store)[0])
    assert session.transcript_id == tid and len(session.transcript) == 3
    store.close()


def test_session_csv_import_and_its_errors(tmp_path):
    session = ChatSession(ChatEngine(untrained("protonet"), TEXT, toy_support()))
    good = tmp_path / "more.csv"
    good.write_text("intent,example,reply\nopening_hours,when do you open,We open at 9.\n"
                    "opening_hours,are you open on sunday,\nweather,what is the weather\n", encoding="utf-8")
    assert session.import_csv(good) == (1, 2)  # the weather example was there already
    assert session.support["opening_hours"].reply == "We open at 9."
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "columns.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (tmp_path / "header.csv").write_text("intent,example\n", encoding="utf-8")
    for name, says in [("missing.csv", "cannot read"), ("empty.csv", "is empty"),
                       ("columns.csv", "needs an intent column"), ("header.csv", "has no rows with an intent")]:
        with pytest.raises(MetaGUIError, match=says) as caught:
            session.import_csv(tmp_path / name)
        assert isinstance(caught.value, DataError), name
    assert session.support.counts()["opening_hours"] == 2  # nothing lost on a bad file
    back = ChatSession(ChatEngine(untrained("protonet"), TEXT))
    assert back.import_csv(session.export_support(tmp_path / "support.csv")) == (4, session.support.n_examples)


# --- Banking77 ------------------------------------------------------------------------------------------------
@needs_banking
def test_banking77_held_out_intents_from_five_examples(banking, protonet):
    ds, _, held, items, labels = banking
    learner, pre, cfg = protonet
    eng = ChatEngine(learner, pre, config=cfg)
    eng.support, rest = support_from_dataset(ds, held, 5, seed=1)
    assert len(eng.support) == 27 and set(eng.support.counts().values()) == {5}
    assert all(not set(eng.support[n].examples) & {ds.texts[i] for i in rest[n]} for n in held)
    eng.adapt()
    acc = held_out_accuracy(eng, items, labels)
    assert acc > 0.3, acc  # 27-way: chance is 0.037 (`metagui bench chat`: 0.754 after 300 steps of 4; here 150)


@needs_banking
def test_banking77_brand_new_intent_typed_with_five_examples(banking, protonet):
    ds, _, held, items, labels = banking
    learner, pre, cfg = protonet
    eng = ChatEngine(learner, pre, config=cfg)
    eng.support, _ = support_from_dataset(ds, held, 5, seed=1)
    eng.support.add_intent(NEW_INTENT, NEW_INTENT_EXAMPLES, NEW_INTENT_REPLY)
    eng.adapt()
    hits = [p == NEW_INTENT for p in eng.predict(NEW_INTENT_HELD_OUT)]
    assert sum(hits) >= 3, hits  # of 10 paraphrases; guessing among 28 intents: 0.36 expected
    claimed = np.mean([p == NEW_INTENT for p in eng.predict(items)])
    assert claimed < 0.05, claimed  # and it does not swallow the banking questions
    eng.threshold = 0.0
    answer = eng.answer(NEW_INTENT_HELD_OUT[hits.index(True)])
    assert answer.intent == NEW_INTENT and answer.reply == NEW_INTENT_REPLY


@needs_banking
def test_banking77_untrained_encoder_is_the_weaker_before(banking, protonet):
    """The before / after baseline for metric learners is meaningful: the same examples in
    a never meta-trained encoder answer worse than the meta-trained one."""
    ds, _, held, items, labels = banking
    learner, pre, cfg = protonet
    eng = ChatEngine(learner, pre, config=cfg)
    eng.support, _ = support_from_dataset(ds, held, 5, seed=1)
    eng.adapt()
    after = held_out_accuracy(eng, items, labels)
    sx, sy, names = eng._support_tensors(eng.support)
    base = eng._baseline(sx, sy, len(names))
    p = eng.probabilities(items, base)
    before = float(np.mean([names[j] == y for j, y in zip(p.argmax(-1).tolist(), labels, strict=True)]))
    assert after > before + 0.02, (before, after)


@needs_banking
def test_bench_chat_command_is_wired(monkeypatch, capsys):
    from metagui import cli

    seen = {}
    monkeypatch.setattr("metagui.bench.chat.bench_chat", lambda *a, **k: seen.update(args=a, kw=k) or [])
    assert cli.main(["bench", "chat", "--steps", "protonet=3", "--algorithms", "protonet", "--data", str(BANKING)]) == 0
    assert seen["args"][2] == {"protonet": 3} and seen["kw"]["threads"] == 2
    assert cli.main(["bench", "chat", "--steps", "protonet=x", "--data", str(BANKING)]) == 2
    assert cli.main(["bench", "chat", "--data", str(Path("/nonexistent"))]) == 2
