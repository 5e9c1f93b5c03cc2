import json

import numpy as np
import pytest
import torch

from metagui.core.config import TaskConfig
from metagui.core.data.base import TextDataset
from metagui.core.errors import ConfigError, DataError
from metagui.core.tasks import (
    EpisodeSampler,
    check_task,
    read_episodes_file,
    split_classes,
    step_rng,
)


def toy_dataset(n_classes=12, per_class=8, domains=3):
    labels = np.repeat(np.arange(n_classes), per_class)
    return TextDataset(
        name="toy", classes=[f"c{i}" for i in range(n_classes)], labels=labels,
        class_domains=[f"d{i % domains}" for i in range(n_classes)],
        texts=[f"text {i}" for i in range(len(labels))],
    )


def test_episodes_are_remapped_reproducible_and_class_major():
    ds = toy_dataset()
    inputs = torch.arange(len(ds)).float()[:, None]
    s = EpisodeSampler(inputs, ds.labels, list(range(12)), way=5, shot=2, query=3)
    a = s.sample(4, step_rng(7, "train", 3))
    b = s.sample(4, step_rng(7, "train", 3))
    assert torch.equal(a.support_x, b.support_x) and a.classes == b.classes
    assert a.support_x.shape == (4, 10, 1) and a.query_x.shape == (4, 15, 1)
    assert a.support_y[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for t in range(4):  # every item's true class matches its episode label
        items = a.support_x[t, :, 0].long().numpy()
        assert [a.classes[t][y] for y in a.support_y[t].tolist()] == ds.labels[items].tolist()
        assert not set(items) & set(a.query_x[t, :, 0].long().numpy())  # support and query disjoint
    c = s.sample(4, step_rng(7, "train", 4))
    assert not torch.equal(a.support_x, c.support_x)


def test_ratio_split_is_a_partition_and_domain_split_keeps_domains_apart():
    ds = toy_dataset()
    parts = split_classes(ds, TaskConfig(train_ratio=0.5, val_ratio=0.25))
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(12))
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (6, 3, 3)
    by_domain = split_classes(ds, TaskConfig(split="domain", train_domains=["d0", "d1"], test_domains=["d2"]))
    assert {ds.class_domains[i] for i in by_domain["test"]} == {"d2"}
    assert {ds.class_domains[i] for i in by_domain["train"]} == {"d0", "d1"}


def test_impossible_tasks_are_explained():
    ds = toy_dataset(n_classes=12)
    task = TaskConfig(way=5, shot=1, query=1, train_ratio=0.7, val_ratio=0.0)
    with pytest.raises(ConfigError, match="5-way needs 5 test classes .* test split has 4 \\(of 4 classes\\)"):
        check_task(ds, task, split_classes(ds, task))
    with pytest.raises(ConfigError, match=r"at least 10 examples \(5 shot \+ 5 query\)"):
        task = TaskConfig(way=2, shot=5, query=5)
        check_task(ds, task, split_classes(ds, task))
    with pytest.raises(ConfigError, match="not in the dataset: nope"):
        split_classes(ds, TaskConfig(split="classes", train_classes=["nope"]))


def test_episodes_file_is_validated(tmp_path):
    good = {"support": [{"item": "hi", "label": "a"}, {"item": "yo", "label": "b"}], "query": [{"item": "hey", "label": "a"}]}
    f = tmp_path / "eps.jsonl"
    f.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    assert len(read_episodes_file(f)) == 2
    bad = dict(good, query=[{"item": "x", "label": "zzz"}])
    f.write_text(json.dumps(bad) + "\n")
    with pytest.raises(DataError, match="query labels not in the support set"):
        read_episodes_file(f)
    f.write_text("{not json\n")
    with pytest.raises(DataError, match="line 1 is not JSON"):
        read_episodes_file(f)
