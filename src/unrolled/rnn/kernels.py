"""The recurrences themselves: pure functions on arrays, one direction of one layer at a time.

Every kernel takes the input projection of all time steps (large GEMMs by the caller, possibly
still running: see the hooks below), runs a tight loop over time for the recurrence only
(preallocated buffers, in-place ufuncs, one `h @ W_hh.T` per step) and returns buffers that the
caller turns into outputs and weight gradients (again large GEMMs over many steps at once).

Shapes: T steps, B sequences, H hidden units, G gates (LSTM 4, GRU 3, RNN 1), P the size of the
state h (H, but for an LSTM with a projection: proj_size).

Memory: the forward kernels activate the gates in place in x_proj (the caller's projection
buffer becomes the gates of the cache), and the backward kernels overwrite those gates with
their gradients, so a training step holds one gate-sized array per layer and direction.

Hooks, for a caller that overlaps its large GEMMs with the loop (see threads.py): forward
kernels call `ready(t)` before step t reads x_proj[t] (so x_proj may be filled in while the loop
runs); backward kernels call `done(t, d_x, d_hh)` once step t's rows of their gradients are
final. d_hh (T, B, G*H) is the gradient w.r.t. the recurrent product; d_x, w.r.t. x_proj, comes
as pieces ((block, its gate rows of W_ih), ...): d_hh itself for LSTM and RNN, d_hh's r and z
columns and a separate n block for GRU.

Variable lengths: the caller sorts the batch by decreasing length and arranges every sequence's
valid steps as a prefix in time, so the sequences still running at step t are the first
`batch_sizes[t]` rows; kernels touch only those rows. Rows past a sequence's end stay zero (their
outputs are padding, their gradients vanish) and the caller reads each final state at the
sequence's own last step. With `batch_sizes=None` every row runs every step.

Recurrent dropout: with `mask` (B, P), the state enters the recurrent product as h * mask, the
same mask at every step (Gal & Ghahramani's variational dropout, Keras's `recurrent_dropout`);
everything else reads h itself. Backward masks the gradient that flows back through that product,
and the caller pairs d_hh with hs[:-1] * mask for dW_hh.

Layouts: `hs` (T+1, B, P) holds h0 in hs[0] and step t's output in hs[t+1], so `hs[:-1]` is the
previous state of every step (what dW_hh needs). Weights are PyTorch's own arrays, gate order
included (LSTM i, f, g, o; GRU r, z, n): nothing is reordered per call, and only W_hh^T (and
an LSTM's W_hr^T) is copied, once per sequence, for the per-step GEMM. The LSTM activates its four
gates with one tanh, since sigmoid(x) = tanh(x / 2) / 2 + 1 / 2.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np


def sigmoid_(a: np.ndarray) -> np.ndarray:
    """In place: a <- 1 / (1 + exp(-a)), computed as (1 + tanh(a / 2)) / 2, which cannot overflow."""
    a *= 0.5
    np.tanh(a, out=a)
    a += 1
    a *= 0.5
    return a


def _steps(batch_sizes, T: int, B: int) -> list[int]:
    return list(batch_sizes) if batch_sizes is not None else [B] * T


def _transposed(W_hh: np.ndarray, T: int) -> np.ndarray:
    """W_hh^T for the per-step `h @ W_hh^T`: a contiguous copy when there are several steps (that
    GEMM runs 10-30% faster on it than on the transposed view), the view for a single step."""
    return np.ascontiguousarray(W_hh.T) if T > 1 else W_hh.T


def _masked(h: np.ndarray, mask, out) -> np.ndarray:
    """h, or h * mask (written to out, a (B, H) buffer) under recurrent dropout: what the recurrent
    product reads."""
    return h if mask is None else np.multiply(h, mask[:len(h)], out=out[:len(h)])


def _alloc(sizes: list[int], B: int):
    """np.zeros when some rows stop early (their padding must read as zero), else np.empty."""
    return np.zeros if sizes[-1] < B else np.empty


# ----- LSTM ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def _lstm_gate_affine(H: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(4H,) scale and shift so that tanh(a * scale) * scale + shift activates i, f, g, o at once:
    sigmoid(x) = tanh(x / 2) / 2 + 1 / 2 on i, f, o and tanh(x) on g (scale 1, shift 0)."""
    scale, shift = np.full((4, H), 0.5, dtype), np.full((4, H), 0.5, dtype)
    scale[2], shift[2] = 1, 0
    for a in (scale, shift):
        a.flags.writeable = False                           # shared between calls
    return scale.reshape(-1), shift.reshape(-1)


