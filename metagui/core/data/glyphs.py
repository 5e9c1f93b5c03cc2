"""Procedurally drawn glyphs: an offline, Omniglot-like few-shot image dataset.

Every alphabet has a drawing style, every character is a fixed set of strokes in that
style, and every "drawer" redraws the character with a shaky hand. So characters of one
alphabet look related (a domain), while drawers of one character vary the way people do.
Each level gets its own random stream keyed by (seed, alphabet, character, drawer), so an
alphabet looks the same however many alphabets are generated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from metagui.core.data.base import ImageDataset
from metagui.core.errors import Cancelled, DataError

_SUPERSAMPLE = 4  # draw at 4x and downsample: cheap antialiasing
_BEZIER_T = np.linspace(0.0, 1.0, 18)
_BERNSTEIN = np.stack(
    [
        (1 - _BEZIER_T) ** 3,
        3 * (1 - _BEZIER_T) ** 2 * _BEZIER_T,
        3 * (1 - _BEZIER_T) * _BEZIER_T**2,
        _BEZIER_T**3,
    ],
    axis=1,
)  # [18, 4]: points on a cubic Bezier curve = _BERNSTEIN @ control points
_JITTER = {"angle": 0.16, "scale": 0.24, "shear": 0.12, "shift": 0.1, "points": 0.09}
_KINDS = ("line", "arc", "hook", "loop", "dot")


@dataclass(frozen=True)
class _Style:
    """How one alphabet draws: what its strokes look like and how many it uses."""

    min_strokes: int
    max_strokes: int
    kind_weights: np.ndarray  # probabilities over _KINDS
    curviness: float  # how far arcs bulge from their chord
    grid: int  # >0: stroke ends snap to a grid (blocky scripts); 0: free (cursive)
    connect: float  # chance a stroke starts where an earlier one ended
    width: float  # stroke width, as a fraction of the glyph box
    slant: float  # shear applied to the whole alphabet


@dataclass(frozen=True)
class _Stroke:
    kind: str
    points: np.ndarray  # [4, 2] Bezier control points in [-1, 1]; dots use row 0 as centre


def generate_glyphs(
    *,
    n_alphabets: int = 12,
    characters_per_alphabet: int = 20,
    drawers: int = 20,
    image_size: int = 28,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ImageDataset:
    """White strokes on black, uint8 [N, 1, size, size]; classes ``alphabet_AA/char_CC``."""
    for name, value, low, high in (
        ("n_alphabets", n_alphabets, 1, 1000),
        ("characters_per_alphabet", characters_per_alphabet, 1, 1000),
        ("drawers", drawers, 1, 1000),
        ("image_size", image_size, 8, 256),
    ):
        if not low <= value <= high:
            raise DataError(f"glyphs: {name} must be between {low} and {high}, not {value}")
    n_classes = n_alphabets * characters_per_alphabet
    images = np.empty((n_classes * drawers, 1, image_size, image_size), dtype=np.uint8)
    classes: list[str] = []
    domains: list[str] = []
    canvas = image_size * _SUPERSAMPLE
    k = 0
    for a in range(n_alphabets):
        domain = f"alphabet_{a:02d}"
        style = _make_style(np.random.default_rng([seed, a]))
        for c in range(characters_per_alphabet):
            if cancel is not None and cancel():
                raise Cancelled("generating glyphs was cancelled")
            if progress is not None:
                progress(k, len(images))
            strokes = _make_character(style, np.random.default_rng([seed, a, c, 1_000_003]))
            classes.append(f"{domain}/char_{c:02d}")
            domains.append(domain)
            for d in range(drawers):
                rng = np.random.default_rng([seed, a, c, d])
                images[k, 0] = _draw(strokes, style, rng, canvas, image_size)
                k += 1
    if progress is not None:
        progress(k, len(images))
    return ImageDataset(
        name="glyphs",
        classes=classes,
        labels=np.repeat(np.arange(n_classes), drawers),
        class_domains=domains,
        images=torch.from_numpy(images),
        paths=[f"{classes[i // drawers]}#{i % drawers:02d}" for i in range(len(images))],
    )


def _make_style(rng: np.random.Generator) -> _Style:
    lo = int(rng.integers(1, 4))
    weights = rng.dirichlet(np.array([2.0, 2.0, 1.0, 0.7, 0.5]))
    return _Style(
        min_strokes=lo,
        max_strokes=lo + int(rng.integers(1, 4)),
        kind_weights=weights,
        curviness=float(rng.uniform(0.2, 0.9)),
        grid=int(rng.choice([0, 0, 3, 4])),
        connect=float(rng.uniform(0.2, 0.8)),
        width=float(rng.uniform(0.07, 0.12)),
        slant=float(rng.uniform(-0.25, 0.25)),
    )


def _point(style: _Style, rng: np.random.Generator) -> np.ndarray:
    if style.grid:
        return rng.integers(0, style.grid, size=2) / (style.grid - 1) * 1.6 - 0.8
    return rng.uniform(-0.8, 0.8, size=2)


def _make_character(style: _Style, rng: np.random.Generator) -> list[_Stroke]:
    n = int(rng.integers(style.min_strokes, style.max_strokes + 1))
    strokes: list[_Stroke] = []
    ends: list[np.ndarray] = []
    for _ in range(n):
        kind = _KINDS[int(rng.choice(len(_KINDS), p=style.kind_weights))]
        if kind == "dot" and not strokes:
            kind = "line"  # a glyph of one dot alone is too hard to tell apart
        start = (
            ends[int(rng.integers(len(ends)))]
            if ends and rng.random() < style.connect
            else _point(style, rng)
        )
        end = _point(style, rng)
        while np.linalg.norm(end - start) < 0.5:
            end = _point(style, rng) if not style.grid else rng.uniform(-0.8, 0.8, size=2)
        chord = end - start
        normal = np.array([-chord[1], chord[0]])
        side = 1.0 if rng.random() < 0.5 else -1.0
        if kind == "line":
            pts = [start, start + chord / 3, start + 2 * chord / 3, end]
        elif kind == "arc":
            bulge = side * style.curviness * rng.uniform(0.6, 1.4)
            pts = [start, start + chord / 4 + normal * bulge, end - chord / 4 + normal * bulge, end]
        elif kind == "hook":
            curl = side * rng.uniform(0.5, 1.0)
            pts = [
                start,
                start + chord * 0.8,
                end + normal * curl,
                end - chord * 0.3 + normal * curl * 0.8,
            ]
        elif kind == "loop":
            r = rng.uniform(0.2, 0.45)
            centre = np.clip(start, -0.8 + r, 0.8 - r)
            pts = [centre, np.array([r, r * rng.uniform(0.6, 1.2)]), np.zeros(2), np.zeros(2)]
        else:  # dot
            pts = [_point(style, rng), np.zeros(2), np.zeros(2), np.zeros(2)]
        points = np.stack(pts)
        if kind not in ("loop", "dot"):
            points = np.clip(points, -1.0, 1.0)
            ends.append(points[3])
        strokes.append(_Stroke(kind, points))
    return _centred(strokes)


def _centred(strokes: list[_Stroke]) -> list[_Stroke]:
    """Move the character's ink to the middle of the box and give it a common size."""
    extent: list[np.ndarray] = []
    for s in strokes:
        if s.kind == "loop":
            extent += [s.points[0] - s.points[1], s.points[0] + s.points[1]]
        elif s.kind == "dot":
            extent.append(s.points[0])
        else:
            extent.append(_BERNSTEIN @ s.points)
    pts = np.vstack(extent)
    low, high = pts.min(axis=0), pts.max(axis=0)
    centre = (low + high) / 2
    k = float(np.clip(1.6 / max(float((high - low).max()), 1e-6), 0.7, 1.6))
    out = []
    for s in strokes:
        p = s.points.copy()
        if s.kind == "loop":
            p[0] = (p[0] - centre) * k
            p[1] = p[1] * k
        else:
            p = (p - centre) * k if s.kind != "dot" else np.vstack([(p[0] - centre) * k, p[1:]])
        out.append(_Stroke(s.kind, p))
    return out


