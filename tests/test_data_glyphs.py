"""Synthetic glyphs: deterministic, right shape, and characters tell apart better than hands."""

from __future__ import annotations

import numpy as np
import torch

from metagui.core.data.glyphs import generate_glyphs


def _small(seed: int = 0, n_alphabets: int = 3):
    return generate_glyphs(n_alphabets=n_alphabets, characters_per_alphabet=8, drawers=6, seed=seed)


def test_shape_names_and_domains() -> None:
    ds = _small()
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (3 * 8 * 6, 1, 28, 28)
    assert ds.classes[0] == "alphabet_00/char_00" and ds.classes[-1] == "alphabet_02/char_07"
    assert ds.domains() == ["alphabet_00", "alphabet_01", "alphabet_02"]
    assert ds.stats().min_per_class == ds.stats().max_per_class == 6
    # White strokes on black, like inverted Omniglot.
    assert ds.images.float().mean() < 70 and int(ds.images.max()) == 255
    assert all(int(ds.images[i].max()) > 200 for i in range(len(ds)))  # no empty drawing


def test_deterministic_and_seeded() -> None:
    a, b = _small(seed=3), _small(seed=3)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, _small(seed=4).images)
    # An alphabet does not change when more alphabets are generated.
    more = _small(seed=3, n_alphabets=4)
    assert torch.equal(more.images[: len(a)], a.images)


def test_image_size_option() -> None:
    ds = generate_glyphs(n_alphabets=1, characters_per_alphabet=2, drawers=2, image_size=20)
    assert tuple(ds.images.shape) == (4, 1, 20, 20)


def test_characters_differ_more_than_drawers() -> None:
    ds = generate_glyphs(n_alphabets=4, characters_per_alphabet=10, drawers=10, seed=1)
    x = torch.nn.functional.avg_pool2d(ds.images.float() / 255, 3, 1, 1).flatten(1)
    d = torch.cdist(x, x)
    same = torch.from_numpy(ds.labels[:, None] == ds.labels[None, :])
    off_diag = ~torch.eye(len(x), dtype=torch.bool)
    within = d[same & off_diag].mean()
    between = d[~same].mean()
    assert within < 0.9 * between

    # 5-way 1-shot nearest neighbour on raw pixels: far above chance (0.2), yet not
    # trivial, so there is something left for meta-learning to learn.
    rng = np.random.default_rng(0)
    by_class = ds.items_by_class()
    correct = total = 0
    for _ in range(200):
        classes = rng.choice(len(by_class), 5, replace=False)
        picks = [rng.choice(by_class[c], 6, replace=False) for c in classes]
        support = x[[p[0] for p in picks]]
        query = x[np.concatenate([p[1:] for p in picks])]
        truth = np.repeat(np.arange(5), 5)
        correct += int((torch.cdist(query, support).argmin(1).numpy() == truth).sum())
        total += len(truth)
    accuracy = correct / total
    assert 0.45 < accuracy < 0.97