def lstm_forward(x_proj, W_hh, h0, c0, batch_sizes=None, keep=True, ready=None, mask=None, out=None, W_hr=None):
    """LSTM over one direction.

    x_proj (T, B, 4H): x W_ih^T + b_ih + b_hh per step, gates i, f, g, o; overwritten with the
    activated gates (zero on padding). W_hh (4H, P). h0 (B, P), c0 (B, H). keep: store what
    backward (or inspection) needs. out: (hs, cs, tanh_c, ms) to write into, as `lstm_buffers`
    makes them. W_hr (P, H) or None: the projection of torch's proj_size, h = (o tanh(c)) W_hr^T
    (without it P = H and h = o tanh(c)). Returns hs (T+1, B, P), cs (T+1, B, H) and the cache
    (gates = x_proj, tanh(c) (T, B, H), cs, ms: o tanh(c) (T, B, H) before the projection, or
    None without one) or None.
    """
    T, B, G = x_proj.shape
    H, P = G // 4, W_hh.shape[1]
    sizes = _steps(batch_sizes, T, B)
    dtype = x_proj.dtype
    hs, cs, tanh_c, ms = out if out is not None else lstm_buffers(T, B, H, P, dtype, keep, W_hr is not None,
                                                                   _alloc(sizes, B))
    hs[0], cs[0] = h0, c0
    rec, ig = np.empty((B, G), dtype), np.empty((B, H), dtype)
    hm = None if mask is None else np.empty_like(mask)      # h * mask
    scale, shift = _lstm_gate_affine(H, dtype)
    W_hh_T = _transposed(W_hh, T)                           # (P, 4H)
    W_hr_T = None if W_hr is None else _transposed(W_hr, T)  # (H, P)
    for t in range(T):
        if ready is not None:
            ready(t)
        n, s = sizes[t], (t if keep else 0)
        x_proj[t, n:] = 0                                   # padding
        a = x_proj[t, :n]                                   # (n, 4H), becomes the gates
        a += np.matmul(_masked(hs[t, :n], mask, hm), W_hh_T, out=rec[:n])
        a *= scale                                          # i, f, o: sigmoid; g: tanh
        np.tanh(a, out=a)
        a *= scale
        a += shift
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c, tc = cs[t + 1, :n], tanh_c[s, :n]                # (n, H)
        np.multiply(f, cs[t, :n], out=c)
        c += np.multiply(i, g, out=ig[:n])
        np.tanh(c, out=tc)
        if W_hr_T is None:
            np.multiply(o, tc, out=hs[t + 1, :n])
        else:
            np.matmul(np.multiply(o, tc, out=ms[s, :n]), W_hr_T, out=hs[t + 1, :n])
    return hs, cs, ((x_proj, tanh_c, cs, ms) if keep else None)


def lstm_buffers(T: int, B: int, H: int, P: int, dtype, keep: bool, projected: bool, alloc=np.empty) -> tuple:
    """hs (T+1, B, P), cs (T+1, B, H), tanh(c) and, when `projected`, o tanh(c) (each T, or 1
    without `keep`, B, H; the latter None without a projection) for `lstm_forward`."""
    steps = T if keep else 1
    return (alloc((T + 1, B, P), dtype), alloc((T + 1, B, H), dtype), alloc((steps, B, H), dtype),
            alloc((steps, B, H), dtype) if projected else None)


