"""What an export says about itself: input and graph interfaces, the JSON spec, the Markdown
model card and a copyable code snippet."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from metagui.core import algorithms
from metagui.core.export.encoder import TokenizerSpec, encoder_folder, pin_encoder, tokenizer_spec
from metagui.core.export.source import (
    EXPORT_FAMILIES,
    FORMATS,
    OPSET,
    TOLERANCE,
    ModelSource,
    item_inputs,
    metagui_version,
)
from metagui.core.models import Preprocessing


def input_spec(src: ModelSource, graph: bool = True) -> dict[str, Any]:
    """dtype, shape and meaning of one batch of model inputs (of the exported graphs, or with
    ``graph`` False of the learner inside MetaGUI, which differ for a pretrained encoder)."""
    pre = src.pre
    if pre.text_encoder:
        if not graph:
            return {"dtype": "float32", "shape": f"[n, {pre.text_encoder_dim}]",
                    "meaning": "unit-length sentence embeddings of the pinned text encoder (MetaGUI computes them from texts)"}
        tok = encoder_tokenizer(pre)
        return {"dtype": "int64", "shape": "[n, L]",
                "meaning": f"token ids of the encoder's tokenizer (`<file>.tokenizer.json` beside this file), at most {tok.max_tokens} "
                           "per text, rows padded with 0 (see the featurizer)"}
    if not item_inputs(src):
        return {"dtype": "float32", "shape": "[trials, steps, features]",
                "meaning": f"{pre.modality} trials as MetaGUI's reinforcement-learning tasks encode them"}
    if src.regression:
        return {"dtype": "float32", "shape": "[n, 1]", "meaning": "x values (one number per point)"}
    if pre.modality == "image":
        return {"dtype": "float32", "shape": f"[n, {pre.channels}, {pre.image_size}, {pre.image_size}]",
                "meaning": ("pixels in [0, 1]: " + ("grayscale" if pre.channels == 1 else "RGB")
                            + f", resized to {pre.image_size}x{pre.image_size} (Lanczos), divided by 255"
                            + (", inverted (255 - v) before dividing" if pre.invert else ""))}
    return {"dtype": "int64", "shape": "[n, L]",
            "meaning": "hashed character n-gram and word ids, 0 = padding (see the featurizer)"}


def featurizer_spec(pre: Preprocessing) -> dict[str, Any] | None:
    """The text featurizer, exactly, as data (``models.TextFeaturizer``), or the pretrained
    encoder's tokenizer and pipeline."""
    if pre.modality != "text":
        return None
    if pre.text_encoder:
        tok = encoder_tokenizer(pre)
        pin = pin_encoder(pre.text_encoder, pre.text_encoder_dim, "")
        return {"kind": "pretrained sentence encoder", "encoder": f"{pin.label} ({pin.weights} sha256 {pin.sha256})",
                "tokenizer": f"{tok.kind}, vocabulary {tok.vocab:,}, "
                             + ("lower-cased, " if tok.lowercase else "") + f"{tok.specials}, truncated to {tok.max_tokens} tokens",
                "padding": f"rows padded with {tok.pad_id} to the longest row of the batch; attention on ids != {tok.pad_id}",
                "pipeline": "token ids -> transformer -> pooling of the token states (the encoder's own) -> unit length -> "
                            "the learner's adapter (all inside TorchScript and ONNX exports)"}
    common = {"buckets": pre.text_buckets, "ngram_min": pre.ngram_min, "ngram_max": pre.ngram_max,
              "max_tokens": pre.max_tokens, "padding": "rows padded with 0 to the longest row of the batch",
              "version": pre.text_features}
    if pre.text_features == 1:
        return {
            "kind": "hashed character n-grams and words",
            "lowercase": True,
            "words": "text.lower().split() (Python whitespace split)",
            "per_word": ["word token 'w:' + word",
                         "then every character n-gram of '<' + word + '>' for n = ngram_min..ngram_max, "
                         "by n, then by position"],
            "bucket": "1 + zlib.crc32(token.encode('utf-8')) % (buckets - 1)",
            "empty_text": "the single token '<empty>'",
            **common,
        }
    return {
        "kind": "hashed words and character n-grams in type blocks",
        "lowercase": True,
        "digits": "every digit (Unicode \\d) replaced by '0' after lower-casing",
        "words": "re.findall(r'\\w+', text) (Python Unicode word characters)",
        "block": "B = buckets // (2 + ngram_max - ngram_min); type 0 = words, type t = n-grams of length ngram_min + t - 1",
        "per_word": ["word id: 1 + zlib.crc32(('w:' + word).encode('utf-8')) % (B - 1)",
                     "then for n = ngram_min..ngram_max, every n-gram g of ' ' + word + ' ' by position: "
                     "(1 + n - ngram_min) * B + 1 + zlib.crc32(g.encode('utf-8')) % (B - 1)"],
        "empty_text": "the single word id of 'w:'",
        **common,
    }


