"""Pure functions: activations, softmax and the losses, each forward beside its backward.

Activations come in pairs, `f(x) -> y` and `f_backward(dy, saved) -> dx`, where `saved` is the
forward's output or input (whichever the derivative is cheapest from). Losses return
`(loss, dinput)` in one call: the loss reduced as asked ('mean', 'sum' or 'none') and its gradient
for an upstream gradient of one, so a pipeline gets the value and the gradient together.

Everything is numerically stable for any finite input: softmax and cross-entropy shift by the
maximum, sigmoid never exponentiates a positive number, BCE uses the log-sum-exp form, and the
exact GELU uses an erf/erfc accurate to double precision (NumPy has none).
"""
from __future__ import annotations

import numpy as np

REDUCTIONS = ("mean", "sum", "none")


def as_float_array(x, name: str, dtype=None, min_ndim: int = 0) -> np.ndarray:
    """`x` as a floating ndarray with at least `min_ndim` dimensions (and exactly `dtype` if given)."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "detach"):
            raise ValueError(f"{name} must be a NumPy array, but was given a {type(x).__name__}; call .numpy() first.")
        x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be a floating-point array, but was given dtype {x.dtype}.")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name} like the layer's weights, but was given {x.dtype}.")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), but was given shape {x.shape}.")
    return x


# ----- erf and erfc (Cephes ndtr.c rational approximations, S. L. Moshier) ------------------

_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)
_ERFC_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
           6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_ERFC_S = (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
           1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)


def _poly(x: np.ndarray, coefficients) -> np.ndarray:
    """Horner's rule, highest power first."""
    out = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        out *= x
        out += c
    return out


def _exp_minus_square(a: np.ndarray) -> np.ndarray:
    """exp(-a*a) without the rounding error of a*a: a = m + f with m a multiple of 1/128, so m*m is exact."""
    m = np.floor(a * 128.0 + 0.5) / 128.0
    f = a - m
    return np.exp(-m * m) * np.exp(-(2.0 * m * f + f * f))


def _erfc_tail(a: np.ndarray) -> np.ndarray:
    """erfc(a) for a >= 1, in float64; 0 once it underflows."""
    out = np.zeros_like(a)
    mid, far = (a < 8.0), (a >= 8.0) & (a < 27.3)
    for sel, p, q in ((mid, _ERFC_P, _ERFC_Q), (far, _ERFC_R, _ERFC_S)):
        t = a[sel]
        out[sel] = _exp_minus_square(t) * _poly(t, p) / _poly(t, q)
    return out


def erf(x) -> np.ndarray:
    """The error function, elementwise, to about one unit in the last place of a double."""
    x = np.asarray(x)
    a = np.abs(x.astype(np.float64))
    out = np.empty_like(a)
    near = a < 1.0
    z = a[near] * a[near]
    out[near] = a[near] * _poly(z, _ERF_T) / _poly(z, _ERF_U)
    out[~near] = 1.0 - _erfc_tail(a[~near])
    out[np.isnan(a)] = np.nan
    return np.copysign(out, x).astype(np.result_type(x.dtype, np.float32))


def erfc(x) -> np.ndarray:
    """The complementary error function 1 - erf(x), accurate in relative terms far into the tail."""
    x = np.asarray(x)
    xd = x.astype(np.float64)
    a = np.abs(xd)
    out = np.empty_like(a)
    near = a < 1.0
    z = a[near] * a[near]
    out[near] = 1.0 - xd[near] * _poly(z, _ERF_T) / _poly(z, _ERF_U)
    tail = _erfc_tail(a[~near])
    out[~near] = np.where(xd[~near] < 0, 2.0 - tail, tail)
    out[np.isnan(a)] = np.nan
    return out.astype(np.result_type(x.dtype, np.float32))


# ----- elementwise activations --------------------------------------------------------------

def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    return dy * (1 - y * y)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), computed from e^-|x| so that nothing overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    return dy * y * (1 - y)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    return dy * (x > 0)


