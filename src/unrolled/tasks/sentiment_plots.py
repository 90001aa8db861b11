"""The sentiment pipeline's plots: learning curves, confusion matrices, accuracy by review length,
gradient norm through time, and a prediction explained word by word. Each writes one PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..viz import CELL_W, TEXT_MARGIN, _pyplot, _save, text_figure


def plot_accuracy(curves: dict[str, list[dict]], path) -> Path:
    """Validation accuracy (left) and training loss (right) against training minutes, one line per model."""
    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, metrics in curves.items():
        evals = [m for m in metrics if m.get("val_accuracy") is not None]
        if evals:
            ax_acc.plot([m["elapsed_s"] / 60 for m in evals], [100 * m["val_accuracy"] for m in evals], "o-",
                        markersize=3, label=name)
        losses = [m for m in evals if m.get("train_loss") is not None]
        if losses:
            ax_loss.plot([m["elapsed_s"] / 60 for m in losses], [m["train_loss"] for m in losses], label=name)
    for ax, label in ((ax_acc, "validation accuracy (%)"), (ax_loss, "training loss (nats/review)")):
        ax.set_xlabel("training time (minutes)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_confusions(matrices: dict[str, np.ndarray], classes: list[str], path) -> Path:
    """One confusion matrix per model: rows true class, columns predicted, counts written in."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.2 * len(matrices), 3.0), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        matrix = np.asarray(matrix)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black")
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    fig.tight_layout()
    return _save(fig, path)


def plot_by_length(buckets: dict[str, list[dict]], path) -> Path:
    """Test accuracy per review-length bucket, grouped bars, one colour per model."""
    plt = _pyplot()
    names = list(buckets)
    labels = [b["tokens"] for b in buckets[names[0]]]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ax.bar(np.arange(len(labels)) + (k - (len(names) - 1) / 2) * width,
               [100 * b["accuracy"] for b in buckets[name]], width, label=name)
    ax.set_xticks(range(len(labels)), [f"{t}\n({b['reviews']})" for t, b in zip(labels, buckets[names[0]])])
    ax.set_xlabel("review length in tokens (reviews)")
    ax.set_ylabel("test accuracy (%)")
    lows = [100 * b["accuracy"] for v in buckets.values() for b in v]
    ax.set_ylim(max(0, min(lows) - 5), 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_gradient_flow(flows: dict[str, np.ndarray], path) -> Path:
    """Mean gradient norm reaching the input k steps before the final state, log scale, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, norms in flows.items():
        ax.semilogy(np.arange(len(norms)), norms, label=name)
    ax.set_xlabel("steps before the last word (k)")
    ax.set_ylabel("|d h_T / d x_(T-k)| (mean)")
    ax.set_title("gradient norm through time, from the final forward state")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_explanation(tokens: list[str], probs: np.ndarray, path, positive: str = "positive") -> Path:
    """The prediction after each prefix: a curve over the words, and below it the text coloured by it and its change."""
    width = max(100, round((min(24, 3 + 0.18 * len(tokens)) - 2 * TEXT_MARGIN) / CELL_W))  # characters
    change = np.diff(np.concatenate([[0.5], probs]))
    ticks = len(tokens) <= 120
    labels = [t if len(t) <= 16 else t[:15] + "\u2026" for t in tokens]     # the words, rotated under the curve
    pad_l, pad_r, pad_t, plot_h = 0.7, 0.2, 0.4, 2.4                        # inches: y label, edge, title, curve
    pad_b = 0.25 + 0.055 * max(map(len, labels)) if ticks else 0.5         # 7-point letters, or the x label
    fig, (left, bottom, w, _) = text_figure(
        tokens, [(f"p({positive}) after the word (blue 0, red 1)", 2 * probs - 1),
                 ("how much the word moved it (blue down, red up)", change / max(1e-9, np.abs(change).max()))],
        width=width, sep=" ", head=pad_b + plot_h + pad_t)
    fig_w, fig_h = fig.get_size_inches()
    ax = fig.add_axes([left + pad_l / fig_w, bottom + pad_b / fig_h, w - (pad_l + pad_r) / fig_w, plot_h / fig_h])
    ax.plot(np.arange(len(tokens)), probs, "o-", markersize=3)
    ax.axhline(0.5, color="grey", linewidth=0.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"p({positive})")
    if ticks:
        ax.set_xticks(range(len(tokens)), labels, rotation=90, fontsize=7)
    else:
        ax.set_xlabel("words read")
    ax.set_title(f"p({positive}) after each word: {probs[-1]:.3f} at the end")
    ax.grid(alpha=0.3)
    return _save(fig, path)
