"""Activations, softmax and erf: finite differences, PyTorch parity, numerical stability, errors."""
import math

import numpy as np
import pytest
import torch

from unrolled import GELU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from unrolled.core import functional as F
from unrolled.testing import gradcheck

torch.set_num_threads(1)


@pytest.fixture
def rng():
    """Not seed 0: gradcheck draws its upstream gradient from seed 0, and an input drawn from the
    same stream would make the upstream gradient a multiple of the input (LayerNorm's gradient then
    all but vanishes)."""
    return np.random.default_rng(12345)

ACTIVATIONS = {
    "tanh": (lambda: Tanh(), lambda: torch.nn.Tanh()),
    "sigmoid": (lambda: Sigmoid(), lambda: torch.nn.Sigmoid()),
    "relu": (lambda: ReLU(), lambda: torch.nn.ReLU()),
    "gelu": (lambda: GELU(), lambda: torch.nn.GELU()),
    "gelu_tanh": (lambda: GELU("tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    "softmax": (lambda: Softmax(), lambda: torch.nn.Softmax(dim=-1)),
    "softmax_dim0": (lambda: Softmax(dim=0), lambda: torch.nn.Softmax(dim=0)),
    "log_softmax": (lambda: LogSoftmax(), lambda: torch.nn.LogSoftmax(dim=-1)),
    "log_softmax_dim1": (lambda: LogSoftmax(dim=1), lambda: torch.nn.LogSoftmax(dim=1)),
}


def assert_close(ours, theirs, rtol=1e-8):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-13)


def torch_run(module, x, dy):
    """Output and input gradient of a torch module for input x and upstream gradient dy."""
    xt = torch.tensor(x, requires_grad=True)
    y = module(xt)
    y.backward(torch.tensor(dy))
    return y, xt.grad


def away_from_zero(x, margin=1e-3):
    """Nudge entries off the kink of relu so central differences do not straddle it."""
    return np.where(np.abs(x) < margin, margin * 10, x)


# ----- erf ---------------------------------------------------------------------------------

def test_erf_matches_math_erf_to_double_precision(rng):
    x = np.concatenate([rng.standard_normal(5000) * 2, rng.uniform(-7, 7, 5000), np.linspace(-1.2, 1.2, 2001),
                        [0.0, 1e-300, -1e-20, 1e-8, 0.5, 1.0, -1.0, 7.99, 8.0, 26.0, 30.0, -1e300]])
    ours = F.erf(x)
    ref = np.array([math.erf(v) for v in x])
    nonzero = ref != 0
    assert np.max(np.abs(ours - ref)[nonzero] / np.abs(ref[nonzero])) < 2e-15
    assert np.all(ours[x == 0.0] == 0.0) and F.erf(np.array(-0.0)).item() == 0.0
    np.testing.assert_array_equal(F.erf(np.array([np.inf, -np.inf, np.nan])), [1.0, -1.0, np.nan])


def test_erfc_is_accurate_in_relative_terms_far_into_the_tail(rng):
    x = np.concatenate([rng.uniform(-3, 26, 10000), [-30.0, -1.0, 0.0, 1.0, 8.0, 20.0, 26.5]])
    ours = F.erfc(x)
    ref = np.array([math.erfc(v) for v in x])
    assert np.max(np.abs(ours - ref) / ref) < 2e-15
    np.testing.assert_array_equal(F.erfc(np.array([40.0, -40.0, np.nan])), [0.0, 2.0, np.nan])


def test_erf_keeps_float32():
    assert F.erf(np.ones(3, np.float32)).dtype == np.float32
    assert F.erfc(np.ones(3, np.float64)).dtype == np.float64


# ----- gradients ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_gradcheck(name, rng):
    x = away_from_zero(rng.standard_normal((3, 4, 5)) * 2)
    errors = gradcheck(ACTIVATIONS[name][0](), (x,))
    assert max(errors.values()) < 1e-6


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_matches_torch(name, rng):
    ours, theirs = (make() for make in ACTIVATIONS[name])
    x = rng.standard_normal((4, 3, 6)) * 3
    dy = rng.standard_normal(x.shape)
    y = ours(x)
    dx = ours.backward(dy)
    y_t, dx_t = torch_run(theirs, x, dy)
    assert_close(y, y_t)
    assert_close(dx, dx_t)


def test_gelu_exact_matches_torch_in_the_far_tails():
    x = np.array([-40.0, -12.0, -6.0, -3.0, 3.0, 6.0, 12.0, 40.0])
    dy = np.ones_like(x)
    m = GELU()
    y, dx = m(x), m.backward(dy)
    y_t, dx_t = torch_run(torch.nn.GELU(), x, dy)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-8, atol=1e-15)
    np.testing.assert_allclose(dx, dx_t.numpy(), rtol=1e-8, atol=1e-15)
    assert y[1] < 0 and abs(y[1] / (-12 * 0.5 * math.erfc(12 / math.sqrt(2))) - 1) < 1e-13  # exact even where 1+erf cancels


def test_float32_in_float32_out(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for make, _ in ACTIVATIONS.values():
        m = make()
        y = m(x)
        assert y.dtype == np.float32 and m.backward(np.ones_like(y)).dtype == np.float32


# ----- stability ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_huge_inputs_stay_finite_and_match_torch(name, rng):
    x = rng.choice([-1e4, -3e3, 0.0, 5e3, 1e4], size=(3, 7)) + rng.standard_normal((3, 7))
    dy = rng.standard_normal(x.shape)
    ours, theirs = (make() for make in ACTIVATIONS[name])
    y, dx = ours(x), ours.backward(dy)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    y_t, dx_t = torch_run(theirs, x, dy)
    assert_close(y, y_t)
    assert_close(dx, dx_t)


def test_sigmoid_is_accurate_for_very_negative_inputs():
    y = F.sigmoid(np.array([-40.0, -700.0, 700.0]))
    np.testing.assert_allclose(y[:2], [math.exp(-40.0) / (1 + math.exp(-40.0)), math.exp(-700.0)], rtol=1e-14)
    assert y[2] == 1.0


# ----- modes and errors --------------------------------------------------------------------

def test_backward_pairs_with_forward_and_inference_keeps_nothing(rng):
    m = Tanh()
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    m(a)
    m(b)
    np.testing.assert_allclose(m.backward(np.ones(3)), 1 - np.tanh(b) ** 2)
    np.testing.assert_allclose(m.backward(np.ones(3)), 1 - np.tanh(a) ** 2)
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        m.backward(np.ones(3))
    m.eval()
    m(a)
    assert m._cache == []


def test_bad_inputs_raise_one_clear_sentence():
    with pytest.raises(ValueError, match="approximate must be one of"):
        GELU("fast")
    with pytest.raises(ValueError, match="dim must lie in -2..1 .* but is 2"):
        Softmax(dim=2)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dim must be an integer"):
        LogSoftmax(dim=1.5)
    with pytest.raises(ValueError, match="floating-point array, but was given dtype int64"):
        ReLU()(np.arange(3))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), but was given shape \(3, 2\)"):
        m = Sigmoid()
        m(np.zeros((2, 3)))
        m.backward(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="call .numpy"):
        Tanh()(torch.zeros(3))
