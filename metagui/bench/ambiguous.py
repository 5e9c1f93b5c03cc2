"""``metagui bench ambiguous``: PLATIPUS on ambiguous sine/line regression. Do the functions
it draws for one support set cover both explanations of that set?
"""

from __future__ import annotations

import torch

from metagui.bench.learn import learning_check


def platipus_config(steps: int, seed: int = 0, **hp):
    from metagui.core.presets import default_config

    cfg = default_config("platipus", "ambiguous", preset="Ambiguous sine/line (short CPU runs)")
    cfg.algorithm.hyperparams.update(hp)
    cfg.training.steps = steps
    cfg.training.val_every = steps
    cfg.training.val_episodes = 50
    cfg.training.seed = seed
    return cfg


def ambiguity_check(learner, sets: int = 12, samples: int = 20, seed: int = 0) -> dict:
    """Adapt to ``sets`` support sets that a sine and a line both explain (see
    ``data.ambiguous.ambiguous_support``), draw ``samples`` functions for each and call each
    one a line or a sine by which least-squares fit on [-5, 5] is closer. ``covered`` counts
    the sets whose samples include both kinds; ``spread`` is the mean standard deviation of
    the samples on the grid."""
    import numpy as np

    from metagui.core.data.ambiguous import ambiguous_support, classify_functions

    rng = np.random.default_rng(seed)
    grid = np.linspace(-5.0, 5.0, 201)
    gx = torch.tensor(grid, dtype=torch.float32)[:, None]
    rows = []
    for _ in range(sets):
        sx, sy, sine_p, line_p = ambiguous_support(rng)
        ys = learner.adapt(sx, sy, samples=samples).predict_samples(gx)[..., 0].double().numpy()
        is_line, line_err, sine_err = classify_functions(grid, ys)
        rows.append({"support": (sx[:, 0].numpy(), sy[:, 0].numpy()), "sine": sine_p, "line": line_p,
                     "curves": ys, "lines": int(is_line.sum()), "spread": float(ys.std(0).mean())})
    covered = sum(0 < r["lines"] < samples for r in rows)
    lines = sum(r["lines"] for r in rows) / (sets * samples)
    return {"grid": grid, "sets": rows, "covered": covered, "line_fraction": lines,
            "spread": float(np.mean([r["spread"] for r in rows]))}


def draw_samples_figure(check: dict, path: str, columns: int = 4) -> None:
    """A PNG of each ambiguous support set (dots), the sine and the line through it (grey)
    and the sampled functions (orange: called a line, blue: called a sine). Pillow only."""
    import numpy as np
    from PIL import Image, ImageDraw

    from metagui.core.data.ambiguous import classify_functions, line, sine

    sets, grid = check["sets"], check["grid"]
    w, h, pad, lo, hi = 300, 220, 12, -8.0, 8.0
    rows = (len(sets) + columns - 1) // columns
    img = Image.new("RGB", (columns * w, rows * h), "white")
    draw = ImageDraw.Draw(img)
    for i, s in enumerate(sets):
        ox, oy = (i % columns) * w, (i // columns) * h

        def to_px(x, y, ox=ox, oy=oy):
            return ox + pad + (x + 5) / 10 * (w - 2 * pad), oy + pad + (hi - np.clip(y, lo, hi)) / (hi - lo) * (h - 2 * pad)

        def curve(ys):
            xs, yy = to_px(grid, ys)
            return list(zip(xs.tolist(), yy.tolist(), strict=True))

        draw.rectangle([ox + pad, oy + pad, ox + w - pad, oy + h - pad], outline=(200, 200, 200))
        draw.line(curve(np.zeros_like(grid)), fill=(235, 235, 235))
        kinds, _, _ = classify_functions(grid, s["curves"])
        for ys, is_line in zip(s["curves"], kinds, strict=True):
            draw.line(curve(ys), fill=(230, 140, 40) if is_line else (40, 110, 210), width=1)
        draw.line(curve(sine(*s["sine"], grid)), fill=(110, 110, 110), width=1)
        draw.line(curve(line(*s["line"], grid)), fill=(110, 110, 110), width=1)
        for x, y in zip(*s["support"], strict=True):
            px, py = to_px(float(x), float(y))
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(0, 0, 0))
        n = len(s["curves"])
        draw.text((ox + pad + 4, oy + pad + 2), f"{s['lines']} lines / {n - s['lines']} sines", fill=(0, 0, 0))
    img.save(path)


def bench_ambiguous(steps: int, out: str = "", samples: int = 20, echo=print) -> dict:
    """Train PLATIPUS on the ambiguous sine/line family; report MSE before and after adaptation
    and how often the drawn functions cover both explanations of an ambiguous support set."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = platipus_config(steps)
        r = learning_check(cfg, test_episodes=200, keep_learner=True)
        check = ambiguity_check(r["learner"], samples=samples)
        echo(f"PLATIPUS on ambiguous sine/line regression, {cfg.task.shot}-shot, {steps} meta-steps "
             f"({r['train_seconds']:.0f} s, {torch.get_num_threads()} thread)")
        echo(f"  held-out tasks: query MSE before adaptation {r['pre_mse']:.2f}, after {r['mse']:.2f} ± {r['ci95']:.2f} "
             f"(mean of {r['learner'].hp['num_samples']} drawn models)")
        echo(f"  {len(check['sets'])} ambiguous support sets x {samples} drawn functions: both a line and a sine "
             f"among the samples in {check['covered']} sets; {check['line_fraction']:.0%} of all samples are lines; "
             f"mean spread {check['spread']:.2f}")
        if out:
            draw_samples_figure(check, out)
            echo(f"  figure: {out}")
        return {"mse": r["mse"], "ci95": r["ci95"], "pre_mse": r["pre_mse"], "train_seconds": r["train_seconds"],
                "covered": check["covered"], "sets": len(check["sets"]), "line_fraction": check["line_fraction"]}
    finally:
        torch.set_num_threads(threads)
