"""Unbatched inputs, as torch.nn's: x (T, I) (batch_first does not apply), states (L*D, H) and every
output and gradient without the batch axis; the cells likewise with x (I,) and states (H,).

PyTorch parity in float64 (random non-zero weights) for RNN, LSTM (also with proj_size) and GRU
over 1-2 layers, both directions, batch_first, given and default initial states; bit-for-bit
equality with the batched call on a batch of one; and the one-sentence refusals of a batch axis on
one side only and of `lengths` with an unbatched x.
"""
import itertools

import numpy as np
import pytest
import torch

import unrolled
from test_rnn_errors import raises
from test_rnn_torch import KINDS, assert_close, randomize, state_sizes

torch.set_num_threads(1)

T, I, H = 5, 3, 2


def make_layer(kind, rng, **config):
    ours_cls, torch_cls, extra = KINDS[kind]
    layer = ours_cls(I, H, dtype=np.float64, seed=0, **config, **extra)
    randomize(layer, rng)
    return layer


def run(layer, kind, x, hx, grads, **kwargs):
    """Forward and backward through our layer; returns out, states, dx, d states0 (and internals)."""
    if kind.startswith("lstm"):
        out, states, *internals = layer(x, hx, **kwargs)
        dx, d_states = layer.backward(grads[0], grads[1])
    else:
        out, h_n, *internals = layer(x, None if hx is None else hx[0], **kwargs)
        dx, dh0 = layer.backward(grads[0], grads[1][0])
        states, d_states = (h_n,), (dh0,)
    return (out, tuple(states), dx, tuple(d_states)) + tuple(internals)


def inputs(layer, kind, rng):
    """An unbatched x (T, I), initial states and upstream gradients, all without the batch axis."""
    LD, sizes = layer.num_layers * layer.num_directions, state_sizes(kind)
    x = rng.standard_normal((T, I))
    hx = tuple(rng.standard_normal((LD, n)) for n in sizes)
    grads = (rng.standard_normal((T, layer.num_directions * sizes[0])), tuple(rng.standard_normal((LD, n)) for n in sizes))
    return x, hx, grads


GRID = list(itertools.product(KINDS, (1, 2), (False, True), (False, True), (False, True)))


