"""A backward pass refused for a gradient of the wrong shape takes nothing: the forward pass still
waits, and the corrected call gives the gradients of a model that never saw the wrong one."""
import numpy as np
import pytest

import unrolled
from unrolled.forecasting.model import EncoderDecoderForecaster, Forecaster
from unrolled.models import LanguageModel
from unrolled.models.classifier import TextClassifier


def _float(rng, *shape):
    return rng.standard_normal(shape)


CASES = {  # module, its forward's arguments, and backward's arguments built from forward's output
    "Linear": (lambda: unrolled.Linear(3, 4, dtype=np.float64, seed=0), lambda rng: (_float(rng, 2, 3),),
               lambda out, rng: (_float(rng, *out.shape),)),
    "LayerNorm": (lambda: unrolled.LayerNorm(4, dtype=np.float64), lambda rng: (_float(rng, 2, 4),),
                  lambda out, rng: (_float(rng, *out.shape),)),
    "Tanh": (unrolled.Tanh, lambda rng: (_float(rng, 2, 4),), lambda out, rng: (_float(rng, *out.shape),)),
    "GRU": (lambda: unrolled.GRU(3, 4, 2, dtype=np.float64, seed=0), lambda rng: (_float(rng, 5, 2, 3),),
            lambda out, rng: (_float(rng, *out[0].shape),)),
    "LSTM": (lambda: unrolled.LSTM(3, 4, bidirectional=True, dtype=np.float64, seed=0),
             lambda rng: (_float(rng, 5, 2, 3),), lambda out, rng: (_float(rng, *out[0].shape),)),
    "LSTMCell": (lambda: unrolled.LSTMCell(3, 4, dtype=np.float64, seed=0), lambda rng: (_float(rng, 2, 3),),
                 lambda out, rng: (_float(rng, *out[0].shape), _float(rng, *out[1].shape))),
    "MultiheadAttention": (lambda: unrolled.MultiheadAttention(4, 2, seed=0).double(),
                           lambda rng: (_float(rng, 3, 2, 4),) * 3,
                           lambda out, rng: (_float(rng, *out[0].shape), _float(rng, *out[1].shape))),
    "LanguageModel": (lambda: LanguageModel(7, embed=3, hidden=4, layers=2, seed=0, dtype=np.float64),
                      lambda rng: (rng.integers(0, 7, (5, 2)),), lambda out, rng: (_float(rng, *out[0].shape),)),
    "ScaledDotProductAttention": (lambda: unrolled.attention.ScaledDotProductAttention(0.5, seed=0),
                                  lambda rng: (_float(rng, 2, 3, 4), _float(rng, 2, 5, 4), _float(rng, 2, 5, 4)),
                                  lambda out, rng: (_float(rng, *out[0].shape), _float(rng, *out[1].shape))),
    "TextClassifier": (lambda: TextClassifier(7, num_classes=3, embed=3, hidden=4, seed=0, dtype=np.float64),
                       lambda rng: (rng.integers(0, 7, (2, 5)),), lambda out, rng: (_float(rng, *out.shape),)),
    "Forecaster": (lambda: Forecaster(3, 2, hidden_size=4, seed=0, dtype=np.float64),
                   lambda rng: (_float(rng, 6, 2, 3),), lambda out, rng: (_float(rng, *out.shape),)),
    "EncoderDecoderForecaster": (lambda: EncoderDecoderForecaster(3, 2, hidden_size=4, seed=0, dtype=np.float64),
                                 lambda rng: (_float(rng, 6, 2, 3),), lambda out, rng: (_float(rng, *out.shape),)),
}


def wrong(args):
    """The same gradients with the last one's last axis one longer."""
    *rest, last = args
    return (*rest, np.zeros(last.shape[:-1] + (last.shape[-1] + 1,)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_refused_backward_takes_nothing(name):
    make, inputs, grads = CASES[name]
    rng = np.random.default_rng(0)
    x = inputs(rng)
    model, reference = make(), make()
    out = model(*x)
    g = grads(out, rng)
    with pytest.raises(ValueError, match="must have shape"):
        model.backward(*wrong(g))
    model.backward(*g)
    reference(*x)
    reference.backward(*g)
    for (key, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=key)
    assert all(not m._cache for m in model.modules())


def test_a_transformer_lm_refused_for_its_state_gradient_takes_nothing():
    """The state's gradient is checked before the output layer takes its cache."""
    model = unrolled.attention.TransformerLM(7, d_model=4, nhead=2, num_layers=2, dim_feedforward=8, dropout=0.0,
                                             seed=0)
    rng = np.random.default_rng(0)
    logits, state = model(rng.integers(0, 7, (3, 2)), model.initial_state(2))
    dlogits = rng.standard_normal(logits.shape).astype(np.float32)
    with pytest.raises(ValueError, match="past must hold one"):
        model.backward(dlogits, (None, state[1][:1]))                      # one layer's pair, not two
    model.backward(dlogits, (None, tuple((np.zeros_like(k), np.zeros_like(v)) for k, v in state[1])))
    assert all(not m._cache for m in model.modules())


def test_a_language_model_refused_for_its_state_gradient_takes_nothing():
    model, reference = (LanguageModel(7, embed=3, hidden=4, layers=2, seed=0, dtype=np.float64) for _ in range(2))
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 7, (5, 2))
    logits, (h, c) = model(ids)
    dlogits, dh, dc = rng.standard_normal(logits.shape), rng.standard_normal(h.shape), rng.standard_normal(c.shape)
    with pytest.raises(ValueError, match=r"dc_n must have shape \(2, 2, 4\), but was given shape \(2, 2, 5\)"):
        model.backward(dlogits, (dh, np.zeros((2, 2, 5))))
    model.backward(dlogits, (dh, dc))
    reference(ids)
    reference.backward(dlogits, (dh, dc))
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)


def test_attention_refused_for_its_present_gradient_takes_nothing():
    mha = unrolled.MultiheadAttention(4, 2, seed=0).double()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 4))
    out, weights, present = mha(x, x, x, past=(np.zeros((1, 2, 4)), np.zeros((1, 2, 4))))
    dout = rng.standard_normal(out.shape)
    with pytest.raises(ValueError, match=r"dpresent values must have shape \(4, 2, 4\), but was given shape \(1, 2, 4\)"):
        mha.backward(dout, None, (np.zeros((4, 2, 4)), np.zeros((1, 2, 4))))   # would broadcast
    mha.backward(dout, None, tuple(np.zeros_like(a) for a in present))
    assert all(not m._cache for m in mha.modules())


def test_once_a_part_has_run_nothing_is_given_back():
    """A failure after a sub-module took its cache, or one that is not a refusal, consumes the
    forward pass as before: giving it back would pair a half-used cache with a retry."""
    model = LanguageModel(7, embed=3, hidden=4, layers=1, seed=0, dtype=np.float64)
    model(np.zeros((5, 2), np.int64))
    model.rnn.backward = lambda *args: (_ for _ in ()).throw(ValueError("refused late"))
    with pytest.raises(ValueError, match="refused late"):
        model.backward(np.ones((5, 2, 7)))
    assert not model._cache and not model.decoder._cache                # the decoder ran: nothing restored
    del model.rnn.backward
    lstm = unrolled.LSTM(3, 4, dtype=np.float64, seed=0)
    out, _ = lstm(np.ones((5, 2, 3)))
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):
        lstm.backward(np.full(out.shape, np.inf))
    assert not lstm._cache
