"""Equivalences that pin the layers down without PyTorch (float64 unless noted).

- a layer equals a manual loop over its cell with the same weights (forward and backward);
- a padded batch with lengths equals each sequence run alone;
- return_internals agrees with the outputs and states;
- dropout between layers: active in training only, reproducible from the seed;
- inference stores nothing, backward pairs with forward in reverse order, float32 stays float32.
"""
import numpy as np
import pytest

import unrolled
from unrolled import no_grad

T, B, I, H = 5, 4, 3, 2
LENGTHS = [3, 5, 1, 4]

LAYERS = {
    "rnn_tanh": (unrolled.RNN, unrolled.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (unrolled.RNN, unrolled.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (unrolled.LSTM, unrolled.LSTMCell, {}),
    "gru": (unrolled.GRU, unrolled.GRUCell, {}),
}


def make_layer(kind, dtype=np.float64, seed=0, **kwargs):
    layer_cls, _, extra = LAYERS[kind]
    return layer_cls(I, H, dtype=dtype, seed=seed, **extra, **kwargs)


def states_of(kind, L, rng):
    shape = (L, B, H)
    return (rng.standard_normal(shape), rng.standard_normal(shape)) if kind == "lstm" else (rng.standard_normal(shape),)


def call(layer, kind, x, states, lengths=None, **kwargs):
    """Uniform call: returns out, a tuple of final states (and internals if asked)."""
    result = layer(x, states if kind == "lstm" else states[0], lengths=lengths, **kwargs)
    finals = result[1] if kind == "lstm" else (result[1],)
    return (result[0], finals) + tuple(result[2:])


def back(layer, kind, d_out, d_finals):
    """Uniform backward: returns dx and a tuple of initial-state gradients."""
    if kind == "lstm":
        return layer.backward(d_out, d_finals)
    dx, dh0 = layer.backward(d_out, d_finals[0])
    return dx, (dh0,)


def grads(module):
    return {n: p.grad.copy() for n, p in module.named_parameters()}


def close(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.abs(b).max(), 1.0))


# ----- layer vs its cell ----------------------------------------------------------------------

def cell_loop(cell, kind, xs, states):
    """Run `cell` over xs (T, B, I) from `states`; returns the outputs and the final states."""
    outs = []
    for x in xs:
        result = cell(x, states if kind == "lstm" else states[0])
        states = result if kind == "lstm" else (result,)
        outs.append(states[0])
    return np.stack(outs), states


def cell_loop_backward(cell, kind, d_outs, d_states):
    """Backward through `cell_loop`, newest step first; returns dxs (T, B, I) and d initial states."""
    dxs = []
    for d_out in d_outs[::-1]:
        d_h = d_states[0] + d_out
        if kind == "lstm":
            dx, d_states = cell.backward(d_h, d_states[1])
        else:
            dx, dh = cell.backward(d_h)
            d_states = (dh,)
        dxs.append(dx)
    return np.stack(dxs[::-1]), d_states


@pytest.mark.parametrize("kind", LAYERS)
def test_layer_equals_a_loop_over_its_cell(kind):
    rng = np.random.default_rng(0)
    _, cell_cls, extra = LAYERS[kind]
    layer = make_layer(kind, bidirectional=True)
    for p in layer.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.7
    x = rng.standard_normal((T, B, I))
    states = states_of(kind, 2, rng)
    d_out = rng.standard_normal((T, B, 2 * H))
    d_finals = states_of(kind, 2, rng)

    out, finals = call(layer, kind, x, states)
    dx, d_states0 = back(layer, kind, d_out, d_finals)

    dx_cells = np.zeros_like(x)
    for d, suffix in enumerate(("_l0", "_l0_reverse")):
        cell = cell_cls(I, H, dtype=np.float64, **extra)
        cell.load_state_dict({k: layer.state_dict()[k + suffix] for k in cell.state_dict()})
        flip = slice(None, None, -1) if d else slice(None)   # the reverse direction reads time backwards
        outs, cell_finals = cell_loop(cell, kind, x[flip], tuple(s[d] for s in states))
        close(out[..., d * H:(d + 1) * H], outs[flip])
        for f, cf in zip(finals, cell_finals):
            close(f[d], cf)
        dxs, cell_d0 = cell_loop_backward(cell, kind, d_out[flip, :, d * H:(d + 1) * H],
                                          tuple(s[d] for s in d_finals))
        dx_cells += dxs[flip]
        for a, b in zip(d_states0, cell_d0):
            close(a[d], b)
        for name, p in cell.named_parameters():
            close(getattr(layer, name + suffix).grad, p.grad)
    close(dx, dx_cells)


# ----- a padded batch vs each sequence alone -------------------------------------------------

@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_masked_batch_equals_each_sequence_alone(kind, num_layers, bidirectional):
    rng = np.random.default_rng(1)
    layer = make_layer(kind, num_layers=num_layers, bidirectional=bidirectional)
    L = num_layers * layer.num_directions
    x = rng.standard_normal((T, B, I))
    states = states_of(kind, L, rng)
    d_out = rng.standard_normal((T, B, layer.num_directions * H))
    d_finals = states_of(kind, L, rng)

    out, finals = call(layer, kind, x, states, lengths=LENGTHS)
    dx, d_states0 = back(layer, kind, d_out, d_finals)
    batch_grads = grads(layer)

    summed = {n: np.zeros_like(g) for n, g in batch_grads.items()}
    for b, n in enumerate(LENGTHS):
        layer.zero_grad()
        alone, alone_finals = call(layer, kind, x[:n, b:b + 1], tuple(s[:, b:b + 1] for s in states))
        close(out[:n, b:b + 1], alone)
        assert np.all(out[n:, b] == 0)  # padded outputs are zero
        for f, af in zip(finals, alone_finals):
            close(f[:, b:b + 1], af)
        dx_alone, d0_alone = back(layer, kind, d_out[:n, b:b + 1], tuple(s[:, b:b + 1] for s in d_finals))
        close(dx[:n, b:b + 1], dx_alone)
        assert np.all(dx[n:, b] == 0)  # padding gets no gradient
        for d0, d0a in zip(d_states0, d0_alone):
            close(d0[:, b:b + 1], d0a)
        for name, g in grads(layer).items():
            summed[name] += g
    for name, g in batch_grads.items():
        close(g, summed[name])


def test_full_lengths_equal_no_lengths():
    rng = np.random.default_rng(2)
    layer = make_layer("lstm", num_layers=2, bidirectional=True)
    x = rng.standard_normal((T, B, I))
    a, (h_a, c_a) = layer(x)
    b, (h_b, c_b) = layer(x, lengths=[T] * B)
    close(b, a)
    close(h_b, h_a)
    close(c_b, c_a)


# ----- internals ------------------------------------------------------------------------------

def test_projected_lstm_internals_agree_with_outputs():
    """With proj_size, h = (o tanh(c)) W_hr^T has P units, the gates and c have H."""
    rng = np.random.default_rng(4)
    P = 1
    layer = unrolled.LSTM(I, H, proj_size=P, bidirectional=True, dtype=np.float64, seed=0)
    out, (h_n, c_n), internals = layer(rng.standard_normal((T, B, I)), return_internals=True)
    assert out.shape == (T, B, 2 * P) and h_n.shape == (2, B, P) and c_n.shape == (2, B, H)
    for d, parts in enumerate(internals):
        w_hr = getattr(layer, "weight_hr_l0" + ("_reverse" if d else "")).data    # (P, H)
        assert parts["h"].shape == (T, B, P) and all(parts[k].shape == (T, B, H) for k in "ifgoc")
        close(parts["h"], (parts["o"] * np.tanh(parts["c"])) @ w_hr.T)
        np.testing.assert_array_equal(parts["h"], out[..., d * P:(d + 1) * P])
    assert repr(layer) == "LSTM(3, 2, bidirectional=True, proj_size=1)"


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_internals_agree_with_outputs(kind, lengths):
    rng = np.random.default_rng(3)
    layer = make_layer(kind, num_layers=2, bidirectional=True)
    x = rng.standard_normal((T, B, I))
    states = states_of(kind, 4, rng)
    out, finals, internals = call(layer, kind, x, states, lengths=lengths, return_internals=True)
    names = {"rnn_tanh": "h", "rnn_relu": "h", "lstm": "ifgoch", "gru": "rznh"}[kind]
    n = np.array(lengths or [T] * B)
    valid = np.arange(T)[:, None] < n                           # (T, B)
    assert len(internals) == 4
    for k, parts in enumerate(internals):
        d = k % 2
        assert set(parts) == set(names) and all(a.shape == (T, B, H) for a in parts.values())
        if k >= 2:  # the top layer's h is the output
            np.testing.assert_array_equal(parts["h"], out[..., d * H:(d + 1) * H])
        ends = n - 1 if d == 0 else np.zeros(B, int)            # the reverse direction ends at t = 0
        for final, name in zip(finals, "hc"):
            np.testing.assert_array_equal(final[k], parts[name][ends, np.arange(B)])
        for name, a in parts.items():
            assert np.all(a[~valid] == 0), f"{name} is not zero on padding"
            if name in "ifozr":
                assert np.all((a[valid] > 0) & (a[valid] < 1)), f"{name} is not a sigmoid gate"
        if kind == "lstm":  # h = o tanh(c) and c = f c_prev + i g, in the direction's own time order
            close(parts["h"], parts["o"] * np.tanh(parts["c"]))
            c = parts["c"]
            if d == 0:
                prev, has_prev = np.roll(c, 1, axis=0), valid & (np.arange(T)[:, None] >= 1)
            else:
                prev, has_prev = np.roll(c, -1, axis=0), np.roll(valid, -1, axis=0) & (np.arange(T)[:, None] < T - 1)
            expected = parts["f"] * prev + parts["i"] * parts["g"]
            close(c[has_prev], expected[has_prev])
    layer.eval()  # inspection works in inference too, with the same numbers and nothing kept
    again = call(layer, kind, x, states, lengths=lengths, return_internals=True)[2]
    for parts, parts_again in zip(internals, again):
        for name in parts:
            np.testing.assert_array_equal(parts[name], parts_again[name])
    assert layer._cache == []


# ----- dropout between layers -----------------------------------------------------------------

@pytest.mark.parametrize("kind", LAYERS)
def test_dropout_only_in_training_and_reproducible(kind):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, I))
    layer = make_layer(kind, num_layers=2, dropout=0.5, seed=1)
    twin = make_layer(kind, num_layers=2, dropout=0.5, seed=1)
    plain = make_layer(kind, num_layers=2, seed=1)  # same weights, no dropout
    train_out = layer(x)[0]
    np.testing.assert_array_equal(twin(x)[0], train_out)  # same seed, same masks, same numbers
    assert not np.allclose(layer(x)[0], train_out)  # a fresh mask on the next call
    layer.eval()
    eval_out = layer(x)[0]
    assert not np.allclose(eval_out, train_out)
    np.testing.assert_array_equal(eval_out, plain(x)[0])  # eval ignores dropout