_SQRT_HALF = 0.7071067811865476      # 1/sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327   # 1/sqrt(2 pi)
_SQRT_2_OVER_PI = 0.7978845608028654  # sqrt(2/pi)
_GELU_CUBIC = 0.044715
GELU_APPROXIMATIONS = ("none", "tanh")


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = erfc(-x / sqrt 2) / 2, accurate in relative terms even where it is tiny."""
    return (0.5 * erfc(-x * _SQRT_HALF)).astype(x.dtype, copy=False)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x))


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU(x) = x * Phi(x): exact with 'none', Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))/2 with 'tanh'."""
    if approximate == "none":
        return x * normal_cdf(x)
    return 0.5 * x * (1 + _gelu_tanh(x))


def gelu_backward(dy: np.ndarray, x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "none":
        return dy * (normal_cdf(x) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x))
    t = _gelu_tanh(x)
    du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x * x)             # d(tanh argument)/dx
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)


# ----- softmax and log-softmax --------------------------------------------------------------

def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dx = y * (dy - <dy, y>) along `axis`."""
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z


def log_softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dx = dy - softmax(x) * sum(dy) along `axis`, with softmax(x) = exp(y)."""
    return dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)


# ----- losses: each returns (loss, gradient for an upstream gradient of one) -----------------

def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, but was given {reduction!r}.")
    return reduction


def _reduce(loss: np.ndarray, grad: np.ndarray, reduction: str, count: float | None = None):
    """Reduce elementwise losses and scale the elementwise gradient to match.

    'mean' divides by `count` (default: every element; a total weight for a weighted mean); a mean
    over nothing is NaN, as in torch.
    """
    if reduction == "none":
        return loss, grad
    total = loss.sum(dtype=loss.dtype)
    if reduction == "sum":
        return np.asarray(total), grad
    n = loss.size if count is None else count
    if n:
        grad /= n
    return np.asarray(total / n if n else np.nan, dtype=loss.dtype), grad


def _real_target(target, input: np.ndarray, name: str = "target") -> np.ndarray:
    """A real-valued target of exactly the input's shape, in the input's dtype."""
    target = np.asarray(target)
    if not (np.issubdtype(target.dtype, np.number) or target.dtype == bool) or np.iscomplexobj(target):
        raise ValueError(f"{name} must hold real numbers, but was given dtype {target.dtype}.")
    if target.shape != input.shape:
        raise ValueError(f"{name} must have the input's shape {input.shape}, but was given shape {target.shape}.")
    return target.astype(input.dtype, copy=False)


def check_class_weight(weight, classes: int | None = None) -> np.ndarray:
    """A per-class rescaling weight (C,): finite, non-negative floats (C = `classes` if given)."""
    weight = as_float_array(weight, "weight")
    if weight.ndim != 1 or (classes is not None and weight.shape != (classes,)):
        want = "(C,)" if classes is None else f"({classes},)"
        raise ValueError(f"weight must have shape {want}, one number per class, but was given shape {weight.shape}.")
    bad = np.flatnonzero(~(np.isfinite(weight) & (weight >= 0)))
    if bad.size:
        raise ValueError(f"weight must hold finite non-negative numbers, but was given {weight[bad[0]]} for class {bad[0]}.")
    return weight


