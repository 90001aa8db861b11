"""One time step: RNNCell, LSTMCell, GRUCell, as torch.nn's, plus the weight handling they share
with the full layers (creating PyTorch-named parameters, initialising them, and folding kernel
gradients back into PyTorch's layout).

A cell is the kernel of its layer run for T = 1:

    h1, c1 = cell(x, (h, c))            # x (B, I), states (B, H); or unbatched: x (I,), states (H,)
    dx, (dh, dc) = cell.backward(dh1, dc1)
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import as_array, check_float_dtype, check_shape, check_sizes, counted
from ..core.module import Module, Parameter
from .kernels import GRUKernel, LSTMKernel, RNNKernel, Weights

INITS = ("pytorch", "orthogonal", "glorot")


# ----- weights shared by cells and layers -------------------------------------------------------

def add_weights(owner: Module, suffix: str, input_size: int, hidden_size: int, n_gates: int,
                bias: bool, dtype, proj_size: int = 0) -> None:
    """Set weight_ih{suffix}, weight_hh{suffix}, the two biases and (an LSTM with proj_size > 0)
    weight_hr{suffix} (proj_size, hidden_size) on `owner`, in PyTorch's order."""
    G = n_gates * hidden_size
    setattr(owner, f"weight_ih{suffix}", Parameter(np.zeros((G, input_size), dtype)))
    setattr(owner, f"weight_hh{suffix}", Parameter(np.zeros((G, proj_size or hidden_size), dtype)))
    if bias:
        setattr(owner, f"bias_ih{suffix}", Parameter(np.zeros(G, dtype)))
        setattr(owner, f"bias_hh{suffix}", Parameter(np.zeros(G, dtype)))
    if proj_size:
        setattr(owner, f"weight_hr{suffix}", Parameter(np.zeros((proj_size, hidden_size), dtype)))


def weights_of(owner: Module, suffix: str) -> tuple:
    """(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr) Parameters of one set; biases None
    without bias, weight_hr None without a projection."""
    return tuple(getattr(owner, f"{name}{suffix}", None)
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))


def prepared(kernel, params) -> Weights:
    w_ih, w_hh, b_ih, b_hh, w_hr = (None if p is None else p.data for p in params)
    w = kernel.prepare(w_ih, w_hh, b_ih, b_hh)
    return w if w_hr is None else w._replace(W_hr=w_hr)


def reset_weights(params, kernel, hidden_size: int, init_name: str, forget_bias, rng) -> None:
    """Initialise one weight set in place.

    "pytorch": every tensor U(-1/sqrt(H), 1/sqrt(H)). "glorot": Glorot-uniform weights, zero
    biases. "orthogonal": Glorot-uniform input weights, each gate's (H, P) recurrent block
    orthogonal, zero biases. An LSTM's projection weight_hr is Glorot-uniform under both. forget_bias (LSTM only): the forget-gate slice of bias_ih set to it
    and that of bias_hh to 0, so the forget gate's total bias is exactly `forget_bias`.
    """
    w_ih, w_hh, b_ih, b_hh, w_hr = params
    dtype = w_ih.data.dtype
    if init_name == "pytorch":
        bound = 1.0 / np.sqrt(hidden_size)
        for p in params:
            if p is not None:
                p.data[...] = init.uniform(p.shape, bound, rng, dtype)
    else:
        w_ih.data[...] = init.glorot_uniform(w_ih.shape, rng, dtype)
        if init_name == "orthogonal":
            w_hh.data[...] = init.orthogonal_blocks(w_hh.shape, kernel.n_gates, rng, dtype)
        else:
            w_hh.data[...] = init.glorot_uniform(w_hh.shape, rng, dtype)
        for b in (b_ih, b_hh):
            if b is not None:
                b.data[...] = 0
        if w_hr is not None:
            w_hr.data[...] = init.glorot_uniform(w_hr.shape, rng, dtype)
    if forget_bias is not None:
        init.forget_gate_bias(b_ih.data, hidden_size, forget_bias)
        init.forget_gate_bias(b_hh.data, hidden_size, 0.0)


