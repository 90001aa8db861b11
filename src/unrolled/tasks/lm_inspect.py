"""Looking inside a trained language model, after Karpathy, Johnson & Fei-Fei (2015),
"Visualizing and Understanding Recurrent Networks".

    report = inspect_run("runs/shakespeare", text, out="runs/shakespeare/inspect")

runs the model over a text and writes, for every layer, heatmaps of its hidden state (and, for
an LSTM, its cell state and gates; for a GRU, its gates) over the first 160 tokens, the gates' saturation
plot, and the units whose activation correlates best with readable properties of the text:
inside quotes, inside brackets, position in the line, a speaker's name line (a line ending in
':'), the first line of a speaker's turn. Each top unit is drawn over the text, and report.md
lists the top units per property with their correlation. The gradient flow plot shows how far
back a prediction's gradient reaches: the norm of the gradient of one prediction's loss with
respect to each earlier input, the vanishing (or not) of back-propagation through time.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np

from .. import viz
from ..core.checks import check_sizes, counted
from ..core.module import is_grad_enabled
from .lm import encode_prompt, load_run

FEATURES = {
    "inside quotes": "between an opening and a closing double quote",
    "inside brackets": "inside (...), [...] or {...}",
    "position in line": "tokens since the last newline",
    "speaker name": "on a line ending in ':' (a speaker's name)",
    "start of turn": "on the first line after a speaker's name",
}
GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn": ()}
TOP = 3
HEATMAP_TOKENS = 160   # columns of the heatmaps
TEXT_TOKENS = 600      # text drawn under each readable unit
FLOW_STEPS = 100       # how far back the gradient flow looks
FLOW_SHOWN = (1, 10, 25, 50, 99)   # steps back reported in report.md


def text_features(tokens: list[str]) -> dict[str, np.ndarray]:
    """Per token, the value (T,) of every property in FEATURES."""
    T = len(tokens)
    quotes, brackets, position = np.zeros(T), np.zeros(T), np.zeros(T)
    inside, depth, column = False, 0, 0
    for t, token in enumerate(tokens):
        if token == '"':
            inside = not inside
        depth = max(0, depth + sum(token.count(c) for c in "([{") - sum(token.count(c) for c in ")]}"))
        quotes[t], brackets[t], position[t] = inside, depth > 0, column
        column = 0 if token == "\n" else column + 1
    speaker, start = np.zeros(T), np.zeros(T)
    after_speaker, line_start = False, 0
    for t in range(T + 1):
        if t < T and tokens[t] != "\n":
            continue
        line = "".join(tokens[line_start:t]).strip()  # tokens[line_start : t + 1] is one line, newline included
        is_speaker = line.endswith(":")
        speaker[line_start:t + 1] = is_speaker
        start[line_start:t + 1] = after_speaker and not is_speaker
        if line:  # blank lines do not end a turn's start
            after_speaker = is_speaker
        line_start = t + 1
    return {"inside quotes": quotes, "inside brackets": brackets, "position in line": position,
            "speaker name": speaker, "start of turn": start}


def correlations(units: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of units (T, U) with feature (T,); 0 for a constant unit."""
    u = units - units.mean(0)                            # (T, U)
    f = feature - feature.mean()                         # (T,)
    den = np.sqrt((u * u).sum(0) * (f * f).sum())        # (U,)
    num = f @ u                                          # (U,)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def unit_activations(internals: list[dict[str, np.ndarray]], cell: str) -> dict[str, np.ndarray]:
    """Named (T, H) activations to search for readable units: h of every layer, and tanh(c) for an LSTM."""
    found = {}
    for k, layer in enumerate(internals, start=1):
        found[f"layer {k} h"] = layer["h"][:, 0]
        if cell == "lstm":
            found[f"layer {k} tanh(c)"] = np.tanh(layer["c"][:, 0])
    return found


def gradient_flow(model, ids, steps: int = FLOW_STEPS) -> np.ndarray:
    """How far back a prediction's gradient reaches, over windows of `steps` inputs of ids (T,)
    laid back to back: the norm of the gradient of the loss of predicting the token after a
    window, with respect to each input embedding of it. Returns (windows, steps): column k is k
    steps before the last input. Dropout is off and the model is not changed (its recurrent
    layer is copied, to record a backward pass outside training mode)."""
    check_sizes(steps=steps)
    ids = model._check_ids(ids, "ids", 1)
    if not is_grad_enabled():
        raise ValueError("gradient_flow back-propagates, so it cannot run inside no_grad().")
    windows = (len(ids) - 1) // steps
    if windows < 1:
        raise ValueError(f"the gradient flow over {counted(steps, 'step')} needs at least {steps + 1} tokens, but "
                         f"was given {len(ids)}.")
    inputs = ids[:windows * steps].reshape(windows, steps).T                      # (T, B)
    targets = ids[steps:windows * steps + 1:steps]                                # (B,): the token after each
    rnn = copy.deepcopy(model.rnn)                                                # every setting and weight,
    rnn.dropout = rnn.recurrent_dropout = 0.0                                     # but no dropout,
    rnn.train()                                                                   # and recording
    out, _ = rnn(model.encoder.weight.data[inputs])                               # (T, B, H)
    W, b = model.decoder.weight.data, model.decoder.bias.data                     # (V, H), (V,)
    logits = out[-1] @ W.T + b                                                    # (B, V)
    dlogits = np.exp(logits - logits.max(axis=1, keepdims=True))
    dlogits /= dlogits.sum(axis=1, keepdims=True)                                 # softmax
    dlogits[np.arange(windows), targets] -= 1                                     # d(cross-entropy)/d(logits)
    dout = np.zeros_like(out)
    dout[-1] = dlogits @ W                                                        # (B, H)
    dx, _ = rnn.backward(dout)                                                    # (T, B, E)
    return np.linalg.norm(dx, axis=-1).T[:, ::-1]                                 # (B, T), k steps back