def encoder_tokenizer(pre: Preprocessing) -> TokenizerSpec:
    return tokenizer_spec(encoder_folder(pre.text_encoder))


def graph_interfaces(src: ModelSource, fmt: str) -> list[dict[str, Any]]:
    """Inputs and outputs of each graph in an export, for the model card and the dialog."""
    x = input_spec(src)
    labels = ({"name": "support_y", "dtype": "float32", "shape": "[S, 1]", "meaning": "support y values"}
              if src.regression else
              {"name": "support_y", "dtype": "int64", "shape": "[S]",
               "meaning": ("class index of each support item, 0..N-1" + (f" with N = {src.n_way} (fixed)"
                           if src.learner.family == "optimisation" else " (N = max + 1, any N)"))})
    pred = ({"name": "values", "dtype": "float32", "shape": "[Q, 1]", "meaning": "predicted y"}
            if src.regression else
            {"name": "probabilities", "dtype": "float32", "shape": "[Q, N]", "meaning": "class probabilities per query"})
    adaptive = {
        "inputs": [{"name": "support_x", **x, "shape": x["shape"].replace("[n", "[S")}, labels,
                   {"name": "query_x", **x, "shape": x["shape"].replace("[n", "[Q")}],
        "outputs": [pred],
    }
    emb = {"name": "embeddings", "dtype": "float32", "shape": f"[n, {src.learner.backbone.emb_dim}]",
           "meaning": "backbone features"}
    plain_out = [emb]
    if src.learner.family == "optimisation":
        plain_out.append({"name": "outputs", "dtype": "float32", "shape": "[n, 1]" if src.regression else f"[n, {src.n_way}]",
                          "meaning": "head outputs at the meta-learned initialisation, before any adaptation "
                                     + ("(y values)" if src.regression else "(logits)")})
    plain = {"inputs": [{"name": "x", **x}], "outputs": plain_out}
    if fmt == "onnx":
        return [{"graph": "model (ONNX)", **plain}]
    if fmt == "onnx-adaptive":
        return [{"graph": "adaptive (ONNX)", **adaptive}]
    if fmt == "torchscript":
        return [{"graph": "forward(support_x, support_y, query_x)", **adaptive},
                {"graph": "embed(x)", "inputs": plain["inputs"], "outputs": [emb]}]
    return []


def export_spec(src: ModelSource, fmt: str, parity: dict[str, float], adaptation: dict[str, Any]) -> dict[str, Any]:
    """The JSON sidecar of a TorchScript or ONNX export: everything a program needs to feed it."""
    return {
        "format": fmt, "opset": OPSET if fmt.startswith("onnx") else None, "algorithm": src.algorithm,
        "family": src.learner.family, "n_way": src.n_way, "hyperparams": src.learner.hp,
        "preprocessing": src.pre.as_dict(), "input": input_spec(src), "featurizer": featurizer_spec(src.pre),
        "graphs": graph_interfaces(src, fmt), "classes": src.classes, "parity": parity,
        "tolerance": TOLERANCE, "adaptation": adaptation, "run": {k: src.run.get(k) for k in ("id", "name")},
    }