def check_init(kernel, bias: bool, init_name: str, forget_bias) -> None:
    if init_name not in INITS:
        raise ValueError(f"init must be one of {INITS}, but was given {init_name!r}.")
    if forget_bias is not None and not (kernel is LSTMKernel and bias):
        raise ValueError("forget_bias needs an LSTM with bias=True, but was given for a layer without a forget-gate bias.")


def accumulate_grads(params, d_x, d_hh, x, h_prev) -> None:
    """Add one weight set's gradients over N rows (steps x sequences), one GEMM per weight block.

    d_x: the gradient w.r.t. the input projection as pieces ((rows (N, k), gate columns), ...),
    rows paired with x (N, I). d_hh (N, G*H): w.r.t. the recurrent product, rows paired with
    h_prev (N, P).
    """
    input_side_grads(params, d_x, x)
    recurrent_side_grads(params, d_hh, h_prev)


def input_side_grads(params, d_x, x) -> None:
    """The input half of `accumulate_grads`: weight_ih's and bias_ih's gradients."""
    w_ih, b_ih = params[0], params[2]
    for block, cols in d_x:
        w_ih.grad[cols] += block.T @ x                      # (k, I)
        if b_ih is not None:
            b_ih.grad[cols] += block.sum(0)


def recurrent_side_grads(params, d_hh, h_prev) -> None:
    """The recurrent half of `accumulate_grads`: weight_hh's and bias_hh's gradients."""
    w_hh, b_hh = params[1], params[3]
    w_hh.grad += d_hh.T @ h_prev                            # (G*H, P)
    if b_hh is not None:
        b_hh.grad += d_hh.sum(0)


def projection_grads(params, d_h, m) -> None:
    """A projected LSTM's weight_hr gradient over N rows: d_h (N, P), the gradient w.r.t. h, paired
    with m (N, H), o tanh(c) before the projection."""
    params[4].grad += d_h.T @ m                             # (P, H)


def input_grad(d_x, W_ih, out) -> np.ndarray:
    """out (N, I) = dL/dx = sum over the pieces of d_x (see accumulate_grads) of block @ W_ih[cols]."""
    (block, cols), *rest = d_x
    np.matmul(block, W_ih[cols], out=out)
    for block, cols in rest:
        out += block @ W_ih[cols]
    return out


def batched_like_x(a, name: str, ndim: int, unbatched: bool, dtype, after: bool = False) -> np.ndarray:
    """A state, or a gradient given to backward (`after`), as an array with x's batching: `ndim`
    dimensions with the batch axis, ndim - 1 without it when x is unbatched."""
    a = as_array(a, name, (ndim - 1, ndim), dtype)
    want = ndim - 1 if unbatched else ndim
    if a.ndim != want:
        axis, kind = ("no batch axis", "unbatched") if unbatched else ("with a batch axis", "batched")
        whose = "the forward's x was" if after else "x is"
        raise ValueError(f"{name} must have {counted(want, 'dimension')} ({axis}) as {whose} {kind}, "
                         f"but was given shape {a.shape}.")
    return a


# ----- the cells --------------------------------------------------------------------------------