# what an inspection writes (and the temporary files of a write a kill cut short)
INSPECTION_FILES = re.compile(r"(hidden|cell|saturation)_l\d+\.png|gate_\w+_l\d+\.png|units\.png|gradient_flow\.png|"
                              r"report\.md|\..+\.tmp")


def _clear_output_folder(out: Path) -> None:
    """`out` must be new, empty, or an earlier inspection's folder (its report.md, written first, and
    only files of the names an inspection writes), whose files are removed (a GRU's inspection has no
    cell plots, so an LSTM's must not stay beside it)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder, but {out} is a file.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    report = out / "report.md"
    ours = all(p.is_file() and INSPECTION_FILES.fullmatch(p.name) for p in out.iterdir()) and (
        report.is_file() and report.read_text(encoding="utf-8", errors="replace").startswith("# Units of "))
    if not ours:
        raise ValueError(f"{out} holds files that are not an inspection; choose an empty or new folder for --out.")
    for path in out.iterdir():
        path.unlink()


def inspect_run(run, text: str, out=None, max_tokens: int = 2000) -> str:
    """Write the heatmaps, unit plots and report.md for `text` into `out` (default run/inspect); returns the report."""
    config, vocab, model, meta = load_run(run)
    out = Path(out) if out is not None else Path(run) / "inspect"
    if not text.strip():
        raise ValueError("--text must hold at least 2 tokens to inspect, but was given none.")
    ids = encode_prompt(config.level, vocab, text)[:max_tokens]
    if len(ids) < 2:
        raise ValueError(f"--text must hold at least 2 tokens to inspect, but was given {len(ids)}.")
    tokens = vocab.decode(ids)
    internals = model.internals(ids[:, None])                            # per layer: dict of (T, 1, H)
    _clear_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(f"# Units of {Path(run)}: being drawn\n", encoding="utf-8")  # marks the folder ours
    plots = []
    n = min(len(tokens), HEATMAP_TOKENS)  # few enough to label every column
    for k, layer in enumerate(internals, start=1):
        plots.append(viz.plot_heatmap(layer["h"][:n, 0].T, out / f"hidden_l{k}.png",           # (H, n)
                                      f"layer {k}: hidden state h", tokens[:n], vmin=-1, vmax=1))
        if config.cell == "lstm":
            plots.append(viz.plot_heatmap(np.tanh(layer["c"][:n, 0].T), out / f"cell_l{k}.png",
                                          f"layer {k}: tanh(cell state c)", tokens[:n], vmin=-1, vmax=1))
        for gate in GATES[config.cell]:
            plots.append(viz.plot_heatmap(layer[gate][:n, 0].T, out / f"gate_{gate}_l{k}.png", f"layer {k}: gate {gate}",
                                          tokens[:n], vmin=0, vmax=1, cmap="viridis"))
        if GATES[config.cell]:
            plots.append(viz.plot_saturation({g: layer[g][:, 0] for g in GATES[config.cell]}, out / f"saturation_l{k}.png",
                                             f"layer {k}: gate saturation"))

    activations = unit_activations(internals, config.cell)
    lines = [f"# Units of {Path(run)} over {len(tokens)} tokens", "",
             f"Model: {config.layers}-layer {config.cell.upper()}, {config.hidden} units, step {meta.get('step')}.", "",
             "Pearson correlation r of each unit with a property of the text; the top units by |r|.", "",
             "| property | meaning | top units (r) |", "|---|---|---|"]
    traces = []
    for name, feature in text_features(tokens).items():
        if feature.std() == 0:
            lines.append(f"| {name} | {FEATURES[name]} | not present in this text |")
            continue
        ranked = sorted(((source, u, r) for source, values in activations.items()
                         for u, r in enumerate(correlations(values, feature))), key=lambda c: -abs(c[2]))[:TOP]
        lines.append(f"| {name} | {FEATURES[name]} | "
                     + ", ".join(f"{source}[{u}] ({r:+.2f})" for source, u, r in ranked) + " |")
        source, u, r = ranked[0]
        traces.append((f"{name}: {source}[{u}], r = {r:+.2f}", activations[source][:TEXT_TOKENS, u]))
    if traces:
        plots.append(viz.plot_text_activations(tokens[:TEXT_TOKENS], traces, out / "units.png",
                                               "the most readable units", width=80,
                                               sep=" " if config.level == "word" else ""))
    steps = min(FLOW_STEPS, len(ids) - 1)
    flow = gradient_flow(model, ids, steps)                                       # (windows, steps)
    plots.append(viz.plot_gradient_flow(flow, out / "gradient_flow.png",
                                        f"{config.cell.upper()}, {config.layers} x {config.hidden}: how far back a "
                                        "prediction's gradient reaches"))
    relative = np.median(flow / flow[:, :1], axis=0)                              # (steps,) against 0 steps back
    shown = [k for k in FLOW_SHOWN if k < steps]
    if shown:
        lines += ["", f"Gradient flow: the norm of the gradient of a prediction's loss with respect to the input k "
                  f"steps before it, against the last input's (median over {counted(len(flow), 'window')} of "
                  f"{counted(steps, 'token')}): " + ", ".join(f"k = {k}: {relative[k]:.2g}" for k in shown) + "."]
    lines += ["", "Plots: " + ", ".join(p.name for p in plots), ""]
    report = "\n".join(lines)
    (out / "report.md").write_text(report, encoding="utf-8")
    return report
