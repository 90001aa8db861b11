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