class _Cell(Module):
    """One step of a recurrence; subclasses pick the kernel and the public call signature."""

    def __init__(self, kernel, input_size, hidden_size, bias, dtype, seed):
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        self.kernel = kernel
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        self.dtype = check_float_dtype(dtype)
        self.rng = init.as_generator(seed)
        add_weights(self, "", self.input_size, self.hidden_size, kernel.n_gates, self.bias, self.dtype)
        self.reset_parameters()

    def reset_parameters(self, init: str = "pytorch", forget_bias: float | None = None) -> None:
        check_init(self.kernel, self.bias, init, forget_bias)
        reset_weights(weights_of(self, ""), self.kernel, self.hidden_size, init, forget_bias, self.rng)

    def _states(self, states, B: int, unbatched: bool, grad: bool = False) -> tuple:
        """States (or, with grad, their gradients dh1, dc1) as (B, H) arrays, zeros for None;
        given without the batch axis, (H,), when x is unbatched."""
        out = []
        for s, name in zip(states, self.kernel.state_names):
            name = f"d{name}1" if grad else name
            if s is None:
                out.append(np.zeros((B, self.hidden_size), self.dtype))
            else:
                s = batched_like_x(s, name, 2, unbatched, self.dtype, after=grad)
                check_shape(s, (self.hidden_size,) if unbatched else (B, self.hidden_size), name)
                out.append(s[None] if unbatched else s)     # (B, H)
        return tuple(out)

    def _step(self, x, states) -> tuple:
        x = as_array(x, "x", (1, 2), self.dtype)
        unbatched = x.ndim == 1                             # (I,): one sequence, no batch axis
        check_shape(x, (self.input_size,) if unbatched else (None, self.input_size), "x")
        if unbatched:
            x = x[None]                                     # (1, I)
        states = self._states(states, x.shape[0], unbatched)
        w = prepared(self.kernel, weights_of(self, ""))
        proj = x @ w.W_ih.T                                 # (B, G*H)
        if w.b_x is not None:
            proj += w.b_x
        hs, buffers, cache = self.kernel.forward(proj[None], w, states, None, self.recording)
        self._save((x, w, hs, cache, unbatched))
        return tuple(b[1, 0] if unbatched else b[1] for b in buffers)

    def _step_backward(self, d_states) -> tuple:
        x, w, hs, cache, unbatched = self._restore()
        d_states = self._states(d_states, x.shape[0], unbatched, grad=True)
        d_x, d_hh, d_states0, _ = self.kernel.backward(None, d_states, w, hs, cache, None)
        d_x = [(block[0], cols) for block, cols in d_x]     # the one step
        accumulate_grads(weights_of(self, ""), d_x, d_hh[0], x, hs[0])
        dx = input_grad(d_x, w.W_ih, np.empty_like(x))      # (B, I)
        if unbatched:
            return dx[0], tuple(d[0] for d in d_states0)
        return dx, d_states0

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_Cell):
    """h1 = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 dtype=np.float32, seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', but was given {nonlinearity!r}.")
        self.nonlinearity = nonlinearity
        super().__init__(RNNKernel(nonlinearity), input_size, hidden_size, bias, dtype, seed)

    def forward(self, x, h=None) -> np.ndarray:
        return self._step(x, (h,))[0]

    def backward(self, dh1) -> tuple:
        dx, (dh,) = self._step_backward((dh1,))
        return dx, dh


class LSTMCell(_Cell):
    """(h1, c1) from (x, (h, c)), gates i, f, g, o as torch.nn.LSTMCell."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=np.float32, seed=None):
        super().__init__(LSTMKernel, input_size, hidden_size, bias, dtype, seed)

    def forward(self, x, hx=None) -> tuple:
        return self._step(x, state_pair(hx, "hx"))

    def backward(self, dh1, dc1=None) -> tuple:
        dx, (dh, dc) = self._step_backward((dh1, dc1))
        return dx, (dh, dc)


class GRUCell(_Cell):
    """h1 from (x, h), gates r, z, n as torch.nn.GRUCell."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=np.float32, seed=None):
        super().__init__(GRUKernel, input_size, hidden_size, bias, dtype, seed)

    def forward(self, x, h=None) -> np.ndarray:
        return self._step(x, (h,))[0]

    def backward(self, dh1) -> tuple:
        dx, (dh,) = self._step_backward((dh1,))
        return dx, dh


def state_pair(hx, name: str) -> tuple:
    """An LSTM state argument: None or an (h, c) pair, either of which may be None (zeros)."""
    if hx is None:
        return None, None
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise ValueError(f"{name} must be a pair (h, c) or None, but was given {type(hx).__name__}.")
    return tuple(hx)