def _draw(
    strokes: list[_Stroke], style: _Style, rng: np.random.Generator, canvas: int, size: int
) -> np.ndarray:
    # One drawer: a slightly rotated, scaled, sheared and shifted hand with shaky points.
    angle = rng.normal(0.0, _JITTER["angle"])
    scale = rng.uniform(1.0 - _JITTER["scale"], 1.0 + _JITTER["scale"] / 2, size=2)
    shear = style.slant + rng.normal(0.0, _JITTER["shear"])
    cos, sin = math.cos(angle), math.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    affine = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
    shift = rng.normal(0.0, _JITTER["shift"], size=2)
    width_factor = rng.uniform(0.75, 1.3)
    noise = _JITTER["points"]

    img = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    half = canvas / 2
    box = half * 0.8  # glyph box [-1, 1] maps to the centre 80% of the canvas

    def to_px(p: np.ndarray) -> np.ndarray:
        return (p @ affine.T + shift) * box + half

    for s in strokes:
        w = max(2.0, style.width * width_factor * rng.uniform(0.85, 1.15) * canvas * 0.8)
        if s.kind == "dot":
            c = to_px(s.points[0] + rng.normal(0.0, noise, size=2))
            r = w * 0.8
            draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
            continue
        if s.kind == "loop":
            centre, radii = s.points[0], s.points[1]
            theta = np.linspace(0.0, 2 * math.pi, 25) + rng.normal(0.0, 0.2)
            jitter = 1.0 + rng.normal(0.0, 0.08, size=2)
            pts = (
                centre
                + rng.normal(0.0, noise, size=2)
                + np.stack(
                    [np.cos(theta) * radii[0] * jitter[0], np.sin(theta) * radii[1] * jitter[1]],
                    axis=1,
                )
            )
        else:
            ctrl = s.points + rng.normal(0.0, noise, size=(4, 2))
            pts = _BERNSTEIN @ ctrl
        px = to_px(pts)
        draw.line(px.ravel().tolist(), fill=255, width=int(round(w)))
        r = w / 2
        for end in (px[0], px[-1]):  # round caps
            draw.ellipse([end[0] - r, end[1] - r, end[0] + r, end[1] + r], fill=255)
    return np.asarray(img.reduce(_SUPERSAMPLE) if canvas != size else img, dtype=np.uint8)
