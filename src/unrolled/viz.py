"""Plots that make a sequence model readable: loss curves, activation heatmaps, text coloured by a unit.

Matplotlib with the Agg backend (files only, no display), imported when a plot is drawn, so the
engine itself never needs it. Every function writes one PNG and returns its path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .runs import atomic_write


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> Path:
    import matplotlib
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"text.hinting": "no_hinting"}):  # exact advances: text lines up with cells
        atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))  # a kill never leaves half a PNG
    _pyplot().close(fig)
    return path


def shown(token: str) -> str:
    """A token as it can be printed in a plot cell: whitespace made visible."""
    return {"\n": "\u23ce", " ": "\u2423", "\t": "\u21e5"}.get(token, token)


def plot_losses(metrics: list[dict], path, title: str = "loss", unit: str = "nats/token") -> Path:
    """Training and validation loss against step (left), learning rate (right), from metrics records."""
    plt = _pyplot()
    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    steps = [m["step"] for m in metrics]
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        pairs = [(s, m[key]) for s, m in zip(steps, metrics) if m.get(key) is not None]
        if pairs:
            ax.plot(*zip(*pairs), style, label=key.replace("_", " "), markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss ({unit})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    lrs = [(s, m["lr"]) for s, m in zip(steps, metrics) if m.get("lr") is not None]
    if lrs:
        ax_lr.plot(*zip(*lrs), color="tab:green")
    ax_lr.set_xlabel("step")
    ax_lr.set_title("learning rate")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


MONO = "DejaVu Sans Mono"   # ships with matplotlib; its advance width is 0.6021 em
MONO_ADVANCE = 0.6021
TEXT_FONT = 8                                 # points
CELL_W = MONO_ADVANCE * TEXT_FONT / 72        # inches per character cell
TEXT_MARGIN = 0.2                             # inches either side


def plot_heatmap(matrix: np.ndarray, path, title: str, tokens: list[str] | None = None, ylabel: str = "unit",
                 vmin: float | None = None, vmax: float | None = None, cmap: str = "RdBu_r") -> Path:
    """A (rows, T) matrix over time, one column per token.

    Single-character tokens are written under their columns as one monospace line (cheap to draw
    and exactly aligned); longer tokens become tick labels when there are at most 160 of them.
    """
    plt = _pyplot()
    from matplotlib.transforms import blended_transform_factory
    rows, T = matrix.shape
    font = 7
    chars = tokens is not None and all(len(t) == 1 for t in tokens)
    width = T * MONO_ADVANCE * font / 72 if chars else min(20.0, max(4.0, 0.1 * T))   # inches
    height = min(8.0, max(1.5, 0.03 * rows))
    left, right, bottom, top = 0.6, 0.9, 0.5 if tokens is not None else 0.4, 0.35
    fig = plt.figure(figsize=(left + width + right, bottom + height + top))
    fig_w, fig_h = fig.get_size_inches()
    ax = fig.add_axes([left / fig_w, bottom / fig_h, width / fig_w, height / fig_h])
    bar = fig.add_axes([(left + width + 0.15) / fig_w, bottom / fig_h, 0.12 / fig_w, height / fig_h])
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(image, cax=bar)
    if chars:
        ax.set_xticks([])
        under = blended_transform_factory(ax.transData, ax.transAxes)
        ax.text(-0.5, -0.02, "".join(shown(t) for t in tokens), transform=under, ha="left", va="top",
                fontsize=font, family=MONO, parse_math=False)
    elif tokens is not None and T <= 160:
        ax.set_xticks(range(T))
        ax.set_xticklabels([shown(t) for t in tokens], fontsize=6, rotation=90, parse_math=False)
    else:
        ax.set_xlabel("position")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _rows(tokens: list[str], values: np.ndarray, width: int, sep: str) -> list[tuple[str, list[float]]]:
    """The text in display rows of at most `width` characters, with each character's value.

    A row ends after a newline token or when the next token would not fit; `sep` (a space for
    words) separates tokens and has no value.
    """
    rows, text, row_values = [], "", []
    for token, value in zip(tokens, values):
        piece = "\u23ce" if token == "\n" else token.replace("\t", " ")
        if text and len(text) + len(piece) > width:
            rows.append((text, row_values))
            text, row_values = "", []
        while len(piece) > width:                  # a token longer than a row fills rows of its own
            rows.append((piece[:width], [float(value)] * width))
            piece = piece[width:]
        text += piece
        row_values += [float(value)] * len(piece)
        if token == "\n":
            rows.append((text, row_values))
            text, row_values = "", []
        elif sep and len(text) < width:            # a full row needs no separator: the next token wraps
            text += sep
            row_values.append(np.nan)
    if text:
        rows.append((text, row_values))
    return rows


def plot_text_activations(tokens: list[str], traces: list[tuple[str, np.ndarray]], path, title: str = "",
                          width: int = 100, sep: str = "", vmin: float = -1.0, vmax: float = 1.0) -> Path:
    """The text once per trace, each character's cell coloured by its token's value (blue low, red high).

    `traces` holds (label, values (T,)) pairs, e.g. ("inside quotes: layer 2 tanh(c)[17], r = +0.91", v).
    Each row of text is one monospace string laid exactly over its row of cells.
    """
    fig, _ = text_figure(tokens, traces, title, width, sep, vmin, vmax)
    return _save(fig, path)


def text_figure(tokens: list[str], traces: list[tuple[str, np.ndarray]], title: str = "", width: int = 100,
                sep: str = "", vmin: float = -1.0, vmax: float = 1.0, head: float = 0.0):
    """plot_text_activations' figure, with `head` inches left free above the text for another plot.

    Returns (figure, free area): the area as [left, bottom, width, height] in figure fractions, as
    fig.add_axes takes them.
    """
    plt = _pyplot()
    cell_h = 1.6 * TEXT_FONT / 72             # inches
    layouts = [_rows(tokens, values, width, sep) for _, values in traces]
    label_h = 0.3
    heights = [label_h + len(rows) * cell_h for rows in layouts]
    title_h = 0.4 if title else 0.1
    fig_w, fig_h = width * CELL_W + 2 * TEXT_MARGIN, head + sum(heights) + title_h
    fig = plt.figure(figsize=(fig_w, fig_h))
    top = fig_h - title_h - head
    for (label, _), rows, height in zip(traces, layouts, heights):
        grid = np.full((len(rows), width), np.nan)
        for r, (_, row_values) in enumerate(rows):
            grid[r, :len(row_values)] = row_values
        panel = height - label_h
        ax = fig.add_axes([TEXT_MARGIN / fig_w, (top - height) / fig_h, width * CELL_W / fig_w, panel / fig_h])
        ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=vmin, vmax=vmax,
                  extent=(-0.5, width - 0.5, len(rows) - 0.5, -0.5))
        for r, (text, _) in enumerate(rows):
            ax.text(-0.5, r, text, ha="left", va="center", fontsize=TEXT_FONT, family=MONO, parse_math=False)
        ax.set_axis_off()
        ax.set_title(label, fontsize=9, loc="left")
        top -= height
    if title:
        fig.suptitle(title, y=1 - 0.15 / fig_h, va="top")
    return fig, [0.0, (fig_h - title_h - head) / fig_h, 1.0, head / fig_h]


def plot_saturation(gates: dict[str, np.ndarray], path, title: str = "gate saturation",
                    low: float = 0.1, high: float = 0.9) -> Path:
    """Per unit, the fraction of time each gate is left- (< low) vs right-saturated (> high).

    `gates` maps a gate name to its (T, H) activations in [0, 1]: Karpathy et al.'s figure 3.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(gates), figsize=(3.2 * len(gates), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], gates.items()):
        ax.scatter((values < low).mean(0), (values > high).mean(0), s=6, alpha=0.6)
        ax.plot([0, 1], [1, 0], color="grey", linewidth=0.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"fraction < {low}")
        ax.set_ylabel(f"fraction > {high}")
        ax.set_title(f"{name} gate")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_gradient_flow(norms: np.ndarray, path, title: str = "gradient flow") -> Path:
    """Gradient norms (windows, K) by steps back (column k: k steps before the prediction), on a
    log scale: the median over windows and the band between their quartiles."""
    plt = _pyplot()
    k = np.arange(norms.shape[1])
    low, mid, high = np.percentile(norms, [25, 50, 75], axis=0)                   # (K,) each
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.fill_between(k, low, high, alpha=0.3, linewidth=0, label="quartiles over windows")
    ax.plot(k, mid, label="median")
    ax.set_yscale("log")
    ax.set_xlabel("steps back from the prediction")
    ax.set_ylabel("gradient norm w.r.t. the input")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
