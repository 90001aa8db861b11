"""Whole sequences: RNN, LSTM and GRU layers as torch.nn's (stacked, bidirectional, variable length).

    out, h_n = rnn(x, h0=None, lengths=None)                 # x (T, B, I), or (B, T, I) batch_first
    out, (h_n, c_n) = lstm(x, (h0, c0), lengths=lengths)
    dx, dh0 = rnn.backward(d_out, d_h_n)
    dx, (dh0, dc0) = lstm.backward(d_out, (dh_n, dc_n))

Parameters carry PyTorch's names, shapes and gate order (weight_ih_l0, weight_hh_l1_reverse, ...),
so state dicts move both ways. This file does the layer logic (layout, lengths, directions,
stacking, dropout between layers and on the recurrent state); the recurrences themselves are the
kernels in kernels.py. Per layer and direction: GEMMs over many steps at once project the inputs,
the kernel runs the recurrence, and backward does the same for dW_ih, dW_hh and dx. Those large
GEMMs are cut into a few time chunks that run on a helper thread while the recurrence goes on
(threads.py): the projection of chunk c+1 during the steps of chunk c, the gradients of a chunk as
soon as backward has left it. A large layer's forward recurrence instead splits the batch: half
of the sequences on the caller's thread, half on the helper, with no step waiting for the other.

Unbatched, as torch: x (T, I) (batch_first does not apply), states (L*D, H) and every output and
gradient likewise without the batch axis; inside, it is a batch of one. Refused with `lengths`.

`lengths` (B ints in 1..T): padded steps keep the previous state, padded outputs are zero, h_n is
each sequence's state at its own last step and the reverse direction runs over each sequence's
valid prefix, as torch's pack_padded_sequence(enforce_sorted=False). Inside, the batch is sorted
by decreasing length and the reverse direction's valid steps are flipped in place, so kernels see
every sequence as a prefix (see _Batch).

While recording (training mode, gradients on), the returned `out` is a read-only view, as backward
may read its memory: copy it to change it. The same holds for x until backward: do not change it.
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import as_array, check_float_dtype, check_lengths, check_shape, check_sizes
from ..core.module import Module
from .cells import (add_weights, batched_like_x, check_init, input_grad, input_side_grads,
                    prepared, projection_grads, recurrent_side_grads, reset_weights, state_pair, weights_of)
from .kernels import GRUKernel, LSTMKernel, RNNKernel
from .threads import Overlap, one_blas_thread

MAX_CHUNKS = 8          # time chunks per sequence for the overlapped GEMMs...
MIN_CHUNK_ROWS = 512    # ...each of at least this many rows (steps x sequences)
MIN_SPLIT_WORK = 6 * 2**20  # multiply-adds per step in each half of a batch run on two threads...
MIN_SPLIT_ROWS = 8      # ...of at least this many sequences each


def _batch_split(B: int, H: int, G: int, P: int = 0) -> int | None:
    """Where the forward recurrence splits the batch between two threads (rows [0, m) on the
    caller, [m, B) on the helper), or None when each half's steps are too small to pay for the
    two threads' turns at the GIL. P: an LSTM's proj_size, the size of the state (0: H)."""
    m = B // 2
    return m if m >= MIN_SPLIT_ROWS and m * G * H * (P or H) >= MIN_SPLIT_WORK else None


def _time_chunks(T: int, B: int) -> dict[int, int]:
    """{start: stop} of the time chunks whose GEMMs overlap the recurrence."""
    K = max(-(-T // MAX_CHUNKS), -(-MIN_CHUNK_ROWS // B))  # steps per chunk
    return {t: min(t + K, T) for t in range(0, T, K)}


def _project(x2d, w, out2d) -> None:
    """out2d = x2d W_ih^T + b_x: the input projection of some rows (steps x sequences)."""
    np.matmul(x2d, w.W_ih.T, out=out2d)
    if w.b_x is not None:
        out2d += w.b_x


class _Batch:
    """Where each sequence's valid steps are, and how arrays move into and out of kernel layout.

    Without lengths nothing moves and the reverse direction is plain time reversal. With lengths
    the batch is sorted by decreasing length (rows still running at step t are the first
    batch_sizes[t]) and the reverse direction reads step len-1-t at its step t (padding stays
    where it is), so its valid steps form a prefix too.
    """

    def __init__(self, lengths, T: int, B: int):
        self.T = T
        self.batch_sizes = None
        if lengths is None:
            return
        lengths = check_lengths(lengths, B, T)
        self.order = np.argsort(-lengths, kind="stable")     # sorted row j is sequence order[j]
        self.inverse = np.argsort(self.order)
        self.lengths = lengths[self.order]                    # (B,) non-increasing
        t = np.arange(T)[:, None]                             # (T, 1)
        self.valid = t < self.lengths                        # (T, B) the steps each sorted row runs
        self.batch_sizes = [int(n) for n in self.valid.sum(1)]
        self.flip = np.where(self.valid, self.lengths - 1 - t, t)  # (T, B)
        self.cols = np.arange(B)

    def sort(self, a: np.ndarray) -> np.ndarray:
        """Batch axis 1 into length order."""
        return a if self.batch_sizes is None else a[:, self.order]

    def sort_input(self, x: np.ndarray) -> np.ndarray:
        """x (T, B, I) into length order, padding zeroed (a copy): whatever the padding holds, NaN
        included, reaches neither the outputs nor, through the weight gradients' GEMMs, a gradient."""
        if self.batch_sizes is None:
            return x
        x = x[:, self.order]
        x[~self.valid] = 0
        return x

    def unsort(self, a: np.ndarray) -> np.ndarray:
        """Batch axis 1 back to the caller's order."""
        return a if self.batch_sizes is None else a[:, self.inverse]

    def reverse(self, a: np.ndarray) -> np.ndarray:
        """(T, B, ...) between time order and the reverse direction's order (its own inverse)."""
        return a[::-1] if self.batch_sizes is None else a[self.flip, self.cols]

    def last(self, buffer: np.ndarray) -> np.ndarray:
        """(T+1, B, H) kernel buffer -> (B, H): each row's state after its own last step."""
        return buffer[self.T] if self.batch_sizes is None else buffer[self.lengths, self.cols]


