"""Losses: finite differences, PyTorch parity (values and gradients), numerical stability, errors."""
import numpy as np
import pytest
import torch

from unrolled import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss
from unrolled.core import functional as F
from unrolled.testing import gradcheck

torch.set_num_threads(1)
REDUCTIONS = ["mean", "sum", "none"]


@pytest.fixture
def rng():
    """Not seed 0, which gradcheck uses for its upstream gradient."""
    return np.random.default_rng(2024)


def assert_close(ours, theirs, rtol=1e-8):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-13)


def run_both(ours, theirs, x, target, dloss, torch_target=None):
    """Loss and input gradient from our module and from torch's, for the same upstream gradient."""
    loss = ours(x, target)
    dx = ours.backward(dloss)
    xt = torch.tensor(x, requires_grad=True)
    loss_t = theirs(xt, torch.tensor(target) if torch_target is None else torch_target)
    loss_t.backward(torch.tensor(dloss))
    return loss, dx, loss_t, xt.grad


def upstream_like(loss_shape, rng):
    return rng.standard_normal(loss_shape) if loss_shape else np.asarray(rng.standard_normal())


def class_targets(rng, shape, classes, ignore_index=None):
    t = rng.integers(0, classes, size=shape)
    if ignore_index is not None:
        t.reshape(-1)[::3] = ignore_index  # every third target ignored
    return t


# ----- cross-entropy -----------------------------------------------------------------------

CE_CASES = [dict(), dict(ignore_index=-100), dict(ignore_index=2), dict(label_smoothing=0.2),
            dict(ignore_index=-100, label_smoothing=0.3), dict(label_smoothing=1.0)]


def ce_targets(rng, shape, classes, kwargs):
    return class_targets(rng, shape, classes, kwargs.get("ignore_index"))


def class_weight(rng, classes):
    """Uneven positive weights with one zero, for `weight=`."""
    w = rng.uniform(0.2, 3.0, classes)
    w[1] = 0.0
    return w


def with_weight(kwargs, weighted, rng, classes):
    """(our kwargs, torch's kwargs), both with the same per-class weight if `weighted`."""
    if not weighted:
        return kwargs, kwargs
    w = class_weight(rng, classes)
    return dict(kwargs, weight=w), dict(kwargs, weight=torch.tensor(w))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kwargs", CE_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_gradcheck(kwargs, reduction, weighted, rng):
    x = rng.standard_normal((2, 3, 5)) * 2
    t = ce_targets(rng, (2, 3), 5, kwargs)
    m = CrossEntropyLoss(**with_weight(kwargs, weighted, rng, 5)[0], reduction=reduction)
    assert max(gradcheck(m, (x,), dict(target=t)).values()) < 1e-6


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kwargs", CE_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_matches_torch(kwargs, reduction, weighted, rng):
    x = rng.standard_normal((7, 6)) * 3
    t = ce_targets(rng, (7,), 6, kwargs)
    ours_kwargs, torch_kwargs = with_weight(kwargs, weighted, rng, 6)
    ours = CrossEntropyLoss(**ours_kwargs, reduction=reduction)
    theirs = torch.nn.CrossEntropyLoss(**torch_kwargs, reduction=reduction)
    dloss = upstream_like(() if reduction != "none" else (7,), rng)
    loss, dx, loss_t, dx_t = run_both(ours, theirs, x, t, dloss)
    assert_close(loss, loss_t)
    assert_close(dx, dx_t)
    if "ignore_index" in kwargs:
        ignored = t == kwargs["ignore_index"]
        assert ignored.any() and np.all(dx[ignored] == 0)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_over_leading_dims_matches_torch_class_dim_one(reduction, weighted, rng):
    """Our classes are on the last axis of (B, T, C); torch wants them on axis 1: (B, C, T)."""
    x = rng.standard_normal((3, 4, 5))
    t = class_targets(rng, (3, 4), 5, ignore_index=-100)
    ours_kwargs, torch_kwargs = with_weight(dict(label_smoothing=0.1), weighted, rng, 5)
    ours = CrossEntropyLoss(**ours_kwargs, reduction=reduction)
    theirs = torch.nn.CrossEntropyLoss(**torch_kwargs, reduction=reduction)
    dloss = upstream_like(() if reduction != "none" else (3, 4), rng)
    loss, dx = ours(x, t), ours.backward(dloss)
    xt = torch.tensor(x, requires_grad=True)
    loss_t = theirs(xt.permute(0, 2, 1), torch.tensor(t))
    loss_t.backward(torch.tensor(dloss))
    assert_close(loss, loss_t)
    assert_close(dx, xt.grad)