def _fmt_metric(v: Any, ci: Any = None) -> str:
    if not isinstance(v, int | float):
        return "not measured"
    return f"{v:.4f}" + (f" ± {ci:.4f}" if isinstance(ci, int | float) and ci == ci else "")


def model_card(src: ModelSource, fmt: str, parity: dict[str, float], adaptation: dict[str, Any],
               files: dict[str, int], notes: list[str]) -> str:
    """A Markdown model card: data, task, algorithm, results, interface, intended use, limits."""
    lr, cfg, pre = src.learner, src.config, src.pre
    task = (f"{cfg.task.shot}-shot regression (x -> y)" if src.regression
            else f"{src.n_way}-way {cfg.task.shot}-shot classification of {pre.modality}s" if item_inputs(src)
            else f"{pre.modality} tasks ({src.run.get('task') or 'reinforcement learning'})")
    ds = cfg.dataset.path or cfg.dataset.source
    val = src.meta.get("validation") or {}
    metric = lr.metric_name
    lines = [
        f"# Model card: {src.name}", "",
        f"Exported by MetaGUI {metagui_version()} on {_dt.date.today().isoformat()} as **{fmt}** ({FORMATS[fmt].split(':')[0]}).", "",
        "## Model", "",
        f"- Algorithm: **{lr.label}** ({algorithms.FAMILIES.get(lr.family, lr.family)}). {lr.summary}",
    ]
    if lr.paper:
        lines.append(f"- Reference: {lr.paper}")
    lines += [
        f"- Backbone: {type(lr.backbone).__name__}, {lr.backbone.emb_dim}-dimensional embeddings; "
        f"{sum(p.numel() for p in lr.parameters()):,} parameters in all.",
        *_encoder_lines(src, fmt),
        f"- Hyperparameters: {', '.join(f'{k} = {v}' for k, v in lr.hp.items())}",
        f"- Checkpoint: {src.checkpoint}, after {src.meta.get('step', '?')} meta-training steps"
        + (f" (run {src.run['id']})" if src.run.get("id") else "") + ".",
        "", "## Data and task", "",
        f"- Meta-trained on: {ds}" + (f" ({cfg.dataset.source})" if ds != cfg.dataset.source else "")
        + _dataset_counts(src) + ".",
        f"- Task: {task}"
        + ("" if src.regression or not item_inputs(src) else f", {cfg.task.query} queries per class while training") + ".",
    ]
    if not src.regression and item_inputs(src):
        lines.append(f"- Class split: {cfg.task.split}"
                     + (f" (train {cfg.task.train_ratio:.0%}, validation {cfg.task.val_ratio:.0%}, the rest test)"
                        if cfg.task.split == "ratio" else "") + ".")
    if src.classes:
        shown = ", ".join(src.classes[:12]) + (", …" if len(src.classes) > 12 else "")
        shown = shown.removesuffix(".")
        lines.append(f"- Class names (all in labels.json or the spec): {shown}; at use time the classes are "
                     "whatever the support set labels say.")
    lines += ["", "## Results", "",
              f"- Best validation {metric}: {_fmt_metric(src.meta.get('best_val'), val.get('ci95'))}"
              + (f" over {val.get('episodes')} episodes (95% confidence half-width)" if val.get("episodes") else "") + "."]
    if adaptation:
        line = (f"- Held-out {adaptation['metric']} on {adaptation['episodes']} test episodes at export time: "
                f"{adaptation['live']:.4f}")
        if fmt in ("torchscript", "onnx-adaptive") and lr.family == "optimisation":
            line += f" in MetaGUI; {adaptation['exported']:.4f} with this export's head-only adaptation"
        lines.append(line + ".")
    lines += ["", "## How it adapts", ""]
    lines += _adaptation_text(src, fmt, adaptation)
    lines += ["", "## Inputs and outputs", ""]
    lines += _interface_text(src, fmt)
    lines += ["", "## Parity with the live model", ""]
    if parity:
        lines += [f"Checked with {'onnxruntime' if fmt.startswith('onnx') else 'torch.jit.load' if fmt == 'torchscript' else 'a reopened bundle'} "
                  f"on the same inputs; tolerance {TOLERANCE:g} (max absolute difference).", "",
                  "| check | max abs difference | |", "|---|---|---|"]
        lines += [f"| {k} | {v:.2e} | {'ok' if v <= TOLERANCE else 'FAILED'} |" for k, v in parity.items()]
    else:
        lines.append("Measured when the file is written (see metrics.json).")
    lines += ["", "## Intended use", "",
              ("Few-shot regression: give a handful of (x, y) points of a new function and predict y elsewhere, "
               "for functions like the ones it was meta-trained on." if src.regression else
               f"A policy that learns new {pre.modality} tasks from its own experience within a trial, for tasks "
               "like the ones it was meta-trained on; for study and teaching." if not item_inputs(src) else
               f"Few-shot classification of {pre.modality}s like the meta-training data: give a few labelled examples "
               "of each new class (the support set) and classify new items among those classes. Suited to prototyping, "
               "teaching and research; evaluate on your own data before relying on it."),
              "", "## Limits", ""]
    lines += [f"- {x}" for x in _limits(src)]
    lines += [f"- {n}" for n in notes]
    if files:
        lines += ["", "## Files", ""]
        lines += [f"- {Path(k).name}: {v:,} bytes" for k, v in files.items()]
    lines += ["", "## Loading it", "", "```python", code_snippet(src, fmt, Path(next(iter(files), src.default_filename(fmt)))).rstrip(), "```", ""]
    return "\n".join(lines)