def cross_entropy(logits, target, weight=None, *, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Fused log-softmax + negative log-likelihood over the last axis, as torch's cross_entropy.

    logits (..., C) floating; target (...) integer class indices in 0..C-1 or `ignore_index`;
    weight (C,) a rescaling weight per class, or None for ones (cast to the logits' dtype).
    With log p = log_softmax(logits) and y the target, per element:
        loss = (1-eps) w[y] (-log p[y]) + (eps/C) sum_c w[c] (-log p[c]),  zero where ignored;
    'mean' divides the sum by the weights of the targets not ignored, sum w[y] (their number
    without `weight`; NaN if that is zero, as torch). Returns (loss, dlogits) with
        dlogits = r * (a softmax - (1-eps) w[y] onehot - (eps/C) w),  a = (1-eps) w[y] + (eps/C) sum_c w[c],
    where r is 1, 1/sum w[y] or 0 per row (a = 1 without `weight`).
    """
    logits = as_float_array(logits, "logits", min_ndim=1)
    check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], but was given {label_smoothing}.")
    target = np.asarray(target)
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"target must hold integer class indices, but was given dtype {target.dtype}.")
    if target.shape != logits.shape[:-1]:
        raise ValueError(f"target must have shape {logits.shape[:-1]} (logits' shape without the class axis), "
                         f"but was given shape {target.shape}.")
    C = logits.shape[-1]
    eps = label_smoothing
    keep = target != ignore_index                                     # (...)
    bad = keep & ((target < 0) | (target >= C))
    if bad.any():
        raise ValueError(f"target class indices must lie in 0..{C - 1} (or be ignore_index={ignore_index}), "
                         f"but {target[bad].flat[0]} was given.")
    safe = np.where(keep, target, 0)[..., None]                       # (..., 1)

    z = logits - logits.max(axis=-1, keepdims=True)                   # (..., C), max 0
    z_target = np.take_along_axis(z, safe, -1)                        # (..., 1)
    if weight is None:
        w_target, a = 1, 1
        z_smooth = z.sum(axis=-1, keepdims=True) if eps else 0        # (..., 1)
    else:
        weight = check_class_weight(weight, C).astype(logits.dtype, copy=False)   # (C,)
        w_target = weight[safe]                                       # (..., 1)
        a = (1 - eps) * w_target + (eps / C) * weight.sum()           # (..., 1)
        z_smooth = z @ weight[:, None] if eps else 0                  # (..., 1): sum_c w[c] z[c]
    p = np.exp(z, out=z)                                              # (..., C): z is spent, p becomes the gradient
    s = p.sum(axis=-1, keepdims=True)                                 # (..., 1), in [1, C]
    # (1-eps) w[y] (log s - z_target) + (eps/C) sum_c w[c] (log s - z[c])
    loss = (a * np.log(s) - (1 - eps) * w_target * z_target - (eps / C) * z_smooth)[..., 0]
    loss = np.where(keep, loss, 0).astype(logits.dtype, copy=False)

    p /= s                                                            # softmax
    if weight is not None:
        p *= a
    np.put_along_axis(p, safe, np.take_along_axis(p, safe, -1) - (1 - eps) * w_target, -1)
    if eps:
        p -= (eps / C) * (1 if weight is None else weight)
    p[~keep] = 0
    if weight is None:
        count = int(keep.sum())
    else:
        count = w_target[..., 0][keep].sum()                          # the weights of the targets kept
        if reduction == "mean" and not count:
            p[keep] = np.nan                                          # 0/0, as torch's gradient
    return _reduce(loss, p, reduction, count=count)


def bce_with_logits(logits, target, pos_weight=None, reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Binary cross-entropy on logits, as torch's binary_cross_entropy_with_logits.

    loss = (1-t) x + (1 + (pw-1) t) * softplus(-x), with softplus(-x) = max(-x, 0) + log1p(e^-|x|)
    so that no exponential overflows; d/dx = (1-t) - (1 + (pw-1) t) * sigmoid(-x).
    """
    x = as_float_array(logits, "logits")
    t = _real_target(target, x)
    check_reduction(reduction)
    softplus = np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))
    if pos_weight is None:
        weight = 1
    else:
        pw = np.asarray(pos_weight, dtype=x.dtype)
        try:
            shape = np.broadcast_shapes(pw.shape, x.shape)
        except ValueError:
            shape = None
        if shape != x.shape:
            raise ValueError(f"pos_weight must broadcast to the logits' shape {x.shape}, but was given shape {pw.shape}.")
        weight = 1 + (pw - 1) * t
    loss = (1 - t) * x + weight * softplus
    grad = (1 - t) - weight * sigmoid(-x)
    return _reduce(loss.astype(x.dtype, copy=False), grad.astype(x.dtype, copy=False), reduction)


def mse_loss(input, target, reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    x = as_float_array(input, "input")
    d = x - _real_target(target, x)
    return _reduce(d * d, 2 * d, check_reduction(reduction))


def l1_loss(input, target, reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    x = as_float_array(input, "input")
    d = x - _real_target(target, x)
    return _reduce(np.abs(d), np.sign(d), check_reduction(reduction))


def huber_loss(input, target, delta: float = 1.0, reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """0.5 d^2 where |d| < delta, else delta (|d| - delta/2); the gradient is d clipped to +-delta."""
    if not delta > 0:
        raise ValueError(f"delta must be positive, but was given {delta}.")
    x = as_float_array(input, "input")
    d = x - _real_target(target, x)
    a = np.abs(d)
    loss = np.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta)).astype(x.dtype, copy=False)
    return _reduce(loss, np.clip(d, -delta, delta), check_reduction(reduction))
