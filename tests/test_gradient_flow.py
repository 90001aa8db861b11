"""`lm_inspect.gradient_flow`: how far back a prediction's gradient reaches, against torch autograd."""
import numpy as np
import pytest
import torch

from unrolled import no_grad
from unrolled.models import LanguageModel
from unrolled.tasks.lm_inspect import gradient_flow

TORCH_CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


@pytest.mark.parametrize("cell", sorted(TORCH_CELLS))
def test_each_inputs_gradient_norm_equals_torch_autograd(cell):
    V, E, H, L, steps = 9, 4, 6, 2, 7
    model = LanguageModel(V, embed=E, hidden=H, layers=L, cell=cell, dropout=0.5, seed=3, dtype=np.float64)
    ids = np.random.default_rng(0).integers(0, V, size=3 * steps + 2)          # 3 windows, one token left over
    weights = model.state_dict()
    flow = gradient_flow(model, ids, steps)                                      # (3, steps)

    enc = torch.nn.Embedding(V, E).double()
    rnn = TORCH_CELLS[cell](E, H, num_layers=L).double()                         # no dropout
    dec = torch.nn.Linear(H, V).double()
    for prefix, module in (("encoder.", enc), ("rnn.", rnn), ("decoder.", dec)):
        module.load_state_dict({k[len(prefix):]: torch.from_numpy(v) for k, v in weights.items()
                                if k.startswith(prefix)})
    inputs = torch.from_numpy(ids[:3 * steps].reshape(3, steps).T.copy())      # (T, B): window b is column b
    x = enc(inputs).detach().requires_grad_()                                    # (T, B, E)
    out, _ = rnn(x)
    loss = torch.nn.functional.cross_entropy(dec(out[-1]), torch.from_numpy(ids[[steps, 2 * steps, 3 * steps]]),
                                             reduction="sum")                    # windows apart: each its own
    loss.backward()
    expected = x.grad.norm(dim=-1).T.flip(1).numpy()                             # (B, T), k steps back
    np.testing.assert_allclose(flow, expected, rtol=1e-9, atol=1e-14)

    assert all(np.array_equal(v, weights[k]) for k, v in model.state_dict().items())   # the model is untouched:
    assert all(not p.grad.any() for p in model.parameters())                    # no gradient, no cache left
    assert model.training and all(not m._cache for m in model.modules())


def test_bad_arguments_are_one_sentence():
    model = LanguageModel(5, embed=3, hidden=4, layers=1)
    ids = np.arange(30) % 5
    with pytest.raises(ValueError, match="the gradient flow over 10 steps needs at least 11 tokens, but was given 10."):
        gradient_flow(model, ids[:10], 10)
    with pytest.raises(ValueError, match="steps must be a positive integer, but was given 0"):
        gradient_flow(model, ids, 0)
    with pytest.raises(ValueError, match="ids must have 1 dimension"):
        gradient_flow(model, ids.reshape(6, 5), 3)
    with no_grad(), pytest.raises(ValueError, match=r"gradient_flow back-propagates, so it cannot run inside no_grad\(\)"):
        gradient_flow(model, ids, 3)
