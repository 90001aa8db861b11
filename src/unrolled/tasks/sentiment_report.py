"""`sentiment compare`: train several cells with one configuration and budget, then report.

    report = compare(sentiment.config_from(minutes=15), ["rnn", "lstm", "gru"], "runs/compare")

Each cell trains into `out/<cell>/` (a finished one is kept and an unfinished one continues, so a
stopped comparison picks up where it was, with the same settings only; Ctrl-C returns None). Then,
for each model: test accuracy and F1, confusion matrix, training time, parameters, tokens/s, test
accuracy by review length, and the gradient norm through time (how much of the final forward
state's gradient reaches the word k steps earlier). `out/report.md` says what
the numbers show; `out/results.json` holds them; `out/plots/*.png` draws them.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from ..checkpoint import has_checkpoint
from ..core.checks import counted
from ..runs import (CONFIG, atomic_write_text, finished, is_run, load_config, read_json, read_metrics,
                    unstarted, write_json)
from . import sentiment
from .sentiment_plots import plot_accuracy, plot_by_length, plot_confusions, plot_gradient_flow

CELLS = ("rnn", "lstm", "gru")
FLOW_REVIEWS = 64          # long test reviews over which the gradient flow is averaged
FLOW_MARKS = (0, 10, 50, 100, 200)
SHORT, LONG = 200, 400     # "short" and "long" reviews in the findings, in tokens before truncation


def gradient_flow(model, ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """Mean over reviews of |d(u . h_T) / d x_(T-k)| for k = 0..T-1, u a random unit vector.

    ids (B, T) reviews of full length T; h_T the top layer's forward state after the last word,
    x the embedded words. Uses the recurrent layer alone (no pooling, no dropout).
    """
    rng = np.random.default_rng(seed)
    B, T = ids.shape
    L, D, H = model.layers, model.directions, model.hidden
    model.train()
    x = model.embedding(ids.T)                                      # (T, B, E)
    model.rnn(x)
    u = rng.standard_normal((B, H)).astype(model.dtype)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    d_h_n = np.zeros((L * D, B, H), model.dtype)                    # (L*D, B, H)
    d_h_n[(L - 1) * D] = u
    dx, _ = model.rnn.backward(None, (d_h_n, None) if model.cell == "lstm" else d_h_n)   # (T, B, E)
    model.clear_cache()
    model.eval()
    return np.linalg.norm(dx, axis=2).mean(axis=1)[::-1]            # (T,), k = 0 is the last word


def _long_reviews(prepared, n: int) -> np.ndarray:
    """The n longest test reviews (full length `max_len` on IMDB), each cut to its last T words, T the
    length of the shortest of them."""
    longest = sorted(prepared.test.ids, key=len, reverse=True)[:n]
    T = len(longest[-1])
    return np.stack([ids[len(ids) - T:] for ids in longest])       # (B, T)


def compare(config: sentiment.Config, cells: list[str], out, progress: bool = True) -> Path | None:
    """Train each cell of `cells` with `config` (cell replaced) and write the report of them and of any
    other cell finished in `out` before; returns its path, or None when Ctrl-C stopped it (the same
    call continues it)."""
    out = Path(out)
    _check_out(out)
    _check_settings(out, config)
    data = sentiment.load(config)
    out.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        if finished(out / cell, "test_accuracy"):
            continue
        if not _train_cell(dataclasses.replace(config, cell=cell), out / cell, data, progress):
            return None
    if any(cell not in cells and finished(out / cell, "test_accuracy") for cell in CELLS):  # asked for fewer
        cells = [cell for cell in CELLS if cell in cells or finished(out / cell, "test_accuracy")]  # than it holds
    try:
        return _report(config, cells, out, data)
    except KeyboardInterrupt:  # stopped while drawing: the same call draws it again
        return None


def _is_comparison(out: Path) -> bool:
    """Whether `out` is a folder that `compare` made: results.json with "cells", or only its cell runs
    (and the plots of a report stopped before its results.json)."""
    if (out / "results.json").is_file():
        try:
            return "cells" in read_json(out / "results.json", "a comparison's results")
        except ValueError:
            return False
    return all(p.is_dir() and (p.name == "plots" or p.name in CELLS and _is_cell_run(p)) for p in out.iterdir())


def _is_cell_run(folder: Path) -> bool:
    """A run folder (config.json), or one stopped before create_run wrote its config."""
    return (folder / CONFIG).is_file() or unstarted(folder)


def _check_out(out: Path) -> None:
    """Refuse an --out that is a file, a training run, or a folder of other files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder, but {out} is a file.")
    if is_run(out):
        raise ValueError(f"{out} holds a training run, not a comparison; choose another --out for the comparison.")
    if out.is_dir() and any(out.iterdir()) and not _is_comparison(out):
        raise ValueError(f"{out} holds files that are not a comparison; choose an empty or new folder for --out.")


