"""Train/validation split and contiguous batching into truncated-BPTT chunks.

    train, val = split(ids, val_fraction=0.1)          # val is the last 10% of the stream
    for x, y in StreamBatcher(train, batch_size=32, seq_len=128):
        ...                                            # x, y: int64 (T, B), y[t] = x[t + 1]

The stream is cut into B equal contiguous pieces laid side by side (Zaremba et al.; Karpathy's
char-rnn): column b of every chunk continues column b of the chunk before it, so the final hidden
state of chunk j is the right initial state for chunk j + 1. Carrying (and detaching) that state,
and resetting it at each epoch, is the training loop's job.
"""
from __future__ import annotations

import numpy as np

from ..core.checks import check_sizes


def _as_ids(ids, name: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ValueError(
            f"{name} must be a 1-D sequence of integer token ids, but was given {ids.dtype} of shape {ids.shape}."
        )
    return ids.astype(np.int64, copy=False)


def split(ids, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): the first `1 - val_fraction` of the stream and the rest, cut at one boundary.

    The cut is at `int(len(ids) * (1 - val_fraction))`, as nanoGPT's data preparation does, with no
    shuffling, so validation text is text the model never saw, not lines scattered through training.
    """
    ids = _as_ids(ids, "ids")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, but was given {val_fraction!r}.")
    cut = int(len(ids) * (1.0 - val_fraction))
    if cut == 0 or cut == len(ids):
        raise ValueError(
            f"Splitting {len(ids)} tokens at val_fraction={val_fraction} leaves one side empty; give more text."
        )
    return ids[:cut], ids[cut:]


class StreamBatcher:
    """TBPTT chunks `(x, y)`, each int64 (T, B) time-major, over B parallel contiguous streams.

    The ids are trimmed to a multiple of `batch_size` and laid out as `streams` (N/B, B): stream b
    is the b-th contiguous piece of the text. Chunk j holds steps `j*seq_len ...` of every stream,
    `y` the same steps shifted by one token; the last chunk is shorter when the steps do not divide
    evenly. `len()` is the number of chunks per epoch, `batcher[j]` chunk j (read-only views); the
    order is fixed.
    """

    def __init__(self, ids, batch_size: int, seq_len: int):
        ids = _as_ids(ids, "ids")
        check_sizes(batch_size=batch_size, seq_len=seq_len)
        needed = batch_size * (seq_len + 1)
        if len(ids) < needed:
            raise ValueError(
                f"One chunk of {batch_size} streams x {seq_len} steps needs at least {needed:,} tokens "
                f"(batch_size * (seq_len + 1)), but was given {len(ids):,}; lower batch_size or seq_len, "
                "or give more text."
            )
        self.batch_size, self.seq_len = int(batch_size), int(seq_len)
        steps = len(ids) // batch_size
        self.streams = np.ascontiguousarray(ids[: steps * batch_size].reshape(batch_size, steps).T)  # (N/B, B)
        self.streams.flags.writeable = False  # chunks are views of it
        self._n_chunks = -(-(steps - 1) // seq_len)  # ceil: every step but the last has a target

    def __len__(self) -> int:
        return self._n_chunks

    def __getitem__(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        if not -self._n_chunks <= j < self._n_chunks:
            raise IndexError(f"chunk index must lie in 0..{self._n_chunks - 1}, but was given {j}.")
        start = (j % self._n_chunks) * self.seq_len
        stop = min(start + self.seq_len, len(self.streams) - 1)
        return self.streams[start:stop], self.streams[start + 1 : stop + 1]  # (T, B) each

    def __iter__(self):
        for j in range(self._n_chunks):
            yield self[j]

    @property
    def tokens_per_epoch(self) -> int:
        """Predicted tokens per epoch: every (x, y) position of every chunk."""
        return (len(self.streams) - 1) * self.batch_size

    def __repr__(self) -> str:
        return f"StreamBatcher(batch_size={self.batch_size}, seq_len={self.seq_len}, chunks={len(self)})"