class _Recurrent(Module):
    """Stacked, optionally bidirectional recurrence over a kernel; subclasses give the signature."""

    def __init__(self, kernel, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                 bidirectional, dtype, seed, recurrent_dropout, proj_size=0):
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        for name, p in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if isinstance(p, bool) or not (isinstance(p, (int, float, np.integer, np.floating)) and 0 <= p < 1):
                raise ValueError(f"{name} must be a probability in [0, 1), but was given {p!r}.")
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or \
                not 0 <= proj_size < hidden_size:
            raise ValueError(f"proj_size must be an integer from 0 (no projection) to below hidden_size "
                             f"({hidden_size}), but was given {proj_size!r}.")
        self.kernel = kernel
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.proj_size = int(proj_size)
        self.real_hidden_size = self.proj_size or self.hidden_size  # the size of h and of each output
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.num_directions = 2 if bidirectional else 1
        self.dtype = check_float_dtype(dtype)
        self.rng = init.as_generator(seed)
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.real_hidden_size * self.num_directions
            for direction in range(self.num_directions):
                add_weights(self, self._suffix(layer, direction), layer_input, self.hidden_size,
                            kernel.n_gates, self.bias, self.dtype, self.proj_size)
        self.reset_parameters()

    def _suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def reset_parameters(self, init: str = "pytorch", forget_bias: float | None = None) -> None:
        """Re-draw every weight from the layer's Generator: "pytorch" (default), "orthogonal", "glorot"."""
        check_init(self.kernel, self.bias, init, forget_bias)
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                reset_weights(weights_of(self, self._suffix(layer, direction)), self.kernel,
                              self.hidden_size, init, forget_bias, self.rng)

    # ----- forward --------------------------------------------------------------------------

    def _states(self, states, B: int, batch: _Batch, unbatched: bool, grad: bool = False) -> list:
        """Initial states (or their gradients) as kernel-layout (L*D, B, P) arrays for h and
        (L*D, B, H) for c, zeros for None; given without the batch axis when x is unbatched."""
        out = []
        for s, name in zip(states, self.kernel.state_names):
            size = self.hidden_size if name == "c" else self.real_hidden_size
            shape = (self.num_layers * self.num_directions, B, size)
            name = f"d_{name}_n" if grad else f"{name}0"
            if s is None:
                out.append(np.zeros(shape, self.dtype))
            else:
                s = batched_like_x(s, name, 3, unbatched, self.dtype, after=grad)
                check_shape(s, (shape[0], size) if unbatched else shape, name)
                out.append(s[:, None] if unbatched else batch.sort(s))  # (L*D, 1, size) or sorted
        return out

    def _forward(self, x, states, lengths, return_internals: bool):
        x = as_array(x, "x", (2, 3), self.dtype)
        unbatched = x.ndim == 2                               # (T, I): one sequence, no batch axis
        check_shape(x, (None,) * (x.ndim - 1) + (self.input_size,), "x")
        if 0 in x.shape:
            raise ValueError(f"x must hold at least one step of one sequence, but was given shape {x.shape}.")
        if unbatched and lengths is not None:
            raise ValueError(f"lengths needs a batched x, but x is unbatched (one sequence) of shape {x.shape}; "
                             "pass x[:length] instead.")
        if unbatched:
            x = x[:, None]                                    # (T, 1, I)
        elif self.batch_first:
            x = x.transpose(1, 0, 2)                          # (T, B, I)
        T, B, _ = x.shape
        batch = _Batch(lengths, T, B)
        states0 = self._states(states, B, batch, unbatched)
        L = self.num_layers
        keep = self.recording or return_internals
        finals = [np.empty_like(s) for s in states0]         # (L*D, B, P) and (L*D, B, H)
        inputs, masks, caches, internals = [], [], [], []
        chunks, overlap = _time_chunks(T, B), Overlap()
        layer_in = batch.sort_input(x)                        # (T, B, I_l)
        with one_blas_thread(), overlap:                 # an error leaves no job running
            for layer in range(L):
                x2d = layer_in.reshape(T * B, -1)             # (T*B, I_l)
                layer_out = self._forward_layer(layer, x2d, states0, finals, batch, keep, chunks, overlap,
                                                caches, internals if return_internals else None)
                mask = None
                if self.training and self.dropout > 0 and layer < L - 1:
                    mask = self._dropout_mask(layer_out.shape, self.dropout)
                    layer_out = layer_out * mask
                inputs.append(x2d)
                masks.append(mask)
                layer_in = layer_out
        self._save((batch, inputs, masks, caches, x.shape, unbatched))
        out = batch.unsort(layer_in)
        finals = [batch.unsort(f) for f in finals]
        if unbatched:                                         # (T, D*P), (L*D, P), (T, H) internals
            out, finals = out[:, 0], [f[:, 0] for f in finals]
            internals = [{name: a[:, 0] for name, a in arrays.items()} for arrays in internals]
        elif self.batch_first:
            out = np.ascontiguousarray(out.transpose(1, 0, 2))
        out = self._read_only(out)                          # backward may read its memory
        return out, finals, internals

    def _forward_layer(self, layer, x2d, states0, finals, batch, keep, chunks, overlap, caches, internals):
        """Every direction of one layer over x2d (T*B, I_l); returns the layer's output (T, B, D*P)
        and appends the directions' caches (and internals, unless None)."""
        T, B, D = batch.T, x2d.shape[0] // batch.T, self.num_directions
        ws = [prepared(self.kernel, weights_of(self, self._suffix(layer, d))) for d in range(D)]
        split = _batch_split(B, self.hidden_size, self.kernel.n_gates, self.proj_size)
        if split:
            projs, ready = self._project_halves(x2d, ws, overlap), None
        else:
            projs, ready = self._project_all(x2d, ws, chunks, overlap, B)
        outs = []
        for d in range(D):
            k = layer * D + d
            proj = projs[d].reshape(T, B, -1)                 # (T, B, G*H)
            if d:
                overlap.finish()
                proj = batch.reverse(proj)
            mask = self._recurrent_mask(B)
            states = tuple(s[k] for s in states0)
            if split:
                hs, buffers, cache = self._forward_halves(proj, ws[d], states, batch, keep, mask, split, overlap)
            else:
                hs, buffers, cache = self.kernel.forward(proj, ws[d], states, batch.batch_sizes, keep,
                                                         None if d else ready, mask)
            for final, buffer in zip(finals, buffers):
                final[k] = batch.last(buffer)
            outs.append(batch.reverse(hs[1:]) if d else hs[1:])  # (T, B, P)
            caches.append((ws[d], hs, cache, mask))
            if internals is not None:
                internals.append(self._inspect(self.kernel.internals(hs, cache), d, batch))
        return outs[0] if D == 1 else np.concatenate(outs, axis=2)

    def _recurrent_mask(self, B: int):
        """(B, P) dropout mask on the state in the recurrent product, the same at every step (None
        outside training or without recurrent_dropout)."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        return self._dropout_mask((B, self.real_hidden_size), self.recurrent_dropout)

    def _dropout_mask(self, shape, p: float) -> np.ndarray:
        """Inverted dropout: 0 with probability p, else 1 / (1 - p), from the layer's Generator."""
        keep_prob = 1.0 - p
        mask = (self.rng.random(shape, dtype=self.dtype) < keep_prob).astype(self.dtype)
        mask /= keep_prob
        return mask

    def _project_all(self, x2d, ws, chunks, overlap, B):
        """Input projections (T*B, G*H) of every direction, and the forward direction's `ready` hook.

        The first chunk of the forward direction is projected here; its later chunks, then the
        whole reverse direction, go to the helper thread while the recurrence runs.
        """
        projs = [np.empty((x2d.shape[0], w.W_ih.shape[0]), self.dtype) for w in ws]
        pending = {}
        for t0, t1 in chunks.items():
            rows = slice(t0 * B, t1 * B)
            if t0 == 0:
                _project(x2d[rows], ws[0], projs[0][rows])
            else:
                pending[t0] = overlap.submit(_project, x2d[rows], ws[0], projs[0][rows], shareable=True)
        if len(ws) == 2:
            overlap.submit(_project, x2d, ws[1], projs[1], shareable=True)

        def ready(t):
            if t in pending:
                pending.pop(t).join()

        return projs, (ready if pending else None)

    def _project_halves(self, x2d, ws, overlap):
        """Input projections (T*B, G*H) of every direction, the first half of the rows on the
        helper thread and the second on the caller's, both finished on return."""
        projs = [np.empty((x2d.shape[0], w.W_ih.shape[0]), self.dtype) for w in ws]
        half = x2d.shape[0] // 2
        jobs = [overlap.submit(_project, x2d[:half], w, proj[:half], shareable=True) for w, proj in zip(ws, projs)]
        for w, proj in zip(ws, projs):
            _project(x2d[half:], w, proj[half:])
        overlap.wait(jobs)
        return projs

    def _forward_halves(self, proj, w, states, batch, keep, mask, m, overlap):
        """One direction's recurrence with the batch split in two: sequences [0, m) on the
        caller's thread and [m, B) on the helper, each writing its rows of the same buffers (no
        step waits for the other thread). Returns what the kernel's forward returns."""
        T, B, _ = proj.shape
        sizes = batch.batch_sizes                         # non-increasing: each half keeps its prefix form
        out = self.kernel.buffers(T, B, w, keep, np.zeros if sizes is not None and sizes[-1] < B else np.empty)

        def run(rows, part_sizes):
            parts = tuple(None if b is None else b[:, rows] for b in out)
            self.kernel.forward(proj[:, rows], w, tuple(s[rows] for s in states), part_sizes, keep, None,
                                None if mask is None else mask[rows], parts)

        low, high = slice(0, m), slice(m, B)
        job = overlap.submit(run, high, None if sizes is None else [max(n - m, 0) for n in sizes])
        run(low, None if sizes is None else [min(n, m) for n in sizes])  # on an error, _forward's
        job.join()                                                        # `with overlap` waits for the helper
        return self.kernel.outputs(proj, out, keep)

    @staticmethod
    def _inspect(arrays: dict, direction: int, batch: _Batch) -> dict:
        """Kernel-layout (T, B, H) arrays -> fresh arrays in time order and the caller's batch order."""
        return {name: np.array(batch.unsort(batch.reverse(a) if direction else a)) for name, a in arrays.items()}

    # ----- backward -------------------------------------------------------------------------

    def _backward(self, d_out, d_finals):
        batch, inputs, masks, caches, (T, B, _), unbatched = self._restore()
        L, D, P = self.num_layers, self.num_directions, self.real_hidden_size
        d_layer = None
        if d_out is not None:
            d_out = batched_like_x(d_out, "d_out", 3, unbatched, self.dtype, after=True)
            if unbatched:
                check_shape(d_out, (T, D * P), "d_out")
                d_layer = d_out[:, None]                      # (T, 1, D*P)
            else:
                check_shape(d_out, (B, T, D * P) if self.batch_first else (T, B, D * P), "d_out")
                d_layer = batch.sort(d_out.transpose(1, 0, 2) if self.batch_first else d_out)  # (T, B, D*P)
        d_finals = self._states(d_finals, B, batch, unbatched, grad=True)
        d_states0 = [np.empty_like(f) for f in d_finals]
        chunks, overlap = _time_chunks(T, B), Overlap()
        with one_blas_thread(), overlap:                 # an error leaves no job running
            for layer in reversed(range(L)):
                d_layer = self._backward_layer(layer, d_layer, inputs[layer], caches, d_finals, d_states0, batch,
                                               chunks, overlap)
                if layer > 0 and masks[layer - 1] is not None:
                    d_layer *= masks[layer - 1]
        dx, d_states0 = batch.unsort(d_layer), [batch.unsort(s) for s in d_states0]
        if unbatched:                                         # (T, I), (L*D, P) and (L*D, H)
            return dx[:, 0], [s[:, 0] for s in d_states0]
        if self.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, d_states0

    def _backward_layer(self, layer, d_layer, x2d, caches, d_finals, d_states0, batch, chunks, overlap):
        """Every direction of one layer: gradients of its weights and initial states; returns the
        gradient w.r.t. the layer's input, (T, B, I_l). The layer's jobs are finished on return, so
        its buffers are freed before the layer below allocates its own."""
        T, B, D, P = batch.T, x2d.shape[0] // batch.T, self.num_directions, self.real_hidden_size
        d_in = np.empty_like(x2d)                             # (T*B, I_l)
        dx_jobs = []
        params_of = [p for d in range(D) for p in weights_of(self, self._suffix(layer, d)) if p is not None]
        tied = len({id(p) for p in params_of}) < len(params_of)  # one array under two names
        for d in range(D):
            k = layer * D + d
            (w, hs, cache, mask), caches[k] = caches[k], None
            h_prev = hs[:-1] if mask is None else hs[:-1] * mask  # (T, B, P): what the recurrent product read
            params = weights_of(self, self._suffix(layer, d))
            g = None
            if d_layer is not None:
                g = d_layer[..., d * P:(d + 1) * P] if D > 1 else d_layer  # (T, B, P)
                if d:
                    g = batch.reverse(g)
            done = None if d else self._gradients_behind(params, w, x2d, h_prev, d_in, chunks, overlap, dx_jobs, B,
                                                         tied)
            d_x, d_hh, d0, d_proj = self.kernel.backward(g, tuple(f[k] for f in d_finals), w, hs, cache,
                                                         batch.batch_sizes, done, mask)
            for dst, src in zip(d_states0, d0):
                dst[k] = src
            if d_proj is not None:                            # (T, B, P) and (T, B, H), in the same rows
                dhs, ms = d_proj
                overlap.submit(projection_grads, params, dhs.reshape(T * B, P), ms.reshape(T * B, -1), ordered=tied)
            if d:                                             # back to time order, to pair with x
                d_x = [(batch.reverse(block).reshape(T * B, -1), cols) for block, cols in d_x]
                overlap.submit(input_side_grads, params, d_x, x2d, ordered=True)
                overlap.submit(recurrent_side_grads, params, d_hh.reshape(T * B, -1), h_prev.reshape(T * B, P),
                               ordered=tied)
                dx = input_grad(d_x, w.W_ih, np.empty_like(x2d))  # (T*B, I_l)
                overlap.wait(dx_jobs[::-1])                  # from the back, as finish()
                d_in += dx
        overlap.finish()
        return d_in.reshape(T, B, -1)

    def _gradients_behind(self, params, w, x2d, h_prev, d_in, chunks, overlap, dx_jobs, B, tied):
        """The forward direction's `done` hook: once backward has left a time chunk, the helper
        thread adds that chunk's weight gradients and computes its rows of dx (into d_in). The
        input side's gradients are ordered jobs, which the caller may take at the end; with tied
        parameters (`tied`) the recurrent side's too, so that no array gets two writers."""
        G = w.W_ih.shape[0]
        h_prev = h_prev.reshape(-1, h_prev.shape[2])          # (T*B, P)

        def done(t, d_x, d_hh):
            if t not in chunks:
                return
            rows = slice(t * B, chunks[t] * B)
            d_x2d = [(block.reshape(-1, block.shape[2])[rows], cols) for block, cols in d_x]
            d_hh2d = d_hh.reshape(-1, G)[rows]
            overlap.submit(input_side_grads, params, d_x2d, x2d[rows], ordered=True)  # the caller may take these
            overlap.submit(recurrent_side_grads, params, d_hh2d, h_prev[rows], ordered=tied)
            dx_jobs.append(overlap.submit(input_grad, d_x2d, w.W_ih, d_in[rows], shareable=True))

        return done

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                        proj_size=0, recurrent_dropout=0.0)
        parts += [f"{k}={getattr(self, k)}" for k, v in defaults.items() if getattr(self, k) != v]
        return ", ".join(parts)


