"""The translation plot: where the decoder looked in the source while writing each target word."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..viz import _pyplot, _save


def plot_attention(weights: np.ndarray, source: list[str], target: list[str], path, title: str = "") -> Path:
    """A (target, source) heatmap of attention weights, source words along the top, target words down the side."""
    plt = _pyplot()
    T, S = weights.shape
    fig, ax = plt.subplots(figsize=(min(14, 2.5 + 0.55 * S), min(12, 1.8 + 0.45 * T)))
    image = ax.imshow(weights, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02, label="attention weight")
    ax.set_xticks(range(S))
    ax.set_xticklabels(source, rotation=45, ha="left")
    ax.xaxis.tick_top()
    ax.set_yticks(range(T))
    ax.set_yticklabels(target)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    if title:
        ax.set_title(title, pad=12)
    fig.tight_layout()
    return _save(fig, path)
