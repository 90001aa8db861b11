"""A recurrent language model: Embedding -> stacked RNN/LSTM/GRU -> Dropout -> Linear head.

    model = LanguageModel(vocab_size=65, embed=64, hidden=256, layers=2, cell="lstm", dropout=0.2)
    logits, state = model(ids)           # ids (T, B) int64 -> logits (T, B, V)
    model.backward(dlogits)              # gradients of every weight, through the whole model
    logits, state = model.step(tokens, state)   # (B,) -> (B, V), for decoding; keeps no cache

Layer names follow PyTorch's word-language-model example (`encoder`, `rnn`, `decoder`), so a
state_dict moves between the two. With `tie_weights=True` the head reuses the embedding matrix
(Press & Wolf, 2017): one Parameter, listed once by `parameters()` (as `encoder.weight`), whose
gradient accumulates from both uses; `state_dict()` has it under both names, as torch's has. The
recurrent state is a tuple (h, c) for an LSTM and an array h otherwise, each (layers, B, hidden):
batch on axis 1, as the decoding functions expect.
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import as_array, check_shape, check_sizes
from ..core.module import Module, no_grad
from ..layers import Dropout, Embedding, Linear
from ..rnn import GRU, LSTM, RNN

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def _copy_state(state):
    """A private copy of a recurrent state, so a carried state never aliases a layer's buffers."""
    if isinstance(state, tuple):
        return tuple(s.copy() for s in state)
    return state.copy()


class LanguageModel(Module):
    """Next-token model over a vocabulary of `vocab_size` ids (see the module docstring)."""

    def __init__(self, vocab_size: int, embed: int = 64, hidden: int = 256, layers: int = 2, cell: str = "lstm",
                 dropout: float = 0.0, tie_weights: bool = False, dtype=np.float32, seed=None):
        super().__init__()
        check_sizes(vocab_size=vocab_size, embed=embed, hidden=hidden, layers=layers)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, but was given {cell!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), but was given {dropout}.")
        if tie_weights and embed != hidden:
            raise ValueError(f"tie_weights needs embed == hidden (one matrix serves both), but was given embed={embed} "
                             f"and hidden={hidden}.")
        rng = init.as_generator(seed)
        self.vocab_size, self.embed, self.hidden, self.layers = int(vocab_size), int(embed), int(hidden), int(layers)
        self.cell, self.tie_weights, self.dtype = cell, bool(tie_weights), np.dtype(dtype)
        self.encoder = Embedding(vocab_size, embed, dtype=dtype, seed=rng)
        self.rnn = CELLS[cell](embed, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                               dtype=dtype, seed=rng)
        self.drop = Dropout(dropout, seed=rng)
        self.decoder = Linear(hidden, vocab_size, dtype=dtype, seed=rng)
        if tie_weights:
            self.decoder.weight = self.encoder.weight  # (V, H) both: one Parameter, two uses

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, embed={self.embed}, hidden={self.hidden}, layers={self.layers}, "
                f"cell={self.cell!r}, tie_weights={self.tie_weights}")

    # ----- forward and backward -------------------------------------------------------------

    def _check_ids(self, ids, name: str, ndim: int) -> np.ndarray:
        ids = as_array(ids, name, ndim)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name} must hold integer token ids, but was given dtype {ids.dtype}.")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"{name} must lie in 0..{self.vocab_size - 1} (the vocabulary), but range from "
                             f"{ids.min()} to {ids.max()}.")
        return ids

    def forward(self, ids, state=None):
        """ids (T, B) -> (logits (T, B, V), final state); `state` None starts from zeros."""
        ids = self._check_ids(ids, "ids", 2)
        T, B = ids.shape
        x = self.encoder(ids)                                    # (T, B, E)
        out, state = self.rnn(x, state)                          # (T, B, H)
        out = self.drop(out)
        logits = self.decoder(out.reshape(T * B, self.hidden))   # (T*B, V)
        self._save((T, B))
        return logits.reshape(T, B, self.vocab_size), _copy_state(state)

    def backward(self, dlogits, d_state=None):
        """Back-propagate dlogits (T, B, V) (and optionally the final state's gradient).

        Accumulates every weight's gradient and returns (None, d_initial_state): the integer ids
        have no gradient. Truncated BPTT simply ignores the second element.
        """
        T, B = self._restore()
        dlogits = as_array(dlogits, "dlogits", 3)
        check_shape(dlogits, (T, B, self.vocab_size), "dlogits")
        if d_state is not None:                                  # checked before the decoder takes its cache
            parts = zip(("dh_n", "dc_n"), d_state) if self.cell == "lstm" else [("dh_n", d_state)]
            for name, part in parts:
                if part is not None:
                    check_shape(as_array(part, name, 3), (self.layers, B, self.hidden), name)
        dout = self.decoder.backward(dlogits.reshape(T * B, self.vocab_size))   # (T*B, H)
        dout = self.drop.backward(dout.reshape(T, B, self.hidden))               # (T, B, H)
        dx, d_state0 = self.rnn.backward(dout, d_state)                          # (T, B, E)
        self.encoder.backward(dx)
        return None, d_state0

    # ----- decoding and inspection ----------------------------------------------------------

    def initial_state(self, batch: int):
        """The zero state for `batch` sequences: (h, c) for an LSTM, h otherwise, each (layers, B, hidden)."""
        h = np.zeros((self.layers, batch, self.hidden), dtype=self.dtype)
        return (h, h.copy()) if self.cell == "lstm" else h

    def step(self, tokens, state=None):
        """One decoding step: tokens (B,) -> (logits (B, V), state). Keeps no backward cache."""
        tokens = self._check_ids(tokens, "tokens", 1)
        with no_grad():
            logits, state = self.forward(tokens[None, :], state)   # (1, B, V)
        return logits[0], state

    def internals(self, ids, state=None) -> list[dict[str, np.ndarray]]:
        """Per layer, the recurrent layer's activations over ids (T, B): a dict of (T, B, hidden) arrays.

        LSTM: "i", "f", "g", "o", "c", "h"; GRU: "r", "z", "n", "h"; RNN: "h". Keeps no cache.
        """
        ids = self._check_ids(ids, "ids", 2)
        with no_grad():
            _, _, internals = self.rnn(self.encoder(ids), state, return_internals=True)
        return internals
