"""Weight initialisers. Each returns a new array drawn from an explicit `np.random.Generator`."""
from __future__ import annotations

import numpy as np


def as_generator(seed) -> np.random.Generator:
    """A Generator from an int seed, an existing Generator (used as is), or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise ValueError(f"seed must be an int, a numpy Generator or None, but was given {type(seed).__name__}.")


def uniform(shape, bound: float, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """U(-bound, bound): PyTorch's default for recurrent and linear layers with bound = 1/sqrt(fan)."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def glorot_uniform(shape, rng: np.random.Generator, dtype=np.float32, gain: float = 1.0) -> np.ndarray:
    """Glorot/Xavier uniform for a (fan_out, fan_in) weight: U(-a, a), a = gain*sqrt(6/(fan_in+fan_out))."""
    fan_out, fan_in = shape[0], int(np.prod(shape[1:]))
    a = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, a, rng, dtype)


def orthogonal(shape, rng: np.random.Generator, dtype=np.float32, gain: float = 1.0) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal rows or columns (Saxe et al.), as torch.nn.init.orthogonal_."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make the decomposition unique, so the draw is uniform
    if rows < cols:
        q = q.T
    return (gain * q[:rows, :cols]).astype(dtype)


def orthogonal_blocks(shape, n_blocks: int, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """A stacked recurrent weight (n_blocks*H, H), each gate's (H, H) block orthogonal."""
    rows, cols = shape
    h = rows // n_blocks
    return np.concatenate([orthogonal((h, cols), rng, dtype) for _ in range(n_blocks)], axis=0)


def forget_gate_bias(bias: np.ndarray, hidden_size: int, value: float = 1.0) -> np.ndarray:
    """Set the forget-gate slice of an LSTM bias (gate order i, f, g, o) to `value`, in place."""
    bias[hidden_size:2 * hidden_size] = value
    return bias
