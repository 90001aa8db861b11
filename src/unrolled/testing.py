"""Finite-difference gradient checks for any module with a hand-written backward pass.

    errors = gradcheck(layer, (x, h0), dict(lengths=lengths))

runs `out = layer(*inputs, **kwargs)`, draws a random upstream gradient `g` shaped like every
floating output, calls `layer.backward(*g)` and compares what it returns (for every floating
input) and every parameter's `.grad` with central differences of `L = sum(g * out)`. Work in
float64: cast the module with `.double()` first.
"""
from __future__ import annotations

import numpy as np

from .core.module import Module, no_grad


def _is_float_array(x) -> bool:
    return isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)


def _leaves(tree):
    """Floating arrays of a nested tuple/list structure, depth first."""
    if isinstance(tree, (tuple, list)):
        for t in tree:
            yield from _leaves(t)
    elif _is_float_array(tree):
        yield tree


def _like(tree, rng):
    """Same nested structure with a standard-normal array in place of every floating array."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(_like(t, rng) for t in tree)
    if _is_float_array(tree):
        return rng.standard_normal(tree.shape).astype(tree.dtype)
    return None


def _pairs(inputs, grads, name):
    """(name, input array, its analytic gradient) for every floating input leaf."""
    if isinstance(inputs, (tuple, list)):
        if not isinstance(grads, (tuple, list)) or len(grads) != len(inputs):
            raise AssertionError(f"backward returned {type(grads).__name__} for {name}, expected {len(inputs)} gradients.")
        for i, (x, g) in enumerate(zip(inputs, grads)):
            yield from _pairs(x, g, f"{name}[{i}]")
    elif _is_float_array(inputs):
        if grads is None or np.shape(grads) != inputs.shape:
            raise AssertionError(f"backward returned {None if grads is None else np.shape(grads)} for {name} of shape {inputs.shape}.")
        yield name, inputs, grads


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||), 0 when both vanish."""
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den > 1e-12 else 0.0


def gradcheck(module: Module, inputs: tuple, kwargs: dict | None = None, *, seed: int = 1234,
              eps: float = 1e-6, rtol: float = 1e-6, check_params: bool = True) -> dict[str, float]:
    """Compare hand-written gradients with central differences; returns {name: relative error}.

    Raises AssertionError naming every input or parameter whose relative error exceeds `rtol`.
    """
    kwargs = kwargs or {}
    rng = np.random.default_rng(seed)
    module.train()
    module.zero_grad()
    module.clear_cache()

    out = module(*inputs, **kwargs)
    upstream = _like(out, rng)
    analytic = module.backward(*upstream) if isinstance(out, tuple) else module.backward(upstream)
    if not isinstance(analytic, tuple):
        analytic = (analytic,)
    analytic = analytic[:len(inputs)]  # e.g. an LSTM called with x alone still returns (dx, (dh0, dc0))

    def loss() -> float:
        with no_grad():
            o = module(*inputs, **kwargs)
        return float(sum(np.sum(g * y) for g, y in zip(_leaves(upstream), _leaves(o))))

    def numeric(x: np.ndarray) -> np.ndarray:
        grad = np.zeros_like(x)
        flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: perturb in place
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            gflat[i] = (up - down) / (2 * eps)
        return grad

    errors = {}
    for name, x, g in _pairs(tuple(inputs), analytic, "input"):
        errors[name] = relative_error(g, numeric(x))
    if check_params:
        for name, p in module.named_parameters():
            errors[name] = relative_error(p.grad, numeric(p.data))
    bad = {k: v for k, v in errors.items() if not v < rtol}
    if bad:
        raise AssertionError(f"gradient check failed (rtol {rtol:g}): {bad}")
    return errors