def lstm_backward(d_out, dh_n, dc_n, W_hh, cache, batch_sizes=None, done=None, mask=None, W_hr=None):
    """Backward of `lstm_forward`.

    d_out (T, B, P) or None: gradient on each step's output. dh_n (B, P), dc_n (B, H): gradient on
    the final states (given to each row at its own last step). W_hh (4H, P), W_hr (P, H) or None.
    Returns d_gates (T, B, 4H), the gradient w.r.t. the gate pre-activations (so w.r.t. x_proj and
    the recurrent product alike), written over the cache's gates; dh0 (B, P), dc0 (B, H); and with
    a projection dhs (T, B, P), the gradient w.r.t. each step's h (zero on padding), else None.
    """
    gates, tanh_c, cs, _ = cache
    T, B, G = gates.shape
    H, P = G // 4, W_hh.shape[1]
    sizes = _steps(batch_sizes, T, B)
    dtype = gates.dtype
    d_gates = gates
    dh, dc = np.empty((B, P), dtype), np.empty((B, H), dtype)
    dhs = None if W_hr is None else np.zeros((T, B, P), dtype)
    dm = dh if W_hr is None else np.empty((B, H), dtype)    # w.r.t. o tanh(c)
    tmp = np.empty((B, H), dtype)
    d_act, slope, one_minus = (np.empty((B, G), dtype) for _ in range(3))
    g_offset = np.zeros(G, dtype)
    g_offset[2 * H:3 * H] = 1                               # act' = (offset + a)(1 - a)
    for t in reversed(range(T)):
        n, n_next = sizes[t], (sizes[t + 1] if t + 1 < T else 0)
        dh[n_next:n], dc[n_next:n] = dh_n[n_next:n], dc_n[n_next:n]  # rows whose last step is t
        dh_t, dc_t = dh[:n], dc[:n]                         # (n, P), (n, H)
        if d_out is not None:
            dh_t += d_out[t, :n]
        dm_t = dm[:n]                                       # (n, H)
        if W_hr is not None:
            dhs[t, :n] = dh_t
            np.matmul(dh_t, W_hr, out=dm_t)
        a, da, tc = gates[t, :n], d_act[:n], tanh_c[t, :n]  # da: w.r.t. the activated gates
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        di, df, dg, do = da[:, :H], da[:, H:2 * H], da[:, 2 * H:3 * H], da[:, 3 * H:]
        u = tmp[:n]
        np.multiply(tc, tc, out=u)                          # dc += dm * o * (1 - tanh(c)^2)
        np.subtract(1, u, out=u)
        u *= o
        u *= dm_t
        dc_t += u
        np.multiply(dm_t, tc, out=do)
        np.multiply(dc_t, g, out=di)
        np.multiply(dc_t, cs[t, :n], out=df)
        np.multiply(dc_t, i, out=dg)
        dc_t *= f                                           # dc_prev
        p, q = slope[:n], one_minus[:n]                     # (n, 4H) sigmoid' = s (1 - s), tanh' = (1 + g)(1 - g)
        np.add(a, g_offset, out=p)
        np.subtract(1, a, out=q)
        p *= q
        np.multiply(da, p, out=a)                           # the gates' last use: now their gradient
        np.matmul(a, W_hh, out=dh_t)                        # dh_prev
        if mask is not None:
            dh_t *= mask[:n]
        if done is not None:
            done(t, ((d_gates, slice(None)),), d_gates)
    return d_gates, dh, dc, dhs


# ----- GRU -------------------------------------------------------------------------------------

def gru_forward(x_proj, W_hh, b_hn, h0, batch_sizes=None, keep=True, ready=None, mask=None, out=None):
    """GRU over one direction: n = tanh(x_n + r * (W_hn h + b_hn)), h' = (1 - z) n + z h.

    x_proj (T, B, 3H): x W_ih^T + b_ih + [b_hr, b_hz, 0], gates r, z, n; overwritten with the
    activated gates (zero on padding). W_hh (3H, H). b_hn (H,): the recurrent bias of n, inside
    the reset product. out: (hs, hns) to write into, as `gru_buffers` makes them. Returns hs
    (T+1, B, H) and the cache (gates = x_proj, hn (T, B, H) = W_hn h + b_hn) or None.
    """
    T, B, G = x_proj.shape
    H = G // 3
    sizes = _steps(batch_sizes, T, B)
    dtype = x_proj.dtype
    hs, hns = out if out is not None else gru_buffers(T, B, H, dtype, keep, _alloc(sizes, B))
    hs[0] = h0
    rec, rhn = np.empty((B, G), dtype), np.empty((B, H), dtype)  # h W_hh^T, r * hn
    hm = None if mask is None else np.empty_like(mask)      # h * mask
    W_hh_T = _transposed(W_hh, T)                           # (H, 3H)
    for t in range(T):
        if ready is not None:
            ready(t)
        n, s = sizes[t], (t if keep else 0)
        x_proj[t, n:] = 0                                   # padding
        h_prev, a, hn = hs[t, :n], x_proj[t, :n], hns[s, :n]  # a (n, 3H) becomes the gates
        np.matmul(_masked(h_prev, mask, hm), W_hh_T, out=rec[:n])
        a[:, :2 * H] += rec[:n, :2 * H]
        sigmoid_(a[:, :2 * H])                              # r, z
        np.add(rec[:n, 2 * H:], b_hn, out=hn)
        r, z, nn = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        nn += np.multiply(r, hn, out=rhn[:n])
        np.tanh(nn, out=nn)
        h = hs[t + 1, :n]
        np.subtract(h_prev, nn, out=h)
        h *= z
        h += nn
    return hs, ((x_proj, hns) if keep else None)


