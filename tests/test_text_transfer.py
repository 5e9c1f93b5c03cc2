"""Text transfer (``metagui bench text``): the no-learning baselines are what they say, and
the built-in encoder, meta-trained briefly, stays above them on unseen intents."""

from __future__ import annotations

import numpy as np
import torch

from metagui.bench import text as tb
from metagui.core.models import (
    NgramEncoder,
    Preprocessing,
    TextEncoder,
    TextFeaturizer,
    make_backbone,
)
from tests.helpers import BANKING, MINILM, needs_banking, needs_minilm


def test_char_wb_ngrams_follow_scikit_learn():
    assert tb.char_wb_ngrams("Hi  a") == [" h", "hi", "i ", " hi", "hi ", " hi ", " a", "a ", " a "]
    assert tb.word_tokens("I can't pay, 2 times!") == ["can", "pay", "times"]


@needs_banking
def test_baselines_equal_scikit_learn_tfidf_nearest_centroid():
    """Our analyzers and TF-IDF equal scikit-learn's TfidfVectorizer (fitted on each support
    set) with cosine nearest centroid, episode by episode."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    setting = tb.make_setting("unseen-intents", BANKING)
    texts = setting.target.texts
    episodes = tb.fixed_episodes(setting.target, setting.target_classes, 5, 2, 40, seed=3)
    for name, kwargs in (("tfidf-char", {"analyzer": "char_wb", "ngram_range": (2, 4)}), ("tfidf-word", {})):
        for i in sorted({int(j) for s, q in episodes[:5] for j in (*s, *q)}):
            assert tb.ANALYZERS[name](texts[i]) == TfidfVectorizer(**kwargs).build_analyzer()(texts[i])
        ours = tb.tfidf_centroid_accuracy(texts, episodes, 5, tb.ANALYZERS[name])
        theirs = []
        for sup, qry in episodes:
            vec = TfidfVectorizer(**kwargs).fit([texts[i] for i in sup])
            xs, xq = vec.transform([texts[i] for i in sup]).toarray(), vec.transform([texts[i] for i in qry]).toarray()
            c = xs.reshape(5, 2, -1).mean(1)
            c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
            theirs.append(((xq @ c.T).argmax(1) == np.repeat(np.arange(5), tb.QUERY)).mean())
        np.testing.assert_allclose(ours, theirs)


def test_tfidf_centroid_scores_a_hand_checked_episode():
    texts = ["reset my password", "forgot password", "card lost", "lost my card",
             "password reset please", "my card is lost", "weather"]
    episodes = [(np.array([0, 2]), np.array([4, 5]))]  # 2-way 1-shot, one query each
    acc = tb.tfidf_centroid_accuracy(texts, episodes, 2, tb.word_tokens)
    assert acc.tolist() == [1.0]
    wrong = [(np.array([2, 0]), np.array([4, 5]))]  # classes swapped: both queries now wrong
    assert tb.tfidf_centroid_accuracy(texts, wrong, 2, tb.word_tokens).tolist() == [0.0]


def test_support_fit_baseline_starts_at_the_class_means_and_fits_the_support_set():
    """``frozen-fit``: zero steps is nearest class mean, episode by episode; with steps, the
    head learns a support set that the class means get half wrong."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    episodes = [(rng.choice(60, 10, replace=False), rng.choice(60, 10, replace=False)) for _ in range(7)]
    np.testing.assert_allclose(tb.support_fit_accuracy(x, episodes, 5, steps=0), tb.centroid_accuracy(x, episodes, 5),
                               atol=1e-6)

    x = np.array([[0.0, 1.4, 1.8], [-0.7, -1.2, -1.8], [1.3, -0.1, -0.7],  # class 0
                  [-0.1, -2.6, -1.8], [0.9, 0.3, 0.1], [-1.1, 0.5, 1.7]])  # class 1
    support_as_queries = [(np.arange(6), np.arange(6))]
    assert tb.centroid_accuracy(x, support_as_queries, 2)[0] == 0.5
    fitted = tb.support_fit_accuracy(x, support_as_queries, 2, steps=100)
    assert fitted[0] == 1.0
    diff, half = tb.paired(np.array([1.0, 0.5, 1.0]), np.array([0.5, 0.5, 0.5]))  # per episode, same episodes
    assert abs(diff - 1 / 3) < 1e-12 and abs(half - 1.96 * np.std([0.5, 0, 0.5], ddof=1) / np.sqrt(3)) < 1e-12


