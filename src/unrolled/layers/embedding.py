"""Embedding: a lookup table of row vectors, with a sparse gradient."""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import check_float_dtype, check_shape, check_sizes
from ..core.module import Module, Parameter


class Embedding(Module):
    """torch.nn.Embedding: `weight` (num_embeddings, embedding_dim) drawn from N(0, 1).

    forward(ids) takes integer ids of any shape and returns (..., embedding_dim). The row at
    `padding_idx` starts at zero and never receives a gradient. backward(dy) adds each row of dy
    into the weight row it was read from (repeated ids sum) and returns None: ids have no gradient.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype=np.float32, seed=None):
        super().__init__()
        check_sizes(num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        if padding_idx is not None:
            if not isinstance(padding_idx, (int, np.integer)) or not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx must be an integer in {-num_embeddings}..{num_embeddings - 1}, "
                                 f"but was given {padding_idx!r}.")
            padding_idx = int(padding_idx) % num_embeddings   # torch counts a negative index from the end
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        self.dtype = check_float_dtype(dtype)
        rng = init.as_generator(seed)
        self.weight = Parameter(rng.standard_normal((num_embeddings, embedding_dim)).astype(self.dtype))
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def forward(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be an integer array, but was given dtype {ids.dtype}.")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"ids must lie in 0..{self.num_embeddings - 1}, but range from {ids.min()} to {ids.max()}.")
        self._save(ids)
        return self.weight.data[ids]                              # (..., E)

    def backward(self, dy: np.ndarray) -> None:
        ids = self._restore()
        dy = np.asarray(dy)
        check_shape(dy, ids.shape + (self.embedding_dim,), "dy")
        flat = ids.reshape(-1)                                    # (N,)
        rows = dy.reshape(-1, self.embedding_dim)                 # (N, E)
        if self.padding_idx is not None:
            keep = flat != self.padding_idx
            flat, rows = flat[keep], rows[keep]
        if flat.size == 0:
            return None
        # Sum the rows of each id: sort by id, then one reduceat per run of equal ids. Faster than
        # np.add.at, and exact about repeats.
        order = np.argsort(flat, kind="stable")
        sorted_ids = flat[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])   # (U,)
        self.weight.grad[sorted_ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)   # (U, E)
        return None

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