def gru_buffers(T: int, B: int, H: int, dtype, keep: bool, alloc=np.empty) -> tuple:
    """hs (T+1, B, H) and hn (T, or 1 without `keep`, B, H) for `gru_forward`."""
    return alloc((T + 1, B, H), dtype), alloc((T if keep else 1, B, H), dtype)


def gru_backward(d_out, dh_n, W_hh, hs, cache, batch_sizes=None, done=None, mask=None):
    """Backward of `gru_forward`.

    Returns d_x, the gradient w.r.t. x_proj as pieces ((d_hh[..., :2H], r and z columns),
    (d_n, n columns)); d_hh (T, B, 3H), w.r.t. the recurrent product h W_hh^T + [0, 0, b_hn],
    written over the cache's gates; and dh0 (B, H). d_n (T, B, H), w.r.t. x_n, is written over
    the cache's hn.
    """
    gates, hns = cache
    T, B, G = gates.shape
    H = G // 3
    sizes = _steps(batch_sizes, T, B)
    dtype = gates.dtype
    d_hh, d_n = gates, hns
    dh = np.empty((B, H), dtype)
    tmp, direct = np.empty((B, H), dtype), np.empty((B, H), dtype)
    d_act, slope = np.empty((B, G), dtype), np.empty((B, 2 * H), dtype)
    d_x = ((d_hh[..., :2 * H], slice(0, 2 * H)), (d_n, slice(2 * H, G)))
    for t in reversed(range(T)):
        n, n_next = sizes[t], (sizes[t + 1] if t + 1 < T else 0)
        dh[n_next:n] = dh_n[n_next:n]
        dh_t = dh[:n]                                       # (n, H)
        if d_out is not None:
            dh_t += d_out[t, :n]
        a, h_prev, hn = gates[t, :n], hs[t, :n], hns[t, :n]
        r, z, nn = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        da = d_act[:n]                                      # (n, 3H): w.r.t. r, z (pre-activation) and x_n
        dr, dz, dn = da[:, :H], da[:, H:2 * H], da[:, 2 * H:]
        u = tmp[:n]
        np.subtract(h_prev, nn, out=dz)                     # h = n + z (h_prev - n)
        dz *= dh_t
        np.subtract(1, z, out=dn)
        dn *= dh_t
        np.multiply(nn, nn, out=u)                          # through tanh
        np.subtract(1, u, out=u)
        dn *= u
        np.multiply(dn, hn, out=dr)
        s = slope[:n]                                       # (n, 2H) sigmoid' of r, z
        np.subtract(1, a[:, :2 * H], out=s)
        s *= a[:, :2 * H]
        np.multiply(dh_t, z, out=direct[:n])                # the direct path z * h_prev
        np.multiply(dn, r, out=nn)                          # the gates' last use: now d_hh
        np.multiply(da[:, :2 * H], s, out=a[:, :2 * H])
        hn[...] = dn
        np.matmul(a, W_hh, out=dh_t)
        if mask is not None:
            dh_t *= mask[:n]
        dh_t += direct[:n]
        if done is not None:
            done(t, d_x, d_hh)
    return d_x, d_hh, dh


# ----- Elman RNN -------------------------------------------------------------------------------

