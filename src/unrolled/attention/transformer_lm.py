"""A decoder-only Transformer language model with a key/value cache for incremental decoding.

    model = TransformerLM(vocab_size=65, d_model=128, nhead=4, num_layers=2, max_len=256)
    logits, state = model(ids)            # ids (T, B) int64 -> logits (T, B, V)
    model.backward(dlogits)               # gradients of every weight
    model.eval()                          # decode without dropout
    logits, state = model.step(tokens, state)   # (B,) -> (B, V), one token at a time; keeps no cache

Embedding + positions -> dropout -> a causal pre-norm TransformerEncoder (final LayerNorm) ->
Linear head. Layer names follow PyTorch's word-language-model example (`encoder`, `pos_encoder`,
`transformer_encoder`, `decoder`), as LanguageModel's do. Token embeddings are N(0, 1) and are not
scaled by sqrt(d_model) (the same as N(0, 1/d_model) scaled, as in Vaswani et al.).

The state is `(ids (t, B) int64, ((keys, values) per layer, each (t, B, d_model)))`: the tokens
seen so far and their cached keys and values, batch on axis 1 as the decoding functions expect.
`forward(ids, state)` continues from the state (its positions start at t) and raises a
ValueError if t + T exceeds `max_len`, the context window; gradients flow into the state's keys
and values and come back from `backward` as the state's gradient. `step` never overflows: with a
full window it re-encodes the last max_len - 1 tokens and the new one from position 0.
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import as_array
from ..core.module import Module, no_grad
from ..layers import Dropout, Embedding, Linear
from .positions import positional_encoding
from .transformer import TransformerEncoder


def check_ids(ids, name: str, ndim: int, vocab_size: int) -> np.ndarray:
    """Integer token ids with `ndim` dimensions, each in 0..vocab_size-1."""
    ids = as_array(ids, name, ndim)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, but was given dtype {ids.dtype}.")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} must lie in 0..{vocab_size - 1} (the vocabulary), but range from "
                         f"{ids.min()} to {ids.max()}.")
    return ids


class TransformerLM(Module):
    """Next-token Transformer over a vocabulary of `vocab_size` ids (see the module docstring);
    `bias=False` builds its Transformer layers without biases (the embedding and output layer keep theirs)."""

    def __init__(self, vocab_size: int, d_model: int = 128, nhead: int = 4, num_layers: int = 2,
                 dim_feedforward: int | None = None, dropout: float = 0.1, activation: str = "relu",
                 max_len: int = 256, positions: str = "learned", dtype=np.float32, seed=None, *, bias: bool = True):
        super().__init__()
        rng = init.as_generator(seed)
        dim_feedforward = 4 * d_model if dim_feedforward is None else dim_feedforward
        self.vocab_size, self.d_model, self.num_layers, self.max_len = vocab_size, d_model, num_layers, max_len
        self.dtype = np.dtype(dtype)
        self.encoder = Embedding(vocab_size, d_model, dtype=dtype, seed=rng)
        self.pos_encoder = positional_encoding(positions, d_model, max_len, dtype, rng)
        self.drop = Dropout(dropout, seed=rng)
        self.transformer_encoder = TransformerEncoder(num_layers, d_model, nhead, dim_feedforward, dropout,
                                                      activation, bias=bias, dtype=dtype, seed=rng)
        self.decoder = Linear(d_model, vocab_size, dtype=dtype, seed=rng)

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, d_model={self.d_model}, num_layers={self.num_layers}, "
                f"max_len={self.max_len}")

    def initial_state(self, batch: int):
        """The empty state for `batch` sequences: no tokens, empty caches."""
        empty = np.zeros((0, batch, self.d_model), self.dtype)
        return np.zeros((0, batch), np.int64), tuple((empty, empty) for _ in range(self.num_layers))

    def _check_state(self, state, batch: int):
        if (not isinstance(state, (tuple, list)) or len(state) != 2 or not isinstance(state[1], (tuple, list))
                or len(state[1]) != self.num_layers):
            raise ValueError(f"state must be (ids, one (keys, values) pair per layer for {self.num_layers} layers) as "
                             f"returned by forward or step, but was given {type(state).__name__}.")
        window = np.asarray(state[0])
        if window.ndim != 2 or window.shape[1] != batch:
            raise ValueError(f"state ids must have shape (t, {batch}), but have shape {window.shape}.")
        return window, state[1]

    def forward(self, ids, state=None):
        """ids (T, B) -> (logits (T, B, V), state after them); `state` None starts a new window."""
        ids = check_ids(ids, "ids", 2, self.vocab_size)
        T, B = ids.shape
        window, past = self._check_state(self.initial_state(B) if state is None else state, B)
        t = window.shape[0]
        if t + T > self.max_len:
            raise ValueError(f"the context window holds max_len={self.max_len} positions, but was given {T} ids after "
                             f"a state of {t}; start a new window with state=None.")
        x = self.drop(self.pos_encoder(self.encoder(ids), offset=t))             # (T, B, E)
        h, presents = self.transformer_encoder(x, is_causal=True, past=past)     # (T, B, E)
        logits = self.decoder(h)                                                 # (T, B, V)
        self._save(state is not None)
        return logits, (np.concatenate([window, ids]), presents)

    def backward(self, dlogits, d_state=None):
        """dlogits (T, B, V) and optionally the returned state's gradient -> (None, d_initial_state).

        The integer ids have no gradient; d_initial_state is (None, d(keys, values) per layer), or
        None when forward started from state=None.
        """
        had_state = self._restore()
        dpresents = None if d_state is None else d_state[1]
        self.transformer_encoder._past(dpresents, self.num_layers)              # checked before any backward
        dh = self.decoder.backward(dlogits)                                      # (T, B, E)
        dx, dpasts = self.transformer_encoder.backward(dh, dpresents)
        self.encoder.backward(self.pos_encoder.backward(self.drop.backward(dx)))
        return None, ((None, dpasts) if had_state else None)

    def step(self, tokens, state=None):
        """One decoding step: tokens (B,) -> (logits (B, V), state). Keeps no backward cache."""
        tokens = check_ids(tokens, "tokens", 1, self.vocab_size)
        with no_grad():
            if state is not None and len(state[0]) >= self.max_len:   # a full window: slide it by one
                window = np.concatenate([np.asarray(state[0])[len(state[0]) - self.max_len + 1:], tokens[None]])
                logits, state = self.forward(window, None)
            else:
                logits, state = self.forward(tokens[None], state)
        return logits[-1], state
