"""Finite-difference gradient checks (float64, relative error < 1e-6) for RNN, LSTM (also with
proj_size) and GRU.

The grid crosses every kind with num_layers 1..3 and both directions; for each of those both
`lengths` settings run, and batch_first / given-or-default initial states cycle so that every
kind meets every combination of them. Sizes are tiny (the check perturbs every entry).
"""
import numpy as np
import pytest

import unrolled
from unrolled.testing import gradcheck

T, B, I, H = 4, 3, 3, 2
LENGTHS = [2, 4, 1]  # unsorted, one of them full length

KINDS = {
    "rnn_tanh": (unrolled.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (unrolled.RNN, {"nonlinearity": "relu"}),
    "lstm": (unrolled.LSTM, {}),
    "lstm_proj": (unrolled.LSTM, {"proj_size": 1}),
    "gru": (unrolled.GRU, {}),
}


def _grid():
    options = [(False, False), (False, True), (True, False), (True, True)]  # (batch_first, with_h0)
    cases = []
    for j, (num_layers, bidirectional) in enumerate((n, b) for n in (1, 2, 3) for b in (False, True)):
        batch_first, with_h0 = options[j % 4]
        for lengths in (None, LENGTHS):
            cases.append((num_layers, bidirectional, batch_first, lengths, with_h0))
    return cases


def make_layer(kind, num_layers=1, bidirectional=False, batch_first=False, seed=0, **kwargs):
    cls, extra = KINDS[kind]
    return cls(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
               dtype=np.float64, seed=seed, **extra, **kwargs)


def make_inputs(kind, layer, batch_first, with_h0, rng):
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    if not with_h0:
        return (x,)
    L = layer.num_layers * layer.num_directions
    h0 = rng.standard_normal((L, B, layer.real_hidden_size))
    return (x, (h0, rng.standard_normal((L, B, H))) if kind.startswith("lstm") else h0)


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,lengths,with_h0", _grid())
@pytest.mark.parametrize("kind", KINDS)
def test_layer_gradients_match_finite_differences(kind, num_layers, bidirectional, batch_first, lengths, with_h0):
    rng = np.random.default_rng(1)
    layer = make_layer(kind, num_layers, bidirectional, batch_first)
    inputs = make_inputs(kind, layer, batch_first, with_h0, rng)
    errors = gradcheck(layer, inputs, dict(lengths=lengths))
    checked = {name for name in errors if not name.startswith("input")}
    assert checked == {name for name, _ in layer.named_parameters()}
    n_states = 2 if kind.startswith("lstm") else 1
    assert sum(name.startswith("input") for name in errors) == (1 + n_states if with_h0 else 1)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_without_bias(kind):
    rng = np.random.default_rng(2)
    layer = make_layer(kind, num_layers=2, bidirectional=True, bias=False)
    assert not any("bias" in name for name, _ in layer.named_parameters())
    gradcheck(layer, make_inputs(kind, layer, False, True, rng), dict(lengths=LENGTHS))


def fix_dropout_masks(layer, seed=5):
    """Reseed the layer's Generator before every forward, so every forward draws the same masks."""
    forward = layer.forward

    def reseeded(*args, **kwargs):
        layer.rng = np.random.default_rng(seed)
        return forward(*args, **kwargs)

    layer.forward = reseeded
    return layer


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_through_dropout_between_layers(kind):
    rng = np.random.default_rng(3)
    layer = fix_dropout_masks(make_layer(kind, num_layers=3, bidirectional=True, dropout=0.5))
    inputs = make_inputs(kind, layer, False, True, rng)
    train_out = layer(*inputs, lengths=LENGTHS)[0]
    with unrolled.no_grad():
        assert np.array_equal(layer(*inputs, lengths=LENGTHS)[0], train_out)  # the mask is fixed
    layer.eval()
    assert not np.allclose(layer(*inputs, lengths=LENGTHS)[0], train_out)  # and dropout is active
    gradcheck(layer, inputs, dict(lengths=LENGTHS))


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_through_recurrent_dropout(kind):
    rng = np.random.default_rng(4)
    probe = make_layer(kind, num_layers=2, bidirectional=True, recurrent_dropout=0.5)  # no other dropout
    inputs = make_inputs(kind, probe, False, True, rng)
    train_out = probe(*inputs, lengths=LENGTHS)[0]
    assert not np.allclose(probe.eval()(*inputs, lengths=LENGTHS)[0], train_out)  # the state's mask is active
    layer = fix_dropout_masks(make_layer(kind, num_layers=2, bidirectional=True, dropout=0.3, recurrent_dropout=0.5))
    gradcheck(layer, inputs, dict(lengths=LENGTHS))