def rnn_forward(x_proj, W_hh, h0, nonlinearity="tanh", batch_sizes=None, ready=None, mask=None, out=None):
    """h' = act(x_proj + h W_hh^T), act tanh or relu. x_proj (T, B, H). out: (hs,) to write into.
    Returns hs (T+1, B, H)."""
    T, B, H = x_proj.shape
    sizes = _steps(batch_sizes, T, B)
    (hs,) = out if out is not None else rnn_buffers(T, B, H, x_proj.dtype, True, _alloc(sizes, B))
    hs[0] = h0
    W_hh_T = _transposed(W_hh, T)                           # (H, H)
    hm = None if mask is None else np.empty_like(mask)      # h * mask
    for t in range(T):
        if ready is not None:
            ready(t)
        n = sizes[t]
        h = hs[t + 1, :n]                                   # (n, H)
        np.matmul(_masked(hs[t, :n], mask, hm), W_hh_T, out=h)
        h += x_proj[t, :n]
        if nonlinearity == "tanh":
            np.tanh(h, out=h)
        else:
            np.maximum(h, 0, out=h)
    return hs


def rnn_buffers(T: int, B: int, H: int, dtype, keep: bool, alloc=np.empty) -> tuple:
    """hs (T+1, B, H) for `rnn_forward` (which keeps nothing else)."""
    return (alloc((T + 1, B, H), dtype),)


def rnn_backward(d_out, dh_n, W_hh, hs, nonlinearity="tanh", batch_sizes=None, done=None, mask=None):
    """Backward of `rnn_forward`: d_pre (T, B, H) w.r.t. the pre-activations, and dh0 (B, H)."""
    T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    sizes = _steps(batch_sizes, T, B)
    d_pre = _alloc(sizes, B)((T, B, H), hs.dtype)
    dh = np.empty((B, H), hs.dtype)
    for t in reversed(range(T)):
        n, n_next = sizes[t], (sizes[t + 1] if t + 1 < T else 0)
        dh[n_next:n] = dh_n[n_next:n]
        dh_t, h, da = dh[:n], hs[t + 1, :n], d_pre[t, :n]   # (n, H)
        if d_out is not None:
            dh_t += d_out[t, :n]
        if nonlinearity == "tanh":
            np.multiply(h, h, out=da)
            np.subtract(1, da, out=da)
            da *= dh_t
        else:
            np.multiply(dh_t, h > 0, out=da)
        np.matmul(da, W_hh, out=dh_t)
        if mask is not None:
            dh_t *= mask[:n]
        if done is not None:
            done(t, ((d_pre, slice(None)),), d_pre)
    return d_pre, dh


# ----- adapters: one interface over the three kernels, used by the cells and the layers ---------
# Each kernel class: `prepare` the weights; `buffers` for what forward writes (each (T or T+1 or 1,
# B, state size)), which `forward` fills (or calls on parts of the batch fill, read back by
# `outputs`); `backward` returns the gradient pieces w.r.t. x_proj, the gradient w.r.t. the
# recurrent product, the initial states' gradients and, for a projected LSTM, (dhs, ms), whose
# product dhs^T ms over every step is weight_hr's gradient (else None).

class Weights(NamedTuple):
    """One set of recurrent weights as the kernels use them: PyTorch's arrays and summed biases."""
    W_ih: np.ndarray            # (G*H, I)
    W_hh: np.ndarray            # (G*H, P), P = H but for a projected LSTM
    b_x: np.ndarray | None      # (G*H,) bias added to the input projection
    b_hn: np.ndarray | None     # (H,) GRU's recurrent bias of n
    W_hr: np.ndarray | None = None  # (P, H) LSTM's projection (torch's proj_size)