def _encoder_lines(src: ModelSource, fmt: str) -> list[str]:
    """Which pretrained text encoder the model stands on, why, and how this export carries it."""
    pre = src.pre
    if not pre.text_encoder:
        return []
    pin = pin_encoder(pre.text_encoder, pre.text_encoder_dim, src.config.algorithm.text_encoder_why)
    why = f" Chosen: {pin.why}." if pin.why else ""
    carried = ("Not inside the bundle: it is pinned by " + (f"model id `{pin.id}`" if pin.id else "folder name (give the folder when opening it)")
               + " and the sha256 of its weights; MetaGUI finds it (installed package, Hugging Face cache, or "
               "`metagui encoders --download ID`) and refuses a copy whose checksum differs."
               if fmt == "bundle" else
               "Inside this file: the graphs take token ids and run the transformer, the pooling and the learner; "
               "the tokenizer is beside it as `<file>.tokenizer.json`.")
    return [f"- Text encoder: **{pin.label}**, frozen, {pin.dim}-dimensional sentence embeddings; {pin.weights} sha256 "
            f"`{pin.sha256}`; licence {pin.licence}.{why}",
            f"- How the export carries the encoder: {carried}"]


def _dataset_counts(src: ModelSource) -> str:
    n_classes = len(src.classes) or src.dataset_stats.get("classes")
    items = src.dataset_stats.get("items")
    out = f", {n_classes} classes" if n_classes else ""
    return out + (f", {items:,} items" if isinstance(items, int) else "")


