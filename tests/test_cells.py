"""RNNCell, LSTMCell and GRUCell: finite differences, PyTorch parity, and the initialisers shared
with the full layers."""
import numpy as np
import pytest
import torch

import unrolled
from unrolled.testing import gradcheck

torch.set_num_threads(1)

B, I, H = 3, 4, 3

CELLS = {
    "rnn_tanh": (unrolled.RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (unrolled.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (unrolled.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (unrolled.GRUCell, torch.nn.GRUCell, {}),
}


def make_cell(kind, bias=True, seed=0):
    cls, _, extra = CELLS[kind]
    return cls(I, H, bias=bias, dtype=np.float64, seed=seed, **extra)


def make_inputs(kind, with_state, rng):
    x = rng.standard_normal((B, I))
    if not with_state:
        return (x,)
    h = rng.standard_normal((B, H))
    return (x, (h, rng.standard_normal((B, H))) if kind == "lstm" else h)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_gradients_match_finite_differences(kind, with_state, bias):
    cell = make_cell(kind, bias)
    errors = gradcheck(cell, make_inputs(kind, with_state, np.random.default_rng(0)))
    assert {n for n in errors if not n.startswith("input")} == {n for n, _ in cell.named_parameters()}


def assert_close(ours, theirs, what, rtol=1e-8):
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, what
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max(), err_msg=what)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("from_torch", [False, True])
def test_cell_matches_torch(kind, with_state, from_torch):
    rng = np.random.default_rng(1)
    ours_cls, torch_cls, extra = CELLS[kind]
    cell = make_cell(kind)
    module = torch_cls(I, H, **extra).double()
    if from_torch:  # torch's own weights into ours
        cell.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    else:  # random non-zero weights of ours into torch
        for p in cell.parameters():
            p.data[...] = rng.standard_normal(p.shape) * 0.7
        module.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
    inputs = make_inputs(kind, with_state, rng)
    d_h, d_c = rng.standard_normal((2, B, H))

    xt = torch.from_numpy(inputs[0]).requires_grad_()
    states_t = None
    if with_state:
        states_t = tuple(torch.from_numpy(s).requires_grad_() for s in (inputs[1] if kind == "lstm" else (inputs[1],)))
    if kind == "lstm":
        h1, c1 = cell(*inputs)
        dx, (dh, dc) = cell.backward(d_h, d_c)
        h1_t, c1_t = module(xt, states_t)
        ((h1_t * torch.from_numpy(d_h)).sum() + (c1_t * torch.from_numpy(d_c)).sum()).backward()
        assert_close(c1, c1_t, "c1")
        ours_d, theirs_d = (dh, dc), states_t
    else:
        h1 = cell(*inputs)
        dx, dh = cell.backward(d_h)
        h1_t = module(xt, None if states_t is None else states_t[0])
        (h1_t * torch.from_numpy(d_h)).sum().backward()
        ours_d, theirs_d = (dh,), states_t
    assert_close(h1, h1_t, "h1")
    assert_close(dx, xt.grad, "dx")
    if with_state:
        for d, t in zip(ours_d, theirs_d):
            assert_close(d, t.grad, "d state")
    for name, p in module.named_parameters():
        assert_close(dict(cell.named_parameters())[name].grad, p.grad, name)


# ----- initialisers (shared by cells and layers) -----------------------------------------------

def test_default_init_is_torchs_uniform_and_seeded():
    layer = unrolled.LSTM(I, 64, num_layers=2, seed=3)
    bound = 1 / np.sqrt(64)
    for name, p in layer.named_parameters():
        assert p.data.dtype == np.float32
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.9 * bound, name
    again = unrolled.LSTM(I, 64, num_layers=2, seed=3)
    for (_, p), (_, q) in zip(layer.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    other = unrolled.LSTM(I, 64, num_layers=2, seed=4)
    assert not np.array_equal(layer.weight_hh_l0.data, other.weight_hh_l0.data)


@pytest.mark.parametrize("module", [unrolled.GRU(5, 6, num_layers=2, bidirectional=True, dtype=np.float64, seed=0),
                                    unrolled.GRUCell(5, 6, dtype=np.float64, seed=0)])
def test_orthogonal_init(module):
    module.reset_parameters("orthogonal")
    for name, p in module.named_parameters():
        if name.startswith("weight_hh"):
            for block in np.split(p.data, 3):  # r, z, n
                np.testing.assert_allclose(block @ block.T, np.eye(6), atol=1e-12)
        elif name.startswith("weight_ih"):
            fan_out, fan_in = p.shape
            assert np.abs(p.data).max() <= np.sqrt(6 / (fan_in + fan_out))
        else:
            assert np.all(p.data == 0), name


def test_glorot_init():
    cell = unrolled.RNNCell(5, 6, seed=0)
    cell.reset_parameters("glorot")
    assert np.abs(cell.weight_hh.data).max() <= np.sqrt(6 / 12)
    assert np.abs(cell.weight_ih.data).max() <= np.sqrt(6 / 11)
    assert not np.allclose(cell.weight_hh.data @ cell.weight_hh.data.T, np.eye(6), atol=0.1)
    assert np.all(cell.bias_ih.data == 0) and np.all(cell.bias_hh.data == 0)


@pytest.mark.parametrize("module", [unrolled.LSTM(3, 4, num_layers=2, seed=0), unrolled.LSTMCell(3, 4, seed=0)])
def test_forget_bias(module):
    module.reset_parameters("pytorch", forget_bias=1.5)
    for name, p in module.named_parameters():
        if name.startswith("bias_ih"):
            assert np.all(p.data[4:8] == 1.5) and np.all(p.data[:4] != 0), name
        elif name.startswith("bias_hh"):
            assert np.all(p.data[4:8] == 0) and np.all(p.data[8:] != 0), name  # total forget bias 1.5