def test_built_in_encoder_is_the_version_2_featurizer_and_old_checkpoints_keep_theirs():
    pre = Preprocessing(modality="text")
    assert isinstance(make_backbone("text", pre), NgramEncoder)
    legacy = Preprocessing.from_dict({"modality": "text", "image_size": 28, "channels": 1, "invert": False,
                                      "text_buckets": 1 << 15, "ngram_min": 2, "ngram_max": 4, "max_tokens": 160,
                                      "states": 0, "actions": 0})
    assert legacy.text_features == 1 and isinstance(make_backbone("text", legacy), TextEncoder)
    ids = TextFeaturizer(pre)(["Turn ON the light at 7:30", ""])
    enc = make_backbone("text", pre).eval()
    kinds = ((ids[0][ids[0] > 0] - 1) // enc.block).tolist()
    assert kinds[0] == 0 and set(kinds) == {0, 1, 2, 3}  # words, then 3-, 4-, 5-grams
    assert TextFeaturizer(pre)(["turn on the light at 0:00"]).tolist()[0] == ids[0].tolist()  # digits fold to 0
    out = enc(ids)
    assert torch.allclose(out.norm(dim=1), torch.ones(2))


def test_encoder_derivatives_stay_finite_when_dropout_empties_a_text():
    torch.manual_seed(0)
    enc = NgramEncoder(1 << 12, 4, 64, token_dropout=0.99).train()
    ids = TextFeaturizer(Preprocessing(modality="text", text_buckets=1 << 12))(["on", "lights off"])
    out = enc(ids).sum()
    (g,) = torch.autograd.grad(out, enc.token_weight, create_graph=True)
    (g2,) = torch.autograd.grad(g.sum(), enc.log_scale)
    assert torch.isfinite(g).all() and torch.isfinite(g2).all()


@needs_banking
def test_meta_trained_encoder_beats_tfidf_on_unseen_banking_intents():
    """ProtoNet on the built-in encoder, 150 meta-steps (seconds), against the best
    no-learning baseline on the same 150 fixed 5-way 1-shot episodes of 27 unseen intents."""
    setting = tb.make_setting("unseen-intents", BANKING)
    episodes = tb.fixed_episodes(setting.target, setting.target_classes, 5, 1, 150, seed=1)
    base = max(tb.tfidf_centroid_accuracy(setting.target.texts, episodes, 5, a).mean() for a in tb.ANALYZERS.values())
    learner, pre, _ = tb.meta_train(tb.text_config("protonet", setting, steps=150), setting.train)
    inputs = TextFeaturizer(pre)(setting.target.texts)
    acc = tb.learner_accuracy(learner, inputs, episodes, 5)
    assert acc.mean() > base + 0.02, (acc.mean(), base)


@needs_banking
def test_bench_text_command_prints_the_table(capsys):
    from metagui.cli import main

    assert main(["bench", "text", "--data", str(BANKING), "--settings", "unseen-intents", "--algorithms", "maml",
                 "--steps", "10", "--episodes", "20"]) == 0
    out = capsys.readouterr().out
    for row in ("tfidf-char", "tfidf-word", "maml"):
        assert row in out
    assert "15-way 5-shot" in out  # one shared-head MAML model answers 5- and 15-way episodes


@needs_banking
def test_first_release_encoder_can_be_benchmarked_for_comparison():
    report = tb.bench_text(BANKING, ["unseen-intents"], ["protonet", "maml"], steps=5, episodes=10,
                           shapes=[(5, 1), (15, 5)], encoder="first-release", echo=lambda *_: None)
    rows = report["settings"]["unseen-intents"]["rows"]
    assert set(rows["protonet"]["scores"]) == {"5-way 1-shot", "15-way 5-shot"}
    assert set(rows["maml"]["scores"]) == {"5-way 1-shot"}  # its 5-row head cannot answer 15-way episodes


# --- the re-weighting ceiling (``metagui bench text --ceiling``) ----------------------------------
@needs_banking
def test_one_vector_reweightings_are_the_baseline_and_the_untrained_encoder():
    """One-vector tf-idf on char_wb tokens is the TF-IDF baseline, episode by episode; one-vector
    tf on the built-in tokens is ProtoNet (cosine) on the untrained built-in encoder (its hash
    slots widened to one per token id, so that no two tokens collide)."""
    from metagui.core import algorithms
    from metagui.core.models import _text_ids

    setting = tb.make_setting("unseen-intents", BANKING)
    texts = setting.target.texts
    episodes = tb.fixed_episodes(setting.target, setting.target_classes, 5, 2, 30, seed=4)
    base = tb.tfidf_centroid_accuracy(texts, episodes, 5, tb.char_wb_ngrams)
    both = tb.reweighting_accuracy(texts, episodes, 5, tb.char_wb_ngrams, lambda t: 0, 1,
                                   [tb.Reweighting(True), tb.Reweighting(True, (0.0,))])
    np.testing.assert_array_equal(both, np.stack([base, base], 1))

    pre = Preprocessing(modality="text")
    enc = NgramEncoder(pre.text_buckets, 4, dim=pre.text_buckets)
    learner = algorithms.create("protonet", enc, 5, {"distance": "cosine"})
    inputs = TextFeaturizer(pre)(texts)
    encoder = tb.learner_accuracy(learner, inputs, episodes, 5)
    ours = tb.reweighting_accuracy(texts, episodes, 5, lambda t: list(_text_ids(t, pre.text_buckets, pre.ngram_min,
                                                                                pre.ngram_max, pre.max_tokens)),
                                   lambda t: 0, 1, [tb.Reweighting(False)])
    np.testing.assert_allclose(ours[:, 0], encoder)
    assert encoder.mean() > 0.5


def test_per_type_shares_decide_between_disagreeing_token_types():
    """Words say one class, character grams the other: the mix decides."""
    tokens = {"a p": ["w:a", "c:p"], "b q": ["w:b", "c:q"], "a q": ["w:a", "c:q"], "b p": ["w:b", "c:p"]}
    texts = list(tokens)
    episodes = [(np.array([0, 1]), np.array([2, 3]))]  # support "a p", "b q"; queries "a q" (class 0), "b p" (1)
    variants = [tb.Reweighting(False, (1.0, 0.0)), tb.Reweighting(False, (0.0, 1.0)),
                tb.Reweighting(True, (1.0, 0.0))]
    acc = tb.reweighting_accuracy(texts, episodes, 2, tokens.__getitem__, lambda t: 0 if t[0] == "w" else 1, 2,
                                  variants)
    assert acc.tolist() == [[1.0, 0.0, 1.0]]
    family = tb.reweightings()
    assert len(family) == 2 + 2 * 5**3 and len(set(family)) == len(family)
    assert all(v.mix is None or (len(v.mix) == 4 and v.mix[1] == 0.0) for v in family)


@needs_banking
def test_bench_text_ceiling_command_prints_the_margins(capsys):
    from metagui.cli import main

    assert main(["bench", "text", "--ceiling", "--data", str(BANKING), "--settings", "unseen-intents",
                 "--episodes", "20"]) == 0
    out = capsys.readouterr().out
    assert "chosen on training data" in out and "15-way 5-shot" in out and "tf-idf, per type" in out


# --- on a pretrained sentence encoder (issue 14) ------------------------------------------------
def _small_unseen_intents(per_class: int = 25):
    """The unseen-intents setting with ``per_class`` training sentences per intent (quick to
    embed), and its 27 target intents as a dataset of their own."""
    from metagui.core.data.base import subset
    from metagui.core.data.text import records_to_dataset

    setting = tb.make_setting("unseen-intents", BANKING)
    train, kept = setting.train, {}
    for text, label in zip(train.texts, train.labels, strict=True):
        if len(kept.setdefault(int(label), [])) < per_class:
            kept[int(label)].append(text)
    small = records_to_dataset("banking77-small", [("", train.classes[c], t) for c, ts in kept.items() for t in ts], [])
    target = subset(setting.target, [setting.target.classes[i] for i in setting.target_classes])
    return setting, small, target


def _protonet_vs_frozen(meta_lr: float, steps: int, episodes: int = 300):
    from metagui.core.pretrained import sentence_encoder

    setting, train, target = _small_unseen_intents()
    eps = tb.fixed_episodes(target, range(len(target.classes)), 5, 1, episodes, seed=1)
    frozen = tb.centroid_accuracy(sentence_encoder(str(MINILM)).encode(list(target.texts)), eps, 5)
    cfg = tb.text_config("protonet", setting, steps, encoder=str(MINILM))
    cfg.algorithm.hyperparams["meta_lr"] = meta_lr
    learner, pre, _ = tb.meta_train(cfg, train, str(MINILM))
    return tb.learner_accuracy(learner, TextFeaturizer(pre)(target.texts), eps, 5), frozen


@needs_banking
@needs_minilm
def test_protonet_meta_learned_on_the_pretrained_encoder_beats_the_frozen_encoder_on_unseen_intents():
    """The adapter adds to the pretrained encoder: on 27 intents never seen in training,
    5-way 1-shot, better than the frozen encoder's nearest class mean on the same episodes
    (paired: the lower end of the 95% CI of the per-episode difference is above zero)."""
    trained, frozen = _protonet_vs_frozen(1e-3, 300)
    diff = trained - frozen
    assert diff.mean() - 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) > 0, (trained.mean(), frozen.mean())


@needs_banking
@needs_minilm
def test_training_that_only_hurts_keeps_the_frozen_encoder():
    """Never below the frozen encoder by design: validation before the first step, so when
    every step is worse (a step size a thousand times too large), the kept checkpoint is the
    untouched encoder, episode by episode."""
    trained, frozen = _protonet_vs_frozen(1.0, 20, episodes=100)
    np.testing.assert_allclose(trained, frozen, atol=1e-6)  # float32 vs float64 means of the same hits