def _check_settings(out: Path, config: sentiment.Config) -> None:
    """Refuse to continue a comparison whose cell runs were made with other settings than `config`."""
    differ = {}
    for cell in CELLS:
        if (out / cell / CONFIG).is_file():
            theirs = dataclasses.asdict(load_config(out / cell, sentiment.TASK, sentiment.Config))
            ours = dataclasses.asdict(dataclasses.replace(config, cell=cell))
            differ.update({k: (theirs[k], ours[k]) for k in ours if theirs[k] != ours[k]})
    if differ:
        shown = lambda v: "unset" if v is None else v
        said = "; ".join(f"--{k.replace('_', '-')} {shown(old)} then, {shown(new)} now" for k, (old, new) in differ.items())
        raise ValueError(f"{out} holds a comparison made with other settings ({said}); give the same settings to "
                         "continue it, or choose another --out.")


def _train_cell(config: sentiment.Config, run: Path, data, progress: bool) -> bool:
    """Train one cell's run, or continue it from its checkpoint; False when Ctrl-C stopped it."""
    if has_checkpoint(run):
        _, _, interrupted = sentiment.train(None, resume_from=run, progress=progress, data=data)
    else:  # new, or stopped before its first checkpoint: starts afresh
        _, _, interrupted = sentiment.train(config, run, progress=progress, data=data)
    return not interrupted


def _report(config: sentiment.Config, cells: list[str], out: Path, data) -> Path:
    """Gradient flow of each cell's model, the plots, results.json and report.md."""
    results = {cell: read_json(out / cell / sentiment.RESULTS, "the run's results") for cell in cells}
    curves = {cell.upper(): read_metrics(out / cell) for cell in cells}
    flows = {}
    prepared = None
    for cell in cells:
        run_config, vocab, classes, model = sentiment.load_run(out / cell)
        if prepared is None:
            prepared = sentiment.prepare(run_config, vocab, data)
        reviews = _long_reviews(prepared, FLOW_REVIEWS)                # (B, T)
        norms = gradient_flow(model, reviews, config.seed)
        flows[cell.upper()] = norms
        results[cell]["gradient_flow_reviews"] = list(reviews.shape)
        results[cell]["gradient_flow"] = {f"k={k}": float(norms[k]) for k in FLOW_MARKS if k < len(norms)}
    classes = results[cells[0]]["classes"]
    plots = out / "plots"
    plot_accuracy(curves, plots / "learning_curves.png")
    plot_confusions({c.upper(): np.array(results[c]["test"]["confusion"]) for c in cells}, classes,
                    plots / "confusion.png")
    plot_by_length({c.upper(): results[c]["test"]["by_length"] for c in cells}, plots / "accuracy_by_length.png")
    plot_gradient_flow(flows, plots / "gradient_flow.png")
    summary = {"config": {k: v for k, v in config.to_dict().items() if k != "cell"}, "cells": cells,
               "models": results}
    write_json(out / "results.json", summary)
    atomic_write_text(out / "report.md", render(config, cells, results))
    return out / "report.md"


# ----- the report ----------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _flow_drop(result: dict, k: int) -> float:
    flow = result["gradient_flow"]
    return flow[f"k={k}"] / flow["k=0"] if f"k={k}" in flow and flow["k=0"] > 0 else float("nan")