class RNN(_Recurrent):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, dtype=np.float32, seed=None, recurrent_dropout: float = 0.0):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', but was given {nonlinearity!r}.")
        self.nonlinearity = nonlinearity
        super().__init__(RNNKernel(nonlinearity), input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype, seed, recurrent_dropout)

    def forward(self, x, h0=None, lengths=None, *, return_internals: bool = False):
        """x (T, B, I) -> out (T, B, D*H), h_n (L*D, B, H); internals [{"h"}] per layer and direction.
        Unbatched: x (T, I), h0 (L*D, H) -> out (T, D*H), h_n (L*D, H), internals (T, H)."""
        out, (h_n,), internals = self._forward(x, (h0,), lengths, return_internals)
        return (out, h_n, internals) if return_internals else (out, h_n)

    def backward(self, d_out, d_h_n=None):
        """d_out like out (None: zeros), d_h_n like h_n -> dx like x, dh0 (L*D, B, H)."""
        dx, (dh0,) = self._backward(d_out, (d_h_n,))
        return dx, dh0


class LSTM(_Recurrent):
    """LSTM with PyTorch's gates i, f, g, o: c' = f c + i g, h' = o tanh(c').

    proj_size P > 0 (torch's LSTM with projections, Sak et al. 2014): h' = (o tanh(c')) W_hr^T, so
    h and the outputs have P units while c keeps H; weight_hh is (4H, P) and weight_hr (P, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, dtype=np.float32, seed=None, recurrent_dropout: float = 0.0):
        super().__init__(LSTMKernel, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, recurrent_dropout, proj_size)

    def forward(self, x, hx=None, lengths=None, *, return_internals: bool = False):
        """x (T, B, I), hx (h0 (L*D, B, P), c0 (L*D, B, H)) or None -> out (T, B, D*P), (h_n, c_n),
        P = proj_size or H; internals [{"i", "f", "g", "o", "c", "h"}] per layer and direction.
        Unbatched: x (T, I), h0 (L*D, P), c0 (L*D, H) -> out (T, D*P), h_n and c_n without the batch axis."""
        out, (h_n, c_n), internals = self._forward(x, state_pair(hx, "hx"), lengths, return_internals)
        return (out, (h_n, c_n), internals) if return_internals else (out, (h_n, c_n))

    def backward(self, d_out, d_hx=None):
        """d_out like out (None: zeros), d_hx (dh_n, dc_n) or None -> dx, (dh0, dc0)."""
        dx, (dh0, dc0) = self._backward(d_out, state_pair(d_hx, "d_hx"))
        return dx, (dh0, dc0)


class GRU(_Recurrent):
    """GRU with PyTorch's gates r, z, n: n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1-z) n + z h."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype=np.float32, seed=None, recurrent_dropout: float = 0.0):
        super().__init__(GRUKernel, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, recurrent_dropout)

    def forward(self, x, h0=None, lengths=None, *, return_internals: bool = False):
        """x (T, B, I) -> out (T, B, D*H), h_n (L*D, B, H); internals [{"r", "z", "n", "h"}].
        Unbatched: x (T, I), h0 (L*D, H) -> out (T, D*H), h_n (L*D, H), internals (T, H)."""
        out, (h_n,), internals = self._forward(x, (h0,), lengths, return_internals)
        return (out, h_n, internals) if return_internals else (out, h_n)

    def backward(self, d_out, d_h_n=None):
        """d_out like out (None: zeros), d_h_n like h_n -> dx like x, dh0 (L*D, B, H)."""
        dx, (dh0,) = self._backward(d_out, (d_h_n,))
        return dx, dh0