def _adaptation_text(src: ModelSource, fmt: str, adaptation: dict[str, Any]) -> list[str]:
    lr = src.learner
    outside = {"bundle": "The bundle adapts inside MetaGUI, exactly as the live model does.",
               "onnx": "This ONNX file holds the backbone" + (" and head" if lr.family == "optimisation" else "")
                       + ": adaptation happens in your code on its outputs, or use the onnx-adaptive export, which does it in the graph."}
    if lr.family not in EXPORT_FAMILIES:
        how = {"probabilistic": "it adapts several sampled models to the support set and averages their predictions "
                                "(the spread is its uncertainty)",
               "rl": "it adapts within a trial, through the recurrent state its policy carries from step to step"}
        text = [f"{lr.label} adapts as MetaGUI runs it: {how.get(lr.family, 'with its own procedure')}. "
                "It exports as a MetaGUI bundle only, which keeps that behaviour exactly."]
        if adaptation:
            text.append(f"Held-out {adaptation['metric']} on {adaptation['episodes']} episodes at export time: "
                        f"{adaptation['live']:.4f}.")
        return text
    if lr.family == "metric":
        how = {"protonet": "each class becomes the mean of its support embeddings (prototype); a query's probabilities "
                           + ("are the softmax of its cosine similarities to the prototypes times a learned scale."
                              if lr.hp.get("distance") == "cosine" else
                              "are the softmax of minus its squared distances to the prototypes."),
               "matching": "each query attends to the support items by cosine similarity (softmax with temperature "
                           f"{lr.hp.get('temperature')}) and sums their one-hot labels"
                           + (", after full-context embeddings (bidirectional LSTM over the support set, attention LSTM for queries)." if lr.hp.get("fce") else "."),
               "relation": "each class becomes the mean of its support embeddings; the learned relation module scores "
                           "every (class, query) pair"
                           + (" (plus their cosine similarity times a learned gain, before the sigmoid)" if lr.hp.get("cosine_skip") else "")
                           + " and the scores are normalised to sum to one."}.get(lr.name, "")
        guard = ([] if lr.domain_guard() is None else [
            "Domain guard: when the support sentences' mean cosine similarity to the meta-training domain's mean "
            f"embedding (the frozen encoder's) is below {float(lr.backbone.domain_floor):.4f}, the model answers "
            "with the frozen embeddings' class means instead (softmax of 10 times the cosine to each class's mean): "
            "what was meta-learned on one business did not beat them on another's. The adaptive exports and the "
            "bundle do this too; with the plain ONNX file, your code decides."])
        return [f"Adaptation needs no gradient steps: {how} The adaptive exports (TorchScript forward, ONNX adaptive) "
                "do exactly this inside the graph, with any number of classes and support examples."] + guard + (
                    [outside[fmt]] if fmt in outside else [])
    text = ([outside[fmt], ""] if fmt in outside else []) + [f"In MetaGUI, {lr.label} adapts **all layers** with {lr.hp['eval_steps']} gradient steps on the support set "
            "(step size " + ("learned per weight" if lr.name == "metasgd" else f"{lr.test_step_size('head.weight')}") + ").",
            "",
            f"The exported graphs (TorchScript forward, ONNX adaptive) adapt **only the final linear layer**: the backbone "
            f"features of the support set are computed once, then {lr.hp['eval_steps']} gradient steps with the same step "
            "sizes update the head's weight W and bias b in closed form"
            + (": with G = 2 (h W^T + b - y) / S, W -= lr_W * G^T h and b -= lr_b * sum(G) (mean squared error)."
               if src.regression else
               ": with P = softmax(h W^T + b) and Y the one-hot support labels, G = (P - Y) / S, W -= lr_W * G^T h, "
               "b -= lr_b * sum(G) (softmax cross-entropy)."),
            "Queries then go through the adapted head."]
    if adaptation:
        gap = adaptation["exported"] - adaptation["live"]
        text.append(f"On {adaptation['episodes']} held-out episodes, head-only adaptation gave {adaptation['metric']} "
                    f"{adaptation['exported']:.4f} against {adaptation['live']:.4f} for full adaptation "
                    f"(difference {gap:+.4f}).")
    else:
        text.append("The gap between head-only and full adaptation was not measured (no held-out data at export time).")
    return text


