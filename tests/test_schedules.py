"""Learning-rate schedules: parity with torch.optim.lr_scheduler over many steps, state round trips, errors."""
import io
import math
import warnings

import numpy as np
import pytest
import torch

from unrolled import Parameter
from unrolled.optim import SGD, Adam, CosineWarmup, ExponentialLR, ReduceLROnPlateau, StepLR

LRS = [0.1, 0.03]  # two param groups, each with its own base lr


def ours_optimizer(lrs=LRS):
    return SGD([{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in lrs], lr=1.0, momentum=0.9)


def torch_optimizer(lrs=LRS):
    return torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs], lr=1.0)


def lr_history(sched, steps, metrics=None):
    """[lrs at step 0, lrs after step 1, ...] read through get_last_lr()."""
    history = [sched.get_last_lr()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when the schedule steps without an optimiser step
        for t in range(steps):
            if metrics is None:
                sched.step()
            else:
                sched.step(metrics[t])
            history.append(sched.get_last_lr())
    return np.array(history, dtype=np.float64)  # (steps + 1, groups)


def test_step_lr_equals_torch():
    ours = lr_history(StepLR(ours_optimizer(), step_size=7, gamma=0.5), 100)
    theirs = lr_history(torch.optim.lr_scheduler.StepLR(torch_optimizer(), step_size=7, gamma=0.5), 100)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(ours[[0, 6, 7, 13, 14]], [[0.1, 0.03]] * 2 + [[0.05, 0.015]] * 2 + [[0.025, 0.0075]])


def test_exponential_lr_equals_torch():
    ours = lr_history(ExponentialLR(ours_optimizer(), gamma=0.97), 300)
    theirs = lr_history(torch.optim.lr_scheduler.ExponentialLR(torch_optimizer(), gamma=0.97), 300)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    assert ours[-1, 0] == pytest.approx(0.1 * 0.97 ** 300, rel=1e-14)


def test_schedules_set_the_optimisers_lr_and_it_is_used():
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=1.0)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad[...] = 1.0
        opt.step()
        sched.step()
    np.testing.assert_array_equal(p.data, [-(1.0 + 0.5 + 0.25)])
    assert opt.param_groups[0]["lr"] == 0.125 == sched.get_last_lr()[0]


@pytest.mark.parametrize("W, T, min_lr", [(10, 100, 1e-3), (1, 37, 0.0), (25, 26, 0.01)])
def test_cosine_warmup_follows_its_formula(W, T, min_lr):
    b = 0.1
    got = lr_history(CosineWarmup(ours_optimizer([b]), W, T, min_lr), T + 20)[:, 0]
    assert got[0] == 0.0 and got[W] == b and got[T] == min_lr and (got[T:] == min_lr).all()
    for t in range(1, W):
        assert got[t] == pytest.approx(b * t / W, rel=1e-15)
    assert np.all(np.diff(got[:W + 1]) > 0) and np.all(np.diff(got[W:T + 1]) < 0)
    for t in range(W, T + 1):  # (1 + cos) / 2 runs from 1 to 0 over the cosine phase
        assert got[t] == pytest.approx(min_lr + (b - min_lr) * 0.5 * (1 + math.cos(math.pi * (t - W) / (T - W))),
                                       rel=1e-14)
    if (T - W) % 2 == 0:
        assert got[(W + T) // 2] == pytest.approx((b + min_lr) / 2, rel=1e-14)


def test_cosine_warmup_equals_torch_linear_then_cosine():
    """SequentialLR(LinearLR, CosineAnnealingLR) is the same schedule, except that LinearLR cannot start at
    exactly 0: at start_factor=1e-300 the two differ by 1e-300 * base_lr at step 0 and by rounding after."""
    W, T, min_lr = 10, 120, 1e-3
    ours = lr_history(CosineWarmup(ours_optimizer(), W, T, min_lr), T)
    topt = torch_optimizer()
    linear = torch.optim.lr_scheduler.LinearLR(topt, start_factor=1e-300, end_factor=1.0, total_iters=W)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=T - W, eta_min=min_lr)
    theirs = lr_history(torch.optim.lr_scheduler.SequentialLR(topt, [linear, cosine], milestones=[W]), T)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-290)


def test_cosine_warmup_without_warmup_equals_torch_cosine_annealing():
    ours = lr_history(CosineWarmup(ours_optimizer(), 0, 200, 1e-4), 200)
    topt = torch_optimizer()
    theirs = lr_history(torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=200, eta_min=1e-4), 200)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


def metric_sequence(n=150, seed=0):
    """A loss-like curve: falling, then plateaus with noise, a few improvements in between."""
    rng = np.random.default_rng(seed)
    trend = np.concatenate([np.linspace(2.0, 1.0, 30), np.full(40, 1.0), np.linspace(1.0, 0.8, 20), np.full(60, 0.8)])
    return trend[:n] + rng.normal(0, 0.01, n)


PLATEAU = [
    dict(),
    dict(patience=3, factor=0.5, cooldown=2, min_lr=1e-3),
    dict(mode="max", threshold=0.05, threshold_mode="abs", patience=2, factor=0.3),
    dict(mode="min", threshold_mode="abs", threshold=0.02, patience=4, min_lr=[1e-2, 5e-3], eps=1e-4),
    dict(mode="max", patience=0, cooldown=5, factor=0.9),
]