class LSTMKernel:
    n_gates, state_names = 4, ("h", "c")

    @staticmethod
    def prepare(W_ih, W_hh, b_ih, b_hh) -> Weights:
        return Weights(W_ih, W_hh, None if b_ih is None else b_ih + b_hh, None)

    @staticmethod
    def buffers(T, B, w: Weights, keep, alloc=np.empty) -> tuple:
        G, P = w.W_hh.shape
        return lstm_buffers(T, B, G // 4, P, w.W_hh.dtype, keep, w.W_hr is not None, alloc)

    @staticmethod
    def forward(x_proj, w: Weights, states, batch_sizes, keep, ready=None, mask=None, out=None):
        hs, cs, cache = lstm_forward(x_proj, w.W_hh, *states, batch_sizes, keep, ready, mask, out, w.W_hr)
        return hs, (hs, cs), cache

    @staticmethod
    def outputs(x_proj, out, keep):
        hs, cs, tanh_c, ms = out
        return hs, (hs, cs), ((x_proj, tanh_c, cs, ms) if keep else None)

    @staticmethod
    def backward(d_out, d_finals, w: Weights, hs, cache, batch_sizes, done=None, mask=None):
        d_gates, dh0, dc0, dhs = lstm_backward(d_out, *d_finals, w.W_hh, cache, batch_sizes, done, mask, w.W_hr)
        return ((d_gates, slice(None)),), d_gates, (dh0, dc0), (None if dhs is None else (dhs, cache[3]))

    @staticmethod
    def internals(hs, cache) -> dict:
        gates, _, cs, _ = cache
        H = cs.shape[2]
        return {"i": gates[..., :H], "f": gates[..., H:2 * H], "g": gates[..., 2 * H:3 * H],
                "o": gates[..., 3 * H:], "c": cs[1:], "h": hs[1:]}


class GRUKernel:
    n_gates, state_names = 3, ("h",)

    @staticmethod
    def prepare(W_ih, W_hh, b_ih, b_hh) -> Weights:
        H = W_hh.shape[1]
        if b_ih is None:
            return Weights(W_ih, W_hh, None, np.zeros(H, W_hh.dtype))
        b_x = b_ih.copy()
        b_x[:2 * H] += b_hh[:2 * H]
        return Weights(W_ih, W_hh, b_x, b_hh[2 * H:])

    @staticmethod
    def buffers(T, B, w: Weights, keep, alloc=np.empty) -> tuple:
        return gru_buffers(T, B, w.W_hh.shape[1], w.W_hh.dtype, keep, alloc)

    @staticmethod
    def forward(x_proj, w: Weights, states, batch_sizes, keep, ready=None, mask=None, out=None):
        hs, cache = gru_forward(x_proj, w.W_hh, w.b_hn, states[0], batch_sizes, keep, ready, mask, out)
        return hs, (hs,), cache

    @staticmethod
    def outputs(x_proj, out, keep):
        hs, hns = out
        return hs, (hs,), ((x_proj, hns) if keep else None)

    @staticmethod
    def backward(d_out, d_finals, w: Weights, hs, cache, batch_sizes, done=None, mask=None):
        d_x, d_hh, dh0 = gru_backward(d_out, d_finals[0], w.W_hh, hs, cache, batch_sizes, done, mask)
        return d_x, d_hh, (dh0,), None

    @staticmethod
    def internals(hs, cache) -> dict:
        gates, _ = cache
        H = hs.shape[2]
        return {"r": gates[..., :H], "z": gates[..., H:2 * H], "n": gates[..., 2 * H:], "h": hs[1:]}


class RNNKernel:
    n_gates, state_names = 1, ("h",)

    def __init__(self, nonlinearity: str):
        self.nonlinearity = nonlinearity

    @staticmethod
    def prepare(W_ih, W_hh, b_ih, b_hh) -> Weights:
        return Weights(W_ih, W_hh, None if b_ih is None else b_ih + b_hh, None)

    @staticmethod
    def buffers(T, B, w: Weights, keep, alloc=np.empty) -> tuple:
        return rnn_buffers(T, B, w.W_hh.shape[1], w.W_hh.dtype, keep, alloc)

    def forward(self, x_proj, w: Weights, states, batch_sizes, keep, ready=None, mask=None, out=None):
        hs = rnn_forward(x_proj, w.W_hh, states[0], self.nonlinearity, batch_sizes, ready, mask, out)
        return hs, (hs,), None

    @staticmethod
    def outputs(x_proj, out, keep):
        return out[0], out, None

    def backward(self, d_out, d_finals, w: Weights, hs, cache, batch_sizes, done=None, mask=None):
        d_pre, dh0 = rnn_backward(d_out, d_finals[0], w.W_hh, hs, self.nonlinearity, batch_sizes, done, mask)
        return ((d_pre, slice(None)),), d_pre, (dh0,), None

    @staticmethod
    def internals(hs, cache) -> dict:
        return {"h": hs[1:]}