def _accuracy_between(result: dict, low: int, high: int | None) -> float:
    """Test accuracy over the length buckets lying within [low, high) tokens, weighted by their reviews."""
    rows = [b for b in result["test"]["by_length"]
            if int(re.match(r"\d+", b["tokens"])[0]) >= low
            and (high is None or (b["tokens"][-1] != "+" and int(b["tokens"].split("-")[1]) < high))]
    n = sum(b["reviews"] for b in rows)
    return sum(b["accuracy"] * b["reviews"] for b in rows) / n if n else float("nan")


def _behind(gap: float) -> str:
    return f"{100 * abs(gap):.1f} points " + ("behind" if gap > 0 else "ahead of")


def render(config: sentiment.Config, cells: list[str], results: dict) -> str:
    """report.md: tables of the numbers, then what they show."""
    first = results[cells[0]]
    classes, sizes = first["classes"], first["sizes"]
    budget = f"{config.minutes:g} minutes" if config.minutes is not None else counted(config.epochs, "epoch")
    direction = "bidirectional" if config.bidirectional else "unidirectional"
    lines = [
        "# Sentiment: " + " vs ".join(c.upper() for c in cells), "",
        f"Data: {first['source']}; {sizes['train']} training, {sizes['val']} validation and {sizes['test']} test "
        f"texts; vocabulary {sizes['vocab']} words (min frequency {config.min_freq}). Every model: {direction} "
        f"{config.layers}-layer, embedding {config.embed}, hidden {config.hidden}, {config.pooling} pooling, dropout "
        f"{config.dropout}{f', recurrent dropout {config.recurrent_dropout}' if config.recurrent_dropout else ''}, "
        f"reviews cut to {config.max_len} tokens (keep {config.truncation}), batch {config.batch}, "
        f"Adam lr {config.lr}, the same budget of {budget} of training each, seed {config.seed}. Nothing pretrained"
        + (" except the word vectors." if config.vectors else "."), "",
        "| model | test accuracy | F1 | best val accuracy | training | epochs | parameters | tokens/s | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        r = results[c]
        lines.append(f"| {c.upper()} | {_pct(r['test']['accuracy'])} | {r['test']['f1']:.4f} | {_pct(r['val_accuracy'])} "
                     f"| {r['train_s'] / 60:.1f} min | {r['epochs']:.2f} | {r['parameters']:,} | {r['tokens_per_s']:,.0f} "
                     f"| {r.get('load_1min') or '-'} |")
    lines += ["", "Load: the machine's mean 1-minute load average during training (2 cores; other jobs count), "
              "which the tokens/s depend on.", "",
              "![learning curves](plots/learning_curves.png)", "", "## Confusion matrices (rows: true, columns: predicted)", ""]
    lines += ["| model | " + " | ".join(f"{t} -> {p}" for t in classes for p in classes) + " |",
              "|---|" + "---|" * len(classes) ** 2]
    for c in cells:
        lines.append(f"| {c.upper()} | " + " | ".join(str(v) for row in results[c]["test"]["confusion"] for v in row) + " |")
    lines += ["", "![confusion matrices](plots/confusion.png)", "", "## Long reviews", ""]
    buckets = [b["tokens"] for b in first["test"]["by_length"]]
    lines += ["| model | " + " | ".join(f"{b} tokens ({n['reviews']})" for b, n in zip(buckets, first["test"]["by_length"]))
              + " |", "|---|" + "---|" * len(buckets)]
    for c in cells:
        lines.append(f"| {c.upper()} | " + " | ".join(_pct(b["accuracy"]) for b in results[c]["test"]["by_length"]) + " |")
    lines += ["", "![accuracy by length](plots/accuracy_by_length.png)", "",
              "Gradient norm through time: the norm of the gradient that the top layer's final forward state "
              "sends back to the word k steps before the last one, averaged over the {} longest test reviews "
              "(their last {} tokens; relative to k = 0 in brackets).".format(*first["gradient_flow_reviews"]), "",
              "| model | " + " | ".join(f"k = {k}" for k in FLOW_MARKS) + " |", "|---|" + "---|" * len(FLOW_MARKS)]
    for c in cells:
        flow = results[c]["gradient_flow"]
        lines.append(f"| {c.upper()} | " + " | ".join(
            f"{flow[f'k={k}']:.2e} ({_flow_drop(results[c], k):.1e})" if f"k={k}" in flow else "-" for k in FLOW_MARKS) + " |")
    lines += ["", "![gradient flow](plots/gradient_flow.png)", "", "## What the comparison shows", ""]
    lines += _findings(config, cells, results)
    return "\n".join(lines) + "\n"


def _findings(config: sentiment.Config, cells: list[str], results: dict) -> list[str]:
    """Sentences read off the numbers (nothing here is written in advance of the run)."""
    ranked = sorted(cells, key=lambda c: -results[c]["test"]["accuracy"])
    best = ranked[0]
    acc = {c: results[c]["test"]["accuracy"] for c in cells}
    out = [f"- **Accuracy.** {best.upper()} is best at {_pct(acc[best])}, "
           + ", ".join(f"{c.upper()} {_pct(acc[c])}" for c in ranked[1:]) + f", all after {results[best]['train_s'] / 60:.0f} "
           "minutes of training on the same data."]
    speed = {c: results[c]["tokens_per_s"] for c in cells}
    fastest = max(cells, key=lambda c: speed[c])
    out.append(f"- **Speed.** {fastest.upper()} processes the most tokens per second ({speed[fastest]:,.0f}); "
               + ", ".join(f"{c.upper()} {speed[c]:,.0f} ({results[c]['epochs']:.1f} epochs)" for c in cells if c != fastest)
               + ". With a fixed time budget a cheaper cell sees more data, so per-epoch quality and speed trade off.")
    if "rnn" in cells:
        gated = [c for c in cells if c != "rnn"]
        short = {c: _accuracy_between(results[c], 0, SHORT) for c in cells}
        long_ = {c: _accuracy_between(results[c], LONG, None) for c in cells}
        if gated:
            gap_short = max(short[c] for c in gated) - short["rnn"]
            gap_long = max(long_[c] for c in gated) - long_["rnn"]
            out.append(f"- **The simple RNN on long reviews.** On reviews under {SHORT} tokens the RNN reaches "
                       f"{_pct(short['rnn'])}, {_behind(gap_short)} the best gated cell; on reviews of {LONG} "
                       f"tokens or more (cut to {config.max_len}) it reaches {_pct(long_['rnn'])}, {_behind(gap_long)} "
                       "it" + (", so its deficit grows with length." if gap_long > gap_short + 0.005 else
                               ", so length does not widen its deficit here."))
            flow = results["rnn"]["gradient_flow"]
            k = max(k for k in FLOW_MARKS if f"k={k}" in flow)
            k_mid = 50 if "k=50" in flow else k
            rnn_drop = _flow_drop(results["rnn"], k_mid)
            gated_drop = min(_flow_drop(results[c], k_mid) for c in gated)
            out.append(f"- **Why.** The gradient from the RNN's final state falls to {rnn_drop:.1e} of its size within "
                       f"{k_mid} words and to {_flow_drop(results['rnn'], k):.1e} within {k}, against "
                       + ", ".join(f"{c.upper()} {_flow_drop(results[c], k_mid):.1e} and {_flow_drop(results[c], k):.1e}"
                                   for c in gated) + ". "
                       + ("Each RNN step multiplies the gradient by tanh' times W_hh, which shrinks it geometrically, "
                          "so what the final state knows about a word far back is learnt from a vanishing signal, "
                          "while the gated cells' additive paths (the LSTM's cell, the GRU's update gate) keep it "
                          + (f"{gated_drop / rnn_drop:.3g} times larger. " if rnn_drop > 0 else
                             "alive where the RNN's has underflowed to exactly zero in float32. ")
                          if rnn_drop < gated_drop else
                          "Here the RNN's gradient does not vanish faster than the gated cells'. ")
                       + (f"{config.pooling.capitalize()} pooling gives every step a direct path to the loss, which is "
                          "why the RNN still learns which words carry sentiment; what the vanishing gradient takes "
                          "from it is context carried across many words (a negation, a change of mind)."
                          if config.pooling != "last" else
                          "With last-state pooling the final state is the only path to the loss, so early words "
                          "barely train."))
    return out