def test_cross_entropy_functional_returns_value_and_gradient(rng):
    x = rng.standard_normal((6, 4))
    t = class_targets(rng, (6,), 4, ignore_index=-1)
    loss, dx = F.cross_entropy(x, t, ignore_index=-1, label_smoothing=0.1)
    m = CrossEntropyLoss(ignore_index=-1, label_smoothing=0.1)
    assert loss.shape == () and isinstance(loss, np.ndarray)
    np.testing.assert_array_equal(loss, m(x, t))
    np.testing.assert_array_equal(dx, m.backward())
    # the mean is over the targets kept: 4 of 6 here
    kept = t != -1
    per = F.cross_entropy(x, t, ignore_index=-1, label_smoothing=0.1, reduction="none")[0]
    assert kept.sum() == 4 and np.isclose(loss, per[kept].sum() / 4, rtol=1e-14)


def test_cross_entropy_with_every_target_ignored_is_nan_with_zero_gradient_as_torch():
    x = np.ones((3, 4))
    t = np.full(3, -100)
    m = CrossEntropyLoss(label_smoothing=0.1)
    loss, dx = m(x, t), m.backward()
    xt = torch.tensor(x, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(xt, torch.tensor(t), label_smoothing=0.1)
    loss_t.backward()
    assert np.isnan(loss) and torch.isnan(loss_t)
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    assert np.all(dx == 0)


def test_weighted_cross_entropy_formula_and_mean_over_the_weights_kept(rng):
    """loss = (1-eps) w[y] (-log p[y]) + (eps/C) sum_c w[c] (-log p[c]); 'mean' divides the sum by
    sum w[y] over the targets kept, not by their number."""
    x = rng.standard_normal((6, 4))
    t = np.array([0, 3, -1, 2, 3, -1])
    w = np.array([0.5, 2.0, 0.0, 1.5])
    logp = F.log_softmax(x)
    kept = t != -1
    nll = np.where(kept, -logp[np.arange(6), np.where(kept, t, 0)] * w[np.where(kept, t, 0)], 0)
    smooth = np.where(kept, -(logp * w).sum(axis=-1), 0)
    per = F.cross_entropy(x, t, w, ignore_index=-1, reduction="none", label_smoothing=0.2)[0]
    np.testing.assert_allclose(per, 0.8 * nll + 0.05 * smooth, rtol=1e-14, atol=1e-15)
    loss, dx = F.cross_entropy(x, t, w, ignore_index=-1, label_smoothing=0.2)
    assert np.isclose(loss, per.sum() / (0.5 + 1.5 + 0.0 + 1.5), rtol=1e-14)   # w[0] + w[3] + w[2] + w[3]
    m = CrossEntropyLoss(w, ignore_index=-1, label_smoothing=0.2)                  # weight is torch's first argument
    np.testing.assert_array_equal(m(x, t), loss)
    np.testing.assert_array_equal(m.backward(), dx)
    ones = F.cross_entropy(x, t, np.ones(4), ignore_index=-1, label_smoothing=0.2)
    plain = F.cross_entropy(x, t, ignore_index=-1, label_smoothing=0.2)
    for a, b in zip(ones, plain):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("t", [[1, -100, 1, -100], [-100] * 4])
def test_weighted_mean_over_zero_total_weight_is_nan_as_torch(t, label_smoothing):
    """Every kept target of weight zero (or none kept): loss NaN; torch's gradient is NaN on the
    rows kept and zero on the rows ignored."""
    x = np.random.default_rng(3).standard_normal((4, 3))
    t, w = np.array(t), np.array([1.0, 0.0, 2.0])
    m = CrossEntropyLoss(w, label_smoothing=label_smoothing)
    loss, dx = m(x, t), m.backward()
    xt = torch.tensor(x, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(xt, torch.tensor(t), torch.tensor(w), label_smoothing=label_smoothing)
    loss_t.backward()
    assert np.isnan(loss) and torch.isnan(loss_t)
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    assert np.all(np.isnan(dx[t != -100])) and np.all(dx[t == -100] == 0)


def test_cross_entropy_weight_is_a_copy_cast_to_the_logits_dtype_and_not_state(rng):
    w = np.array([1.0, 2.0, 0.5])
    m = CrossEntropyLoss(w)
    w[:] = 7.0                                                    # the loss kept its own copy
    x, t = rng.standard_normal((5, 3)).astype(np.float32), rng.integers(0, 3, 5)
    loss = m(x, t)
    assert loss.dtype == np.float32 and m.backward().dtype == np.float32
    expected = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t), torch.tensor([1.0, 2.0, 0.5]))
    np.testing.assert_allclose(loss, expected.numpy(), rtol=1e-6)
    assert m.parameters() == [] and list(m.state_dict()) == []   # an array, not a Parameter (torch: a buffer)
    assert "weight of shape (3,)" in repr(m)