@pytest.mark.parametrize("kind,num_layers,bidirectional,batch_first,with_h0", GRID)
def test_unbatched_matches_torch(kind, num_layers, bidirectional, batch_first, with_h0):
    rng = np.random.default_rng([num_layers, int(bidirectional), int(batch_first), int(with_h0)])
    config = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    layer = make_layer(kind, rng, **config)
    module = KINDS[kind][1](I, H, **config, **KINDS[kind][2]).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x, hx, grads = inputs(layer, kind, rng)
    hx = hx if with_h0 else None

    out, states, dx, d_states = run(layer, kind, x, hx, grads)

    xt = torch.from_numpy(x).requires_grad_()
    hxt = None if hx is None else tuple(torch.from_numpy(h).requires_grad_() for h in hx)
    t_out, t_states = module(xt, None if hxt is None else (hxt if len(hxt) == 2 else hxt[0]))
    t_states = t_states if isinstance(t_states, tuple) else (t_states,)
    loss = (t_out * torch.from_numpy(grads[0])).sum()
    (loss + sum((s * torch.from_numpy(g)).sum() for s, g in zip(t_states, grads[1]))).backward()

    assert_close(out, t_out, "out")
    for i, (s, ts) in enumerate(zip(states, t_states)):
        assert_close(s, ts, f"state {i}")
    assert_close(dx, xt.grad, "dx")
    for i, d in enumerate(d_states):
        assert d.shape == grads[1][i].shape, f"d state0 {i}: shape {d.shape}"
        if with_h0:
            assert_close(d, hxt[i].grad, f"d state0 {i}")
    for name, p in module.named_parameters():
        assert_close(dict(layer.named_parameters())[name].grad, p.grad, name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", (False, True))
def test_unbatched_is_a_batch_of_one_bit_for_bit(kind, batch_first):
    """Outputs, states, internals, dx, d states0 and every weight gradient: the batched call on x[:, None]
    (x[None] batch_first), with the batch axis then dropped, gives the same bits."""
    rng = np.random.default_rng(21)
    config = dict(num_layers=2, bidirectional=True, batch_first=batch_first)
    one, batched = make_layer(kind, rng, **config), make_layer(kind, rng, **config)
    batched.load_state_dict(one.state_dict())
    x, hx, grads = inputs(one, kind, rng)
    ours = run(one, kind, x, hx, grads, return_internals=True)
    assert not ours[0].flags.writeable                                  # read-only until backward, as batched
    with_axis = (x[None] if batch_first else x[:, None], tuple(h[:, None] for h in hx),
                 (grads[0][None] if batch_first else grads[0][:, None], tuple(g[:, None] for g in grads[1])))
    out, states, dx, d_states, internals = run(batched, kind, *with_axis, return_internals=True)
    np.testing.assert_array_equal(ours[0], out[0] if batch_first else out[:, 0])
    np.testing.assert_array_equal(ours[2], dx[0] if batch_first else dx[:, 0])
    for ours_s, s in zip(ours[1] + ours[3], states + d_states):
        assert ours_s.shape == s[:, 0].shape
        np.testing.assert_array_equal(ours_s, s[:, 0])
    assert len(ours[4]) == len(internals) == 4                          # per layer and direction
    for ours_arrays, arrays in zip(ours[4], internals):
        assert list(ours_arrays) == list(arrays)
        for name, a in arrays.items():
            assert ours_arrays[name].shape == (T, a.shape[2])
            np.testing.assert_array_equal(ours_arrays[name], a[:, 0], err_msg=name)
    for (name, p), (_, q) in zip(one.named_parameters(), batched.named_parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


@pytest.mark.parametrize("kind", ("rnn_tanh", "lstm_proj", "gru"))
def test_unbatched_float32_and_dropout_between_layers(kind):
    """float32 stays float32, and dropout between layers draws the masks of a batch of one."""
    rng = np.random.default_rng(22)
    ours_cls, _, extra = KINDS[kind]
    one, batched = (ours_cls(I, H, num_layers=2, dropout=0.5, recurrent_dropout=0.3, seed=7, **extra)
                    for _ in range(2))
    x = rng.standard_normal((T, I)).astype(np.float32)
    out, _ = one(x)
    dx, _ = one.backward(np.ones_like(out))
    out1, _ = batched(x[:, None])
    dx1, _ = batched.backward(np.ones_like(out1))
    assert out.dtype == dx.dtype == np.float32 and out.shape == (T, state_sizes(kind)[0]) and dx.shape == (T, I)
    np.testing.assert_array_equal(out, out1[:, 0])
    np.testing.assert_array_equal(dx, dx1[:, 0])


# ----- cells: x (I,), states (H,) -------------------------------------------------------------------

CELLS = {
    "rnn_tanh": (unrolled.RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (unrolled.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (unrolled.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (unrolled.GRUCell, torch.nn.GRUCell, {}),
}


def cell_run(cell, kind, x, states, d_states):
    """states and d_states: tuples (h,) or (h, c); returns the new states, dx and d states."""
    if kind == "lstm":
        new = cell(x, states)
        dx, d = cell.backward(*d_states)
        return tuple(new), dx, tuple(d)
    h1 = cell(x, None if states is None else states[0])
    dx, dh = cell.backward(d_states[0])
    return (h1,), dx, (dh,)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("with_state", (False, True))
def test_unbatched_cell_matches_torch_and_a_batch_of_one(kind, with_state):
    rng = np.random.default_rng(23)
    ours_cls, torch_cls, extra = CELLS[kind]
    cell, batched = (ours_cls(I, H, dtype=np.float64, seed=0, **extra) for _ in range(2))
    randomize(cell, rng)
    batched.load_state_dict(cell.state_dict())
    module = torch_cls(I, H, **extra).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
    n = 2 if kind == "lstm" else 1
    x, states, d_states = rng.standard_normal(I), tuple(rng.standard_normal((n, H))), tuple(rng.standard_normal((n, H)))
    states = states if with_state else None

    new, dx, d = cell_run(cell, kind, x, states, d_states)

    xt = torch.from_numpy(x).requires_grad_()
    st = None if states is None else tuple(torch.from_numpy(s).requires_grad_() for s in states)
    t_new = module(xt, None if st is None else (st if n == 2 else st[0]))
    t_new = t_new if isinstance(t_new, tuple) else (t_new,)
    sum((s * torch.from_numpy(g)).sum() for s, g in zip(t_new, d_states)).backward()
    for i, (s, ts) in enumerate(zip(new, t_new)):
        assert_close(s, ts, f"state {i}")
    assert_close(dx, xt.grad, "dx")
    assert all(g.shape == (H,) for g in d)
    if with_state:
        for i, (g, s) in enumerate(zip(d, st)):
            assert_close(g, s.grad, f"d state {i}")
    for name, p in module.named_parameters():
        assert_close(dict(cell.named_parameters())[name].grad, p.grad, name)

    new1, dx1, d1 = cell_run(batched, kind, x[None], None if states is None else tuple(s[None] for s in states),
                             tuple(g[None] for g in d_states))
    for ours, theirs in zip(new + (dx,) + d, new1 + (dx1,) + d1):
        np.testing.assert_array_equal(ours, theirs[0])
    for (name, p), (_, q) in zip(cell.named_parameters(), batched.named_parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


# ----- refusals: one ValueError sentence, where torch raises too ------------------------------------

def test_a_batch_axis_on_one_side_only_is_refused():
    gru = unrolled.GRU(I, H, num_layers=2, dtype=np.float64)
    x, h0 = np.zeros((T, I)), np.zeros((2, H))
    raises(r"h0 must have 2 dimensions \(no batch axis\) as x is unbatched, but was given shape \(2, 1, 2\)",
           gru, x, h0[:, None])
    raises(r"h0 must have 3 dimensions \(with a batch axis\) as x is batched, but was given shape \(2, 2\)",
           gru, x[:, None], h0)
    for x_t, h_t in ((x, h0[:, None]), (x[:, None], h0)):             # torch refuses both too
        with pytest.raises(RuntimeError, match="should also be"):
            torch.nn.GRU(I, H, num_layers=2).double()(torch.from_numpy(x_t), torch.from_numpy(h_t))
    lstm = unrolled.LSTM(I, H + 1, proj_size=H, dtype=np.float64)
    raises(r"c0 must have 2 dimensions \(no batch axis\) as x is unbatched, but was given shape \(1, 1, 3\)",
           lstm, x, (np.zeros((1, H)), np.zeros((1, 1, H + 1))))
    raises(r"h0 must have 3 dimensions \(with a batch axis\) as x is batched, but was given shape \(1, 2\)",
           lstm, x[:, None], (np.zeros((1, H)), None))


def test_unbatched_shapes_and_dtypes_are_checked():
    lstm = unrolled.LSTM(I, H + 1, proj_size=H, num_layers=2, batch_first=True, dtype=np.float64)
    x = np.zeros((T, I))
    raises(r"x must have shape \(any, 3\), but was given shape \(5, 4\)", lstm, np.zeros((T, I + 1)))
    raises(r"x must have 2 or 3 dimensions, but was given shape \(5,\)", lstm, np.zeros(T))
    raises(r"x must hold at least one step of one sequence, but was given shape \(0, 3\)", lstm, np.zeros((0, I)))
    raises(r"h0 must have shape \(2, 2\), but was given shape \(2, 3\)", lstm, x, (np.zeros((2, H + 1)), None))
    raises(r"c0 must have shape \(2, 3\), but was given shape \(2, 2\)", lstm, x, (None, np.zeros((2, H))))
    raises("h0 must have dtype float64", lstm, x, (np.zeros((2, H), np.float32), None))


def test_lengths_with_an_unbatched_x_are_refused():
    """torch packs only batches (pack_padded_sequence reads a 2-D input as (T, B)), so there is no
    unbatched packed input to mirror: one sequence's length is x[:length]."""
    gru = unrolled.GRU(I, H, dtype=np.float64)
    raises(r"lengths needs a batched x, but x is unbatched \(one sequence\) of shape \(5, 3\); pass x\[:length\] "
           "instead", gru, np.zeros((T, I)), lengths=[3])
    raises("lengths needs a batched x", gru, np.zeros((T, I)), lengths=3)


def test_backward_gradients_must_match_the_forwards_batching():
    lstm = unrolled.LSTM(I, H, bidirectional=True, dtype=np.float64)
    lstm(np.zeros((T, I)))
    raises(r"d_out must have 2 dimensions \(no batch axis\) as the forward's x was unbatched, but was given shape "
           r"\(5, 1, 4\)", lstm.backward, np.zeros((T, 1, 2 * H)))
    lstm(np.zeros((T, I)))
    raises(r"d_out must have shape \(5, 4\), but was given shape \(5, 2\)", lstm.backward, np.zeros((T, H)))
    lstm(np.zeros((T, I)))
    raises(r"d_c_n must have 2 dimensions \(no batch axis\) as the forward's x was unbatched, but was given shape "
           r"\(2, 1, 2\)", lstm.backward, None, (None, np.zeros((2, 1, H))))
    lstm(np.zeros((T, 1, I)))
    raises(r"d_out must have 3 dimensions \(with a batch axis\) as the forward's x was batched, but was given shape "
           r"\(5, 4\)", lstm.backward, np.zeros((T, 2 * H)))
    lstm(np.zeros((T, 1, I)))
    raises(r"d_h_n must have 3 dimensions \(with a batch axis\) as the forward's x was batched, but was given shape "
           r"\(2, 2\)", lstm.backward, None, (np.zeros((2, H)), None))


@pytest.mark.parametrize("cell_cls", [unrolled.RNNCell, unrolled.LSTMCell, unrolled.GRUCell])
def test_unbatched_cell_refusals(cell_cls):
    cell = cell_cls(I, H, dtype=np.float64)
    state = (lambda h: (h, None)) if cell_cls is unrolled.LSTMCell else (lambda h: h)
    raises(r"x must have shape \(3,\), but was given shape \(2,\)", cell, np.zeros(2))
    raises(r"h must have 1 dimension \(no batch axis\) as x is unbatched, but was given shape \(1, 2\)",
           cell, np.zeros(I), state(np.zeros((1, H))))
    raises(r"h must have 2 dimensions \(with a batch axis\) as x is batched, but was given shape \(2,\)",
           cell, np.zeros((1, I)), state(np.zeros(H)))
    raises(r"h must have shape \(2,\), but was given shape \(3,\)", cell, np.zeros(I), state(np.zeros(3)))
    cell(np.zeros(I))
    raises(r"dh1 must have 1 dimension \(no batch axis\) as the forward's x was unbatched, but was given shape "
           r"\(1, 2\)", cell.backward, np.zeros((1, H)))
    cell(np.zeros((1, I)))
    raises(r"dh1 must have 2 dimensions \(with a batch axis\) as the forward's x was batched, but was given shape "
           r"\(2,\)", cell.backward, np.zeros(H))