@pytest.mark.parametrize("kwargs", PLATEAU, ids=[str(k) for k in PLATEAU])
def test_reduce_on_plateau_equals_torch(kwargs):
    metrics = metric_sequence()
    if kwargs.get("mode") == "max":
        metrics = -metrics
    sched = ReduceLROnPlateau(ours_optimizer(), **kwargs)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_optimizer(), **kwargs)
    ours, theirs = lr_history(sched, len(metrics), metrics), lr_history(tsched, len(metrics), metrics)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    assert len(np.unique(ours[:, 0])) > 1  # it did reduce
    assert (sched.best, sched.num_bad_epochs, sched.cooldown_counter) == (tsched.best, tsched.num_bad_epochs,
                                                                         tsched.cooldown_counter)


# ----- state_dict ----------------------------------------------------------------------------------

def through_npz(state):
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


MAKERS = {
    "step": lambda opt: StepLR(opt, step_size=5, gamma=0.7),
    "exponential": lambda opt: ExponentialLR(opt, gamma=0.95),
    "cosine": lambda opt: CosineWarmup(opt, warmup_steps=8, total_steps=50, min_lr=1e-4),
    "plateau": lambda opt: ReduceLROnPlateau(opt, patience=2, factor=0.5, cooldown=1),
}


@pytest.mark.parametrize("schedule_first", [False, True])
@pytest.mark.parametrize("name", list(MAKERS))
def test_state_dict_round_trip_continues_identically(name, schedule_first):
    metrics = metric_sequence(60, seed=1)

    def advance(opt, sched, params, steps):
        lrs = []
        for t in steps:
            for p in params:
                p.grad[...] = np.sin(t + np.arange(2))
            opt.step()
            sched.step(metrics[t]) if name == "plateau" else sched.step()
            lrs.append(sched.get_last_lr())
        return lrs

    params = [Parameter(np.ones(2)), Parameter(np.ones(2))]
    opt = Adam([{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.02}])
    sched = MAKERS[name](opt)
    advance(opt, sched, params, range(25))
    saved_opt, saved_sched = through_npz(opt.state_dict()), through_npz(sched.state_dict())
    copies = [Parameter(p.data.copy()) for p in params]
    expected = advance(opt, sched, params, range(25, 60))

    opt2 = Adam([{"params": copies[:1], "lr": 5.0}, {"params": copies[1:], "lr": 5.0}])
    sched2 = MAKERS[name](opt2)
    if schedule_first:  # a closed-form schedule sets the lrs itself; the plateau's come from the optimiser
        sched2.load_state_dict(saved_sched)
        opt2.load_state_dict(saved_opt)
    else:
        opt2.load_state_dict(saved_opt)
        sched2.load_state_dict(saved_sched)
    assert advance(opt2, sched2, copies, range(25, 60)) == expected
    assert len({tuple(lrs) for lrs in expected}) > 1  # the lrs did change after the save point
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_rejects_a_mismatch():
    sched = StepLR(ours_optimizer(), step_size=3)
    with pytest.raises(ValueError, match=r"missing \['base_lrs'\]"):
        sched.load_state_dict({"last_epoch": np.asarray(4)})
    with pytest.raises(ValueError, match=r"'base_lrs' of shape \(2,\), but was given shape \(3,\)"):
        sched.load_state_dict({"last_epoch": np.asarray(4), "base_lrs": np.ones(3)})
    plateau = ReduceLROnPlateau(ours_optimizer())
    with pytest.raises(ValueError, match="unexpected"):
        plateau.load_state_dict(sched.state_dict())
    assert sched.last_epoch == 0 and sched.get_last_lr() == LRS


# ----- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda o: StepLR(o, step_size=0), "StepLR step_size must be an integer >= 1, but was given 0"),
    (lambda o: StepLR(o, step_size=2.5), "StepLR step_size must be an integer"),
    (lambda o: StepLR(o, step_size=3, gamma=-0.1), "StepLR gamma must lie in"),
    (lambda o: ExponentialLR(o, gamma=float("nan")), "ExponentialLR gamma must lie in"),
    (lambda o: CosineWarmup(o, warmup_steps=-1, total_steps=10), "warmup_steps must be an integer >= 0"),
    (lambda o: CosineWarmup(o, warmup_steps=10, total_steps=10), "total_steps must be an integer >= 11"),
    (lambda o: CosineWarmup(o, 1, 10, min_lr=-1e-3), "CosineWarmup min_lr must lie in"),
    (lambda o: CosineWarmup(torch_optimizer(), 1, 10), "schedules an unrolled.optim optimiser, but was given a SGD"),
    (lambda o: ReduceLROnPlateau(o, mode="mean"), "mode must be 'min' or 'max', but was given 'mean'"),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode must be 'rel' or 'abs'"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), r"factor must lie in \[0, 1\)"),
    (lambda o: ReduceLROnPlateau(o, patience=-1), "patience must be an integer >= 0"),
    (lambda o: ReduceLROnPlateau(o, cooldown=1.5), "cooldown must be an integer >= 0"),
    (lambda o: ReduceLROnPlateau(o, min_lr=[0.0]), r"one per param group \(2\), but was given 1"),
    (lambda o: ReduceLROnPlateau(o, min_lr=-1.0), "min_lr must lie in"),
])
def test_bad_arguments_raise_one_clear_sentence(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make(ours_optimizer())
    assert str(info.value).endswith(".") and str(info.value).count(". ") == 0