def _interface_text(src: ModelSource, fmt: str) -> list[str]:
    lines: list[str] = []
    graphs = graph_interfaces(src, fmt)
    if not graphs:
        lines.append("The bundle holds weights and descriptions, not graphs: MetaGUI rebuilds the model "
                     "(`metagui predict`, or the Export page's \"Open bundle…\", which adds it to Runs and Try it). Model inputs:")
        spec = input_spec(src, graph=False)
        lines.append(f"- x: {spec['dtype']} {spec['shape']}, {spec['meaning']}.")
    for g in graphs:
        lines += [f"**{g['graph']}**", "", "| name | dtype | shape | meaning |", "|---|---|---|---|"]
        for kind in ("inputs", "outputs"):
            for io_ in g[kind]:
                lines.append(f"| {'in' if kind == 'inputs' else 'out'}: `{io_['name']}` | {io_['dtype']} | {io_['shape']} | {io_['meaning']} |")
        lines.append("")
    pre = src.pre
    if pre.modality == "image" and not getattr(src.learner.backbone, "batch_independent", True):
        lines.append("Batch norm uses the statistics of the batch it is given (no running averages, as in MAML): "
                     "`embed`/`x` normalises the items with the batch they come in, so embed a whole episode at once. "
                     "The adaptive graphs feed support and queries together, exactly as MetaGUI does.")
    spec = featurizer_spec(pre)
    if spec:
        lines += ["", "Text featurizer (token ids from raw text), exactly:", ""]
        lines += [f"- {k}: {v if not isinstance(v, list) else '; '.join(v)}" for k, v in spec.items()]
        lines.append("- The snippet below computes the ids with the `tokenizers` package and numpy." if pre.text_encoder else
                     "- The snippet below implements it in plain Python (zlib and numpy only).")
    return lines


def _limits(src: ModelSource) -> list[str]:
    lr, cfg = src.learner, src.config
    out = [f"Meta-trained for {src.meta.get('step', '?')} steps on {cfg.dataset.path or cfg.dataset.source}; "
           "accuracy drops on data unlike it (other domains, scripts, languages, image styles)."]
    if lr.family == "optimisation" and not src.regression:
        out.append(f"Adapts to exactly {src.n_way} classes (its head has {src.n_way} outputs).")
    if src.pre.text_encoder:
        out.append(f"Texts longer than {encoder_tokenizer(src.pre).max_tokens} tokens are truncated; the encoder covers "
                   "the languages it was trained on (see its own model card).")
    elif src.pre.modality == "text":
        out.append("Texts are lower-cased and split on whitespace; hashed n-grams can collide; "
                   f"only the first {src.pre.max_tokens} ids of a text count.")
    if src.pre.modality == "image":
        out.append(f"Images are resized to {src.pre.image_size}x{src.pre.image_size}; fine detail is lost.")
    out.append("Validation figures come from sampled episodes of held-out classes; the confidence interval "
               "covers episode sampling, not a change of data.")
    return out


def _text_inputs_code(pre: Preprocessing) -> list[str]:
    """Imports and an ``inputs(texts)`` function that compute ``TextFeaturizer``'s ids:
    version 2 (words and n-grams in type blocks) or the first release's version 1."""
    v2 = pre.text_features != 1
    if v2:
        head = ["import re", "import zlib", "",
                f"BUCKETS, NMIN, NMAX, CAP = {pre.text_buckets}, {pre.ngram_min}, {pre.ngram_max}, {pre.max_tokens}",
                "BLOCK = BUCKETS // (2 + NMAX - NMIN)"]
        words = ["        for word in re.findall(r\"\\w+\", re.sub(r\"\\d\", \"0\", text.lower())):",
                 "            ids.append(bucket(\"w:\" + word))",
                 "            padded = \" \" + word + \" \"",
                 "            for n in range(NMIN, NMAX + 1):",
                 "                offset = (1 + n - NMIN) * BLOCK",
                 "                ids += [offset + bucket(padded[i:i + n]) for i in range(len(padded) - n + 1)]"]
    else:
        head = ["import zlib", "",
                f"BUCKETS, NMIN, NMAX, CAP = {pre.text_buckets}, {pre.ngram_min}, {pre.ngram_max}, {pre.max_tokens}"]
        words = ["        for word in text.lower().split():",
                 "            ids.append(bucket(\"w:\" + word))",
                 "            padded = \"<\" + word + \">\"",
                 "            for n in range(NMIN, NMAX + 1):",
                 "                ids += [bucket(padded[i:i + n]) for i in range(len(padded) - n + 1)]"]
    return head + ["", "",
                   "def bucket(token):",
                   f"    return 1 + zlib.crc32(token.encode(\"utf-8\")) % ({'BLOCK' if v2 else 'BUCKETS'} - 1)",
                   "", "",
                   "def inputs(texts):",
                   "    \"\"\"Texts -> int64 ids [n, L] (0 = padding), as MetaGUI's TextFeaturizer.\"\"\"",
                   "    rows = []",
                   "    for text in texts:",
                   "        ids = []",
                   *words,
                   f"        rows.append(ids[:CAP] or [bucket(\"{'w:' if v2 else '<empty>'}\")])",
                   "    out = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)",
                   "    for i, r in enumerate(rows):",
                   "        out[i, :len(r)] = r",
                   "    return out"]


