"""Recurrent forecasters: a window of L steps of F features in, the next H values of the target out.

    model = Forecaster(input_size=11, horizon=24, hidden_size=64, cell="gru")
    y = model(x)                 # x (L, B, F) -> y (B, H), every step ahead at once
    dx = model.backward(dy)      # dy (B, H) -> dx (L, B, F); parameter gradients accumulate

Two shapes of model, both built from the recurrent layers of unrolled.rnn (stacked, with dropout
between layers and, optionally, on the recurrent state) and trained end to end:

- `Forecaster` (direct multi-step): the encoder's last top-layer state, through dropout, goes into
  one dense layer with H outputs.
- `EncoderDecoderForecaster` (for long horizons): the encoder's final states start a decoder of the
  same cell that runs H steps, reading the encoder's summary (its last top-layer state) at every
  step; a dense layer shared by all steps turns each decoder output into one value. The number of
  weights no longer grows with H, and neighbouring steps share one recurrent path.
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.module import Module
from ..layers import Dropout, Linear
from ..rnn import GRU, LSTM, RNN

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def make_cell(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, dtype, rng,
              recurrent_dropout: float = 0.0):
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, but was given {cell!r}.")
    return CELLS[cell](input_size, hidden_size, num_layers, dropout=dropout, dtype=dtype, seed=rng,
                       recurrent_dropout=recurrent_dropout)


class Forecaster(Module):
    """Recurrent encoder + dense head with H outputs: direct multi-step forecasts."""

    def __init__(self, input_size: int, horizon: int, hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "gru", dropout: float = 0.0, dtype=np.float32, seed=None,
                 recurrent_dropout: float = 0.0):
        super().__init__()
        rng = init.as_generator(seed)
        self.horizon, self.dtype = int(horizon), np.dtype(dtype)
        self.encoder = make_cell(cell, input_size, hidden_size, num_layers, dropout, self.dtype, rng,
                                 recurrent_dropout)
        self.dropout = Dropout(dropout, seed=rng)
        self.head = Linear(hidden_size, horizon, dtype=self.dtype, seed=rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, _ = self.encoder(x)                                          # (L, B, Hd)
        y = self.head(self.dropout(out[-1]))                              # (B, H)
        self._save(out.shape)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        out_shape = self._restore()
        d_out = np.zeros(out_shape, self.dtype)                           # (L, B, Hd): only the last step is read
        d_out[-1] = self.dropout.backward(self.head.backward(dy))
        dx, _ = self.encoder.backward(d_out)
        return dx


class EncoderDecoderForecaster(Module):
    """Encoder, then a decoder unrolled for H steps from the encoder's states; one value per step."""

    def __init__(self, input_size: int, horizon: int, hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "gru", dropout: float = 0.0, dtype=np.float32, seed=None,
                 recurrent_dropout: float = 0.0):
        super().__init__()
        rng = init.as_generator(seed)
        self.horizon, self.dtype = int(horizon), np.dtype(dtype)
        self.encoder = make_cell(cell, input_size, hidden_size, num_layers, dropout, self.dtype, rng,
                                 recurrent_dropout)
        self.decoder = make_cell(cell, hidden_size, hidden_size, num_layers, dropout, self.dtype, rng,
                                 recurrent_dropout)
        self.dropout = Dropout(dropout, seed=rng)
        self.head = Linear(hidden_size, 1, dtype=self.dtype, seed=rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        enc_out, state = self.encoder(x)                                  # (L, B, Hd), h_n or (h_n, c_n)
        context = enc_out[-1]                                             # (B, Hd)
        steps = np.broadcast_to(context, (self.horizon, *context.shape))  # (H, B, Hd), the same at each step
        dec_out, _ = self.decoder(steps, state)                           # (H, B, Hd)
        y = self.head(self.dropout(dec_out))[..., 0]                      # (H, B)
        self._save(enc_out.shape)
        return np.ascontiguousarray(y.T)                                  # (B, H)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        enc_shape = self._restore()
        d_dec = self.dropout.backward(self.head.backward(np.ascontiguousarray(dy.T)[..., None]))  # (H, B, Hd)
        d_steps, d_state = self.decoder.backward(d_dec)
        d_enc = np.zeros(enc_shape, self.dtype)                           # (L, B, Hd)
        d_enc[-1] = d_steps.sum(axis=0)                                   # the context fed every step
        dx, _ = self.encoder.backward(d_enc, d_state)
        return dx
