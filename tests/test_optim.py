"""Optimisers and gradient clipping: parity with torch.optim over 10 steps, state round trips, errors."""
import io

import numpy as np
import pytest
import torch

from unrolled import Parameter
from unrolled.optim import SGD, Adagrad, Adam, AdamW, RMSprop, clip_grad_norm, clip_grad_value

torch.set_num_threads(1)

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 10

CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (SGD, torch.optim.SGD, dict(lr=0.1, weight_decay=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.5, weight_decay=0.2)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.2)),
    (RMSprop, torch.optim.RMSprop, dict()),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-3)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, momentum=0.9)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, weight_decay=0.1)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1, alpha=0.8)),
    (Adagrad, torch.optim.Adagrad, dict(lr=0.1)),
    (Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.1)),
    (Adagrad, torch.optim.Adagrad, dict(lr=0.1, weight_decay=0.1)),
    (Adagrad, torch.optim.Adagrad, dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-3)),
    (Adam, torch.optim.Adam, dict(lr=0.05)),
    (Adam, torch.optim.Adam, dict(lr=0.05, amsgrad=True)),
    (Adam, torch.optim.Adam, dict(lr=0.05, weight_decay=0.1)),
    (Adam, torch.optim.Adam, dict(lr=0.05, betas=(0.3, 0.8), eps=1e-3)),  # lerp weight 0.7: torch's other branch
    (Adam, torch.optim.Adam, dict(lr=0.05, amsgrad=True, weight_decay=0.1, betas=(0.5, 0.9))),
    (AdamW, torch.optim.AdamW, dict(lr=0.05)),
    (AdamW, torch.optim.AdamW, dict(lr=0.05, weight_decay=0.3)),
    (AdamW, torch.optim.AdamW, dict(lr=0.05, amsgrad=True, weight_decay=0.3)),
]
IDS = [f"{ours.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for ours, _, kw in CASES]


def problem(seed=0, dtype=np.float64):
    """Initial values of three parameters of different shapes and STEPS gradients for each."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[(rng.standard_normal(s) * rng.uniform(0.1, 3)).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return init, grads


def run_ours(cls, kwargs, init, grads, groups=None):
    params = [Parameter(x.copy()) for x in init]
    opt = cls(groups(params) if groups else params, **kwargs)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()
    return params, opt


def run_torch(cls, kwargs, init, grads, groups=None):
    params = [torch.tensor(x.copy(), requires_grad=True) for x in init]
    opt = cls(groups(params) if groups else params, **kwargs, foreach=False)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g)
        opt.step()
    return params, opt


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
def test_ten_steps_equal_torch(ours, theirs, kwargs):
    init, grads = problem()
    params, opt = run_ours(ours, kwargs, init, grads)
    tparams, topt = run_torch(theirs, kwargs, init, grads)
    for p, q, x in zip(params, tparams, init):
        assert p.data.dtype == np.float64 and np.abs(p.data - x).max() > 1e-2  # the run moved them
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-12, atol=0)
        for name, value in opt.state[p].items():  # and the state holds the same numbers
            if name != "step":
                np.testing.assert_allclose(value, topt.state[q][name].numpy(), rtol=1e-12, atol=1e-300)


def test_param_groups_with_their_own_hyper_parameters_equal_torch():
    init, grads = problem(1)

    def groups(ps):
        return [{"params": ps[:2], "lr": 0.02, "weight_decay": 0.5}, {"params": ps[2:], "betas": (0.8, 0.99)}]

    params, opt = run_ours(Adam, dict(lr=0.05), init, grads, groups)
    tparams, _ = run_torch(torch.optim.Adam, dict(lr=0.05), init, grads, groups)
    for p, q in zip(params, tparams):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-12, atol=0)
    assert opt.param_groups[0]["lr"] == 0.02 and opt.param_groups[1]["lr"] == 0.05
    assert opt.param_groups[1]["betas"] == (0.8, 0.99) and opt.param_groups[0]["weight_decay"] == 0.5


@pytest.mark.parametrize("ours, theirs, kwargs", [CASES[3], CASES[12], CASES[14], CASES[21], CASES[24]],
                         ids=[IDS[3], IDS[12], IDS[14], IDS[21], IDS[24]])
def test_float32_stays_float32_in_place_and_near_torch(ours, theirs, kwargs):
    init, grads = problem(2, np.float32)
    params = [Parameter(x.copy()) for x in init]
    arrays = [p.data for p in params]
    opt = ours(params, **kwargs)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()
    tparams, _ = run_torch(theirs, kwargs, init, grads)
    for p, a, q in zip(params, arrays, tparams):
        assert p.data is a and p.data.dtype == np.float32
        assert all(v.dtype == np.float32 for k, v in opt.state[p].items() if k != "step")
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=2e-5, atol=2e-6)


def test_adam_with_beta1_zero_keeps_the_last_gradient_exactly():
    init, grads = problem(6)
    params, opt = run_ours(Adam, dict(betas=(0.0, 0.9)), init, grads)
    for p, g in zip(params, grads[-1]):
        np.testing.assert_array_equal(opt.state[p]["exp_avg"], g)


def test_zero_grad_zeroes_every_gradient():
    params = [Parameter(np.ones(s)) for s in SHAPES]
    for p in params:
        p.grad[...] = 3.0
    SGD(params, lr=0.1).zero_grad()
    assert all(not p.grad.any() for p in params)


# ----- state_dict ----------------------------------------------------------------------------------

def through_npz(state):
    """Write a flat state into an .npz and read it back without pickle, as a checkpoint would."""
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=IDS)
def test_state_dict_round_trip_mid_run_is_bit_identical(ours, theirs, kwargs):
    init, grads = problem(3)
    params = [Parameter(x.copy()) for x in init]
    opt = ours(params, **kwargs)
    for step, gs in enumerate(grads):
        if step == 4:  # save, then continue in a fresh optimiser over copies of the parameters
            state = through_npz(opt.state_dict())
            assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
            resumed = [Parameter(p.data.copy()) for p in params]
            opt2 = ours(resumed, **{**kwargs, "lr": 123.0})  # the saved lr wins
            opt2.load_state_dict(state)
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()
        if step >= 4:
            for p, g in zip(resumed, gs):
                p.grad[...] = g
            opt2.step()
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p.data, q.data)
    assert set(opt.state_dict()) == set(opt2.state_dict())


def test_state_dict_is_flat_and_named_like_torch():
    params = [Parameter(np.zeros(s)) for s in SHAPES]
    state = Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.1}], amsgrad=True).state_dict()
    np.testing.assert_array_equal(state["group.1.params"], [1, 2])
    assert state["group.1.lr"].shape == () and float(state["group.1.lr"]) == 0.1
    np.testing.assert_array_equal(state["group.0.betas"], [0.9, 0.999])
    assert state["group.0.amsgrad"].dtype == bool and bool(state["group.0.amsgrad"])
    assert state["state.2.exp_avg"].shape == (2, 3, 2) and state["state.2.step"].shape == ()
    assert {k.split(".", 2)[2] for k in state if k.startswith("state.0.")} == {"step", "exp_avg", "exp_avg_sq",
                                                                             "max_exp_avg_sq"}


def test_load_state_dict_rejects_a_mismatch_and_changes_nothing():
    params = [Parameter(np.zeros(s)) for s in SHAPES]
    opt = Adam(params, lr=0.1)
    saved = opt.state_dict()
    before = {k: v.copy() for k, v in saved.items()}
    with pytest.raises(ValueError, match=r"param groups of sizes \[2\], but was given \[3\]"):
        Adam(params[:2]).load_state_dict(saved)
    with pytest.raises(ValueError, match="shape"):
        Adam([Parameter(np.zeros(s)) for s in [(3, 4), (6,), (2, 3, 2)]]).load_state_dict(saved)
    with pytest.raises(ValueError, match="missing"):
        SGD(params, momentum=0.9).load_state_dict(saved)
    with pytest.raises(ValueError, match="missing"):
        Adam(params, amsgrad=True).load_state_dict(saved)
    bad = {**saved, "state.1.exp_avg": np.ones(5), "group.0.betas": np.array([0.9, 1.5])}
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        opt.load_state_dict(bad)
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


# ----- clipping ------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, np.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_equals_torch(norm_type, max_norm):
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal(s) * 2 for s in SHAPES]
    params = [Parameter(np.zeros(s)) for s in SHAPES]
    tparams = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, q, g in zip(params, tparams, grads):
        p.grad[...] = g
        q.grad = torch.tensor(g)
    total = clip_grad_norm(params, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type, foreach=False)
    assert isinstance(total, float) and total == pytest.approx(expected.item(), rel=1e-12)
    clipped = total > max_norm
    for p, q, g in zip(params, tparams, grads):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12, atol=0)
        assert np.array_equal(p.grad, g) != clipped
    if clipped:  # the total norm after clipping is max_norm (up to the 1e-6 of the coefficient)
        after = clip_grad_norm(params, max_norm, norm_type)
        assert after == pytest.approx(max_norm, rel=1e-5) and after < max_norm


def test_clip_grad_norm_of_float32_gradients_stays_float32():
    params = [Parameter(np.zeros(s, np.float32)) for s in SHAPES]
    for p in params:
        p.grad[...] = 10.0
    total = clip_grad_norm(params, 1.0)
    assert total == pytest.approx(10.0 * np.sqrt(sum(np.prod(s) for s in SHAPES)), rel=1e-6)
    assert all(p.grad.dtype == np.float32 for p in params)
    assert np.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in params)) == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_value_equals_torch():
    rng = np.random.default_rng(5)
    grads = [rng.standard_normal(s) * 2 for s in SHAPES]
    params = [Parameter(np.zeros(s)) for s in SHAPES]
    tparams = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, q, g in zip(params, tparams, grads):
        p.grad[...] = g
        q.grad = torch.tensor(g)
    clip_grad_value(params, 0.7)
    torch.nn.utils.clip_grad_value_(tparams, 0.7, foreach=False)
    for p, q, g in zip(params, tparams, grads):
        np.testing.assert_array_equal(p.grad, q.grad.numpy())
        assert np.abs(p.grad).max() == 0.7 and (np.abs(g) > 0.7).any()


# ----- errors --------------------------------------------------------------------------------------

def P():
    return [Parameter(np.zeros(3))]


@pytest.mark.parametrize("make, message", [
    (lambda: SGD(P(), lr=-0.1), r"SGD lr must lie in \[0, inf\), but was given -0.1"),
    (lambda: SGD(P(), lr=float("nan")), "SGD lr must lie in"),
    (lambda: SGD(P(), lr=0.1, nesterov=True), "nesterov=True needs momentum > 0 and dampening = 0"),
    (lambda: SGD(P(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening=0.1"),
    (lambda: SGD(P(), momentum=-1), "SGD momentum must lie in"),
    (lambda: SGD(P(), dampening=2), r"SGD dampening must lie in \[0, 1\]"),
    (lambda: SGD(P(), weight_decay=-1e-4), "SGD weight_decay must lie in"),
    (lambda: RMSprop(P(), alpha=1.0), r"RMSprop alpha must lie in \[0, 1\)"),
    (lambda: RMSprop(P(), eps=-1), "RMSprop eps"),
    (lambda: Adagrad(P(), lr_decay=-0.1), "Adagrad lr_decay"),
    (lambda: Adagrad(P(), initial_accumulator_value=-1), "Adagrad initial_accumulator_value"),
    (lambda: Adam(P(), betas=(1.0, 0.999)), r"Adam betas\[0\] must lie in \[0, 1\), but was given 1.0"),
    (lambda: Adam(P(), betas=(0.9, -0.1)), r"Adam betas\[1\]"),
    (lambda: Adam(P(), betas=(0.9,)), "Adam betas must be 2 numbers, but was given"),
    (lambda: AdamW(P(), weight_decay=-0.01), "AdamW weight_decay"),
    (lambda: Adam(P(), lr="fast"), "Adam lr must be a number, but was given 'fast'"),
    (lambda: Adam([]), "needs parameters to optimise, but was given an empty list"),
    (lambda: Adam([np.zeros(3)]), "optimises unrolled.Parameter objects, but was given a ndarray"),
    (lambda: Adam(P() * 2), "each parameter once"),
    (lambda: Adam([{"params": P(), "learning_rate": 0.1}]), r"was given \['learning_rate'\]"),
    (lambda: Adam([{"params": P(), "betas": (0.9, 1.0)}]), r"Adam betas\[1\]"),
    (lambda: clip_grad_norm(P(), -1.0), "clip_grad_norm max_norm must lie in"),
    (lambda: clip_grad_norm(P(), 1.0, norm_type=0), "norm_type must be a positive number or inf"),
    (lambda: clip_grad_norm([np.zeros(3)], 1.0), "takes unrolled.Parameter objects"),
    (lambda: clip_grad_value(P(), -0.5), "clip_grad_value clip_value must lie in"),
])
def test_bad_hyper_parameters_raise_one_clear_sentence(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    text = str(info.value)
    assert text.endswith(".") and text.count(". ") == 0


def test_group_lasso_shrinks_each_column_by_the_threshold_and_zeroes_small_ones():
    from unrolled.optim import group_lasso_
    w = np.array([[3.0, 0.3, 0.0], [4.0, 0.4, 0.0]], dtype=np.float32)      # column norms 5, 0.5, 0
    group_lasso_(w, 1.0)
    np.testing.assert_allclose(w, [[2.4, 0.0, 0.0], [3.2, 0.0, 0.0]], rtol=1e-6)  # 5 -> 4, same direction
    assert w.dtype == np.float32
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        group_lasso_(w, -1.0)