def _tokenizer_inputs_code(tokenizer_file: str, max_tokens: int) -> list[str]:
    """``inputs(texts)`` for a graph that carries a pretrained encoder: its own tokenizer."""
    return ["from tokenizers import Tokenizer", "",
            f"TOKENIZER = Tokenizer.from_file(\"{tokenizer_file}\")",
            "TOKENIZER.no_padding()",
            f"TOKENIZER.enable_truncation({max_tokens})", "", "",
            "def inputs(texts):",
            "    \"\"\"Texts -> int64 token ids [n, L] (0 = padding), as the exported encoder takes them.\"\"\"",
            "    encodings = TOKENIZER.encode_batch(list(texts))",
            "    out = np.zeros((len(encodings), max(len(e.ids) for e in encodings)), dtype=np.int64)",
            "    for i, e in enumerate(encodings):",
            "        out[i, :len(e.ids)] = e.ids",
            "    return out"]


def code_snippet(src: ModelSource, fmt: str, path: Path) -> str:
    """Plain Python that loads and runs the export with onnxruntime or torch alone (bundles:
    with MetaGUI). Copyable from the dialog and the model card."""
    name = path.name
    pre = src.pre
    if fmt == "bundle":
        return (
            "# MetaGUI bundles open in MetaGUI (weights are safetensors; nothing in them is executed).\n"
            f"#   metagui predict {name} --support support.csv --query queries.txt\n"
            "from metagui.core.export import open_bundle, predict\n\n"
            f'bundle = open_bundle("{name}")\n'
            + ("print(predict(bundle.learner, bundle.pre, [-2.0, 0.0, 2.0], [0.5, 1.0, 0.2], [1.0]))\n"
               if src.regression else
               _example_items(src) + "\nprint(predict(bundle.learner, bundle.pre, SUPPORT_ITEMS, SUPPORT_LABELS, QUERY_ITEMS))\n"))
    parts = ["import numpy as np"]
    if fmt.startswith("onnx"):
        parts.append("import onnxruntime as ort")
    else:
        parts.append("import torch")
    if pre.text_encoder:
        parts += _tokenizer_inputs_code(path.name + ".tokenizer.json", encoder_tokenizer(pre).max_tokens)
    elif pre.modality == "text":
        parts += _text_inputs_code(pre)
    elif pre.modality == "image":
        mode = "L" if pre.channels == 1 else "RGB"
        parts += ["from PIL import Image", "",
                  f"SIZE, MODE, INVERT = {pre.image_size}, \"{mode}\", {pre.invert}", "", "",
                  "def inputs(paths):",
                  "    \"\"\"Image files -> float32 [n, C, H, W] in [0, 1], as MetaGUI prepares them.\"\"\"",
                  "    arrays = []",
                  "    for p in paths:",
                  "        with Image.open(p) as im:",
                  "            a = np.asarray(im.convert(MODE).resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.float32)",
                  "        a = 255 - a if INVERT else a",
                  "        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))",
                  "    return np.stack(arrays) / np.float32(255)"]
    else:
        parts += ["", "",
                  "def inputs(xs):",
                  "    \"\"\"Numbers -> float32 [n, 1].\"\"\"",
                  "    return np.asarray(xs, dtype=np.float32).reshape(-1, 1)"]
    parts += ["", ""]
    if fmt == "onnx":
        out_names = "[\"embeddings\", \"outputs\"]" if src.learner.family == "optimisation" else "[\"embeddings\"]"
        parts += [f"session = ort.InferenceSession(\"{name}\", providers=[\"CPUExecutionProvider\"])", "", "",
                  "def embed(items):",
                  "    \"\"\"Backbone embeddings" + (" and head outputs" if src.learner.family == "optimisation" else "")
                  + (" (batch-norm statistics: embed a whole episode at once)" if pre.modality == "image" else "") + ".\"\"\"",
                  f"    return session.run({out_names}, {{\"x\": inputs(items)}})"]
        example = "print(embed(QUERY_ITEMS)[0].shape)"
    else:
        if fmt == "onnx-adaptive":
            parts += [f"session = ort.InferenceSession(\"{name}\", providers=[\"CPUExecutionProvider\"])", "", ""]
            call = "session.run(None, {\"support_x\": sx, \"support_y\": sy, \"query_x\": qx})[0]"
        else:
            parts += [f"model = torch.jit.load(\"{name}\")", "", ""]
            call = "model(torch.from_numpy(sx), torch.from_numpy(sy), torch.from_numpy(qx)).detach().numpy()"
        if src.regression:
            parts += ["def predict(support_x, support_y, query_x):",
                      "    \"\"\"Adapt to (x, y) support points, predict y at the query xs.\"\"\"",
                      "    sx, sy, qx = inputs(support_x), inputs(support_y), inputs(query_x)",
                      f"    return {call}[:, 0].tolist()"]
            example = "print(predict([-2.0, 0.0, 2.0, 4.0], [-1.8, 0.0, 1.8, -1.5], [1.0, 3.0]))"
        else:
            parts += ["def predict(support_items, support_labels, query_items):",
                      "    \"\"\"Adapt to labelled support items; one {label: probability} dict per query.\"\"\"",
                      "    names = sorted(set(support_labels))"]
            if src.learner.family == "optimisation":
                parts.append(f"    assert len(names) == {src.n_way}, \"this model adapts to exactly {src.n_way} classes\"")
            parts += ["    sx, qx = inputs(support_items), inputs(query_items)",
                      "    sy = np.array([names.index(label) for label in support_labels], dtype=np.int64)",
                      f"    probs = {call}",
                      "    return [dict(zip(names, p.tolist())) for p in probs]"]
            example = "print(predict(SUPPORT_ITEMS, SUPPORT_LABELS, QUERY_ITEMS))"
    parts += ["", "", "if __name__ == \"__main__\":"]
    if not src.regression or fmt == "onnx":
        parts.append("    " + _example_items(src))
    parts.append("    " + example)
    return "\n".join(parts) + "\n"


def _example_items(src: ModelSource) -> str:
    if src.regression:
        return "QUERY_ITEMS = [1.0, 3.0]"
    if src.pre.modality == "text":
        n = max(src.n_way, 2) if src.learner.family == "optimisation" else 2
        words = ["turn on the kitchen light", "switch off the fan", "what is the weather", "play some music",
                 "set a timer", "lock the front door", "open the blinds", "call mum"]
        texts = [words[i % len(words)] for i in range(n)]
        return (f"SUPPORT_ITEMS, SUPPORT_LABELS = {texts!r}, {[f'class {i}' for i in range(n)]!r}; "
                f"QUERY_ITEMS = {texts[:1]!r}")
    n = max(src.n_way, 2) if src.learner.family == "optimisation" else 2
    return (f"SUPPORT_ITEMS, SUPPORT_LABELS = {[f'support/{i}.png' for i in range(n)]!r}, "
            f"{[f'class {i}' for i in range(n)]!r}; QUERY_ITEMS = ['query.png']")