def test_dropout_skips_the_last_layer():
    x = np.random.default_rng(5).standard_normal((T, B, I))
    layer = make_layer("gru", num_layers=1, dropout=0.5)
    train_out = layer(x)[0]
    layer.eval()
    np.testing.assert_array_equal(layer(x)[0], train_out)


def test_dropout_masks_are_kept_for_backward():
    """Two forwards (two masks) then two backwards: each backward uses its own forward's mask."""
    rng = np.random.default_rng(6)
    x1, x2 = rng.standard_normal((2, T, B, I))
    g1, g2 = rng.standard_normal((2, T, B, H))
    layer = make_layer("lstm", num_layers=2, dropout=0.5, seed=3)
    layer(x1)
    layer(x2)
    dx2, _ = layer.backward(g2)
    dx1, _ = layer.backward(g1)
    alone = make_layer("lstm", num_layers=2, dropout=0.5, seed=3)
    alone(x1)
    np.testing.assert_array_equal(alone.backward(g1)[0], dx1)
    alone(x2)
    np.testing.assert_array_equal(alone.backward(g2)[0], dx2)


# ----- inference, pairing, accumulation, dtype -------------------------------------------------

@pytest.mark.parametrize("kind", LAYERS)
def test_inference_keeps_nothing_and_gives_the_same_numbers(kind):
    rng = np.random.default_rng(7)
    layer = make_layer(kind, num_layers=2, bidirectional=True)
    x = rng.standard_normal((T, B, I))
    states = states_of(kind, 4, rng)
    out, finals = call(layer, kind, x, states, lengths=LENGTHS)
    layer.clear_cache()
    with no_grad():
        out_ng, finals_ng = call(layer, kind, x, states, lengths=LENGTHS)
    assert layer._cache == []
    layer.eval()
    out_ev, finals_ev = call(layer, kind, x, states, lengths=LENGTHS)
    assert layer._cache == []
    for a, b, c in zip((out, *finals), (out_ng, *finals_ng), (out_ev, *finals_ev)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        layer.backward(np.ones_like(out))


def test_backward_pairs_with_forward_in_reverse_order_and_accumulates():
    rng = np.random.default_rng(8)
    x1, x2 = rng.standard_normal((2, T, B, I))
    g1, g2 = rng.standard_normal((2, T, B, 2 * H))
    layer = make_layer("gru", num_layers=2, bidirectional=True)
    layer(x1, lengths=LENGTHS)
    layer(x2)
    dx2, _ = layer.backward(g2)
    dx1, _ = layer.backward(g1)
    both = grads(layer)
    expected = {}
    for x, g, lengths, dx in ((x1, g1, LENGTHS, dx1), (x2, g2, None, dx2)):
        layer.zero_grad()
        layer(x, lengths=lengths)
        np.testing.assert_array_equal(layer.backward(g)[0], dx)
        for name, grad in grads(layer).items():
            expected[name] = expected.get(name, 0) + grad
    for name, grad in both.items():
        close(grad, expected[name])


def test_state_gradient_alone_reaches_the_input():
    """d_out=None means zeros: a loss on h_n alone still back-propagates through every step."""
    rng = np.random.default_rng(9)
    layer = make_layer("lstm", num_layers=2)
    x = rng.standard_normal((T, B, I))
    layer(x)
    dx, (dh0, dc0) = layer.backward(None, (rng.standard_normal((2, B, H)), None))
    assert np.all(dx != 0) and np.all(dh0 != 0) and np.all(dc0 != 0)


@pytest.mark.parametrize("kind", LAYERS)
def test_float32_stays_float32(kind):
    rng = np.random.default_rng(10)
    layer = make_layer(kind, dtype=np.float32, num_layers=2, bidirectional=True, dropout=0.3, batch_first=True)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    out, finals, internals = call(layer, kind, x, (None, None) if kind == "lstm" else (None,),
                                  lengths=LENGTHS, return_internals=True)
    dx, d0 = back(layer, kind, np.ones_like(out), (None, None) if kind == "lstm" else (None,))
    arrays = [out, *finals, dx, *d0, *(a for parts in internals for a in parts.values())]
    assert all(a.dtype == np.float32 for a in arrays)
    assert all(p.data.dtype == p.grad.dtype == np.float32 for p in layer.parameters())
    assert out.shape == (B, T, 2 * H) and dx.shape == x.shape and out.flags.c_contiguous


def test_double_casts_the_layer():
    layer = make_layer("lstm", dtype=np.float32).double()
    out, _ = layer(np.zeros((T, B, I)))
    assert out.dtype == np.float64 and layer.dtype == np.float64


@pytest.mark.parametrize("kind,extra", [(kind, {}) for kind in LAYERS] + [("lstm", {"proj_size": 1})])
def test_whatever_the_padding_holds_changes_nothing(kind, extra):
    """NaN or inf past a sequence's length reaches no output, no dx and no weight gradient."""
    rng = np.random.default_rng(6)
    P = extra.get("proj_size", H)
    x, d_out = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, 2 * P))
    padding = np.arange(T)[:, None] >= np.array(LENGTHS)          # (T, B)
    results = []
    for fill in (0.0, np.nan, np.inf):
        layer = make_layer(kind, num_layers=2, bidirectional=True, **extra)
        x_filled = x.copy()
        x_filled[padding] = fill
        out = layer(x_filled, lengths=LENGTHS)[0]
        dx = layer.backward(d_out)[0]
        results.append([out, dx, *(p.grad for p in layer.parameters())])
    for zero, *others in zip(*results):
        for other in others:
            np.testing.assert_array_equal(other, zero)