# ----- binary cross-entropy with logits ----------------------------------------------------

BCE_WEIGHTS = [None, "per_class", "scalar"]


def pos_weight(kind, classes, rng):
    return {None: None, "per_class": rng.uniform(0.5, 3, classes), "scalar": np.array(2.5)}[kind]


@pytest.mark.parametrize("weight", BCE_WEIGHTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_gradcheck(weight, reduction, rng):
    x = rng.standard_normal((3, 4)) * 2
    t = rng.uniform(0, 1, (3, 4))  # soft targets exercise every term
    m = BCEWithLogitsLoss(reduction=reduction, pos_weight=pos_weight(weight, 4, rng))
    assert max(gradcheck(m, (x,), dict(target=t)).values()) < 1e-6


@pytest.mark.parametrize("weight", BCE_WEIGHTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_matches_torch(weight, reduction, rng):
    x = rng.standard_normal((2, 3, 4)) * 3
    t = (rng.uniform(size=(2, 3, 4)) < 0.5).astype(np.float64)
    t[0, 0] = 0.3
    pw = pos_weight(weight, 4, rng)
    ours = BCEWithLogitsLoss(reduction=reduction, pos_weight=pw)
    theirs = torch.nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=None if pw is None else torch.tensor(pw))
    dloss = upstream_like(() if reduction != "none" else x.shape, rng)
    loss, dx, loss_t, dx_t = run_both(ours, theirs, x, t, dloss)
    assert_close(loss, loss_t)
    assert_close(dx, dx_t)


# ----- regression losses -------------------------------------------------------------------

REGRESSION = {
    "mse": (lambda r: MSELoss(reduction=r), lambda r: torch.nn.MSELoss(reduction=r)),
    "l1": (lambda r: L1Loss(reduction=r), lambda r: torch.nn.L1Loss(reduction=r)),
    "huber": (lambda r: HuberLoss(reduction=r), lambda r: torch.nn.HuberLoss(reduction=r)),
    "huber_delta": (lambda r: HuberLoss(reduction=r, delta=0.4), lambda r: torch.nn.HuberLoss(reduction=r, delta=0.4)),
}


def regression_pair(rng, shape):
    """Input and target whose differences stay clear of the kinks (0 for L1, +-delta for Huber)."""
    x = rng.standard_normal(shape) * 1.5
    d = rng.choice([-1, 1], size=shape) * rng.uniform(0.05, 2.5, size=shape)
    d[np.abs(np.abs(d) - 1.0) < 0.01] = 0.5
    d[np.abs(np.abs(d) - 0.4) < 0.01] = 0.6
    return x, x - d


@pytest.mark.parametrize("name", list(REGRESSION))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_gradcheck(name, reduction, rng):
    x, t = regression_pair(rng, (3, 5))
    assert max(gradcheck(REGRESSION[name][0](reduction), (x,), dict(target=t)).values()) < 1e-6


@pytest.mark.parametrize("name", list(REGRESSION))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_matches_torch(name, reduction, rng):
    x, t = regression_pair(rng, (4, 3, 2))
    t[0, 0, 0] = x[0, 0, 0]  # a zero difference: torch's subgradient there is 0 for L1
    make_ours, make_theirs = REGRESSION[name]
    dloss = upstream_like(() if reduction != "none" else x.shape, rng)
    loss, dx, loss_t, dx_t = run_both(make_ours(reduction), make_theirs(reduction), x, t, dloss)
    assert_close(loss, loss_t)
    assert_close(dx, dx_t)


def test_huber_is_quadratic_inside_delta_and_linear_outside():
    loss, grad = F.huber_loss(np.array([0.5, 3.0, -3.0]), np.zeros(3), delta=2.0, reduction="none")
    np.testing.assert_array_equal(loss, [0.125, 4.0, 4.0])
    np.testing.assert_array_equal(grad, [0.5, 2.0, -2.0])


# ----- stability, dtypes and the backward contract ----------------------------------------

def test_huge_logits_are_finite_and_match_torch(rng):
    x = rng.choice([-1e4, 1e4, 0.0], size=(5, 6)) + rng.standard_normal((5, 6))
    t = rng.integers(0, 6, size=5)
    w = np.array([0.5, 1.0, 2.0, 0.0, 1.5, 3.0])
    for ours_kwargs, torch_kwargs in [(dict(), dict()), (dict(label_smoothing=0.2), dict(label_smoothing=0.2)),
                                      (dict(weight=w, label_smoothing=0.2), dict(weight=torch.tensor(w), label_smoothing=0.2))]:
        loss, dx, loss_t, dx_t = run_both(CrossEntropyLoss(**ours_kwargs), torch.nn.CrossEntropyLoss(**torch_kwargs),
                                          x, t, np.array(1.0))
        assert np.isfinite(loss) and np.all(np.isfinite(dx)) and loss > 1e3
        assert_close(loss, loss_t)
        assert_close(dx, dx_t)
    logp = F.log_softmax(x)
    assert np.all(np.isfinite(logp))
    assert_close(logp, torch.log_softmax(torch.tensor(x), -1))
    tb = (rng.uniform(size=(5, 6)) < 0.5).astype(np.float64)
    loss, dx, loss_t, dx_t = run_both(BCEWithLogitsLoss(pos_weight=np.full(6, 2.0)),
                                      torch.nn.BCEWithLogitsLoss(pos_weight=torch.full((6,), 2.0, dtype=torch.float64)),
                                      x, tb, np.array(1.0))
    assert np.isfinite(loss) and np.all(np.isfinite(dx)) and loss > 1e3
    assert_close(loss, loss_t)
    assert_close(dx, dx_t)


def test_float32_losses_stay_float32(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    cases = [(CrossEntropyLoss(), rng.integers(0, 3, 4)), (BCEWithLogitsLoss(), np.ones((4, 3), np.float32)),
             (MSELoss(), np.zeros((4, 3), np.float32)), (L1Loss(), np.zeros((4, 3))), (HuberLoss(), np.zeros((4, 3)))]
    for m, t in cases:
        loss = m(x, t)
        assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == np.float32
        assert m.backward().dtype == np.float32


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_backward_scales_by_the_upstream_gradient(reduction, rng):
    x, t = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    m = CrossEntropyLoss(reduction=reduction)
    m(x, t)
    unit = m.backward()
    m(x, t)
    dloss = rng.standard_normal(4) if reduction == "none" else np.array(-2.5)
    scaled = m.backward(dloss)
    np.testing.assert_allclose(scaled, unit * (dloss[:, None] if reduction == "none" else dloss), rtol=1e-15)


@pytest.mark.parametrize("weight,message", [
    (np.ones((2, 3)), r"weight must have shape \((C|3),\), one number per class, but was given shape \(2, 3\)\.$"),
    (np.array(1.0), r"weight must have shape \((C|3),\), one number per class, but was given shape \(\)\.$"),
    (np.array([1.0, -0.5, 2.0]), r"weight must hold finite non-negative numbers, but was given -0\.5 for class 1\.$"),
    (np.array([1.0, 2.0, np.nan]), r"weight must hold finite non-negative numbers, but was given nan for class 2\.$"),
    (np.array([np.inf, 1.0, 1.0]), r"weight must hold finite non-negative numbers, but was given inf for class 0\.$"),
    (np.array([1, 2, 3]), r"weight must be a floating-point array, but was given dtype int64\.$"),
    (torch.ones(3), r"weight must be a NumPy array, but was given a Tensor; call \.numpy\(\) first\.$"),
])
def test_bad_class_weights_raise_one_clear_sentence(weight, message):
    with pytest.raises(ValueError, match=message):
        CrossEntropyLoss(weight)
    with pytest.raises(ValueError, match=message):
        F.cross_entropy(np.zeros((2, 3)), np.zeros(2, int), weight)


def test_bad_inputs_raise_one_clear_sentence(rng):
    x = rng.standard_normal((4, 3))
    ce = CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"target must have shape \(4,\) .* but was given shape \(4, 3\)"):
        ce(x, np.zeros((4, 3), int))
    with pytest.raises(ValueError, match="integer class indices, but was given dtype float64"):
        ce(x, np.zeros(4))
    with pytest.raises(ValueError, match=r"must lie in 0..2 \(or be ignore_index=-100\), but 3 was given"):
        ce(x, np.array([0, 1, 3, 2]))
    with pytest.raises(ValueError, match="but -1 was given"):
        ce(x, np.array([0, 1, -1, 2]))
    for smoothing in (1.5, "x", None, True):
        with pytest.raises(ValueError, match=f"label_smoothing must lie in \\[0, 1\\], but was given {smoothing!r}"):
            CrossEntropyLoss(label_smoothing=smoothing)
    for index in ("a", 1.5, None, True):
        with pytest.raises(ValueError, match=f"ignore_index must be an integer class index, but was given {index!r}"):
            CrossEntropyLoss(ignore_index=index)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\), one number per class, but was given shape \(4,\)"):
        CrossEntropyLoss(np.ones(4))(x, np.zeros(4, int))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\), one number per class, but was given shape \(2,\)"):
        F.cross_entropy(x, np.zeros(4, int), np.ones(2))
    with pytest.raises(ValueError, match="reduction must be one of"):
        MSELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"target must have the input's shape \(4, 3\), but was given shape \(3,\)"):
        MSELoss()(x, np.zeros(3))
    with pytest.raises(ValueError, match="delta must be positive"):
        HuberLoss(delta=0.0)
    with pytest.raises(ValueError, match=r"pos_weight must broadcast to the logits' shape \(4, 3\)"):
        BCEWithLogitsLoss(pos_weight=np.ones(4))(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        L1Loss().backward()
    m = MSELoss()
    m(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dloss must be a single number"):
        m.backward(np.ones(2))
    m = MSELoss(reduction="none")
    m(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"dloss must have the loss's shape \(4, 3\)"):
        m.backward(np.ones(3))
