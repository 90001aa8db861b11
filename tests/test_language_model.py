"""LanguageModel: shapes, the full backward pass by finite differences, weight tying, TBPTT, PyTorch parity."""
import numpy as np
import pytest
import torch

from unrolled.checkpoint import generator_states, module_generators, restore_generators
from unrolled.core.functional import cross_entropy
from unrolled.models import LanguageModel
from unrolled.tasks.lm import evaluate_loss
from unrolled.testing import gradcheck

torch.set_num_threads(1)
CELLS = ("rnn", "lstm", "gru")


def _ids(rng, T, B, V):
    return rng.integers(0, V, size=(T, B)).astype(np.int64)


def _leaves(state):
    return state if isinstance(state, tuple) else (state,)


def _state(model, B, rng):
    s = model.initial_state(B)
    if isinstance(s, tuple):
        return tuple(rng.standard_normal(x.shape) * 0.5 for x in s)
    return rng.standard_normal(s.shape) * 0.5


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_state_and_parameter_names(cell, rng):
    model = LanguageModel(11, embed=6, hidden=8, layers=2, cell=cell, seed=0)
    logits, state = model(_ids(rng, 5, 3, 11))
    assert logits.shape == (5, 3, 11) and logits.dtype == np.float32
    states = state if cell == "lstm" else (state,)
    assert all(s.shape == (2, 3, 8) and s.dtype == np.float32 for s in states)
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "encoder.weight" and names[-2:] == ["decoder.weight", "decoder.bias"]
    assert "rnn.weight_hh_l1" in names


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tie", [False, True])
def test_full_backward_passes_gradcheck(cell, tie, rng):
    """Every weight and the initial state, through head, recurrence and embedding (float64)."""
    model = LanguageModel(5, embed=3, hidden=3, layers=2, cell=cell, tie_weights=tie, seed=1, dtype=np.float64)
    ids = _ids(rng, 4, 2, 5)
    ids[0, 0] = ids[2, 1]  # a repeated id: its embedding rows must sum
    errors = gradcheck(model, (ids, _state(model, 2, rng)), seed=2)
    assert "encoder.weight" in errors and ("decoder.weight" in errors) != tie


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_backward_through_dropout(cell, rng):
    """Dropout between layers and before the head: masks fixed by rewinding every generator per call."""

    class FixedMasks(LanguageModel):
        def forward(self, ids, state=None):
            restore_generators(module_generators(self), self.snapshot)
            return super().forward(ids, state)

    model = FixedMasks(6, embed=4, hidden=4, layers=2, cell=cell, dropout=0.4, seed=3, dtype=np.float64)
    model.snapshot = generator_states(module_generators(model))
    gradcheck(model, (_ids(rng, 3, 2, 6),), seed=4)


def test_tied_weight_is_one_parameter_whose_gradient_sums_both_uses(rng):
    tied = LanguageModel(7, embed=5, hidden=5, layers=1, tie_weights=True, seed=0, dtype=np.float64)
    untied = LanguageModel(7, embed=5, hidden=5, layers=1, tie_weights=False, seed=0, dtype=np.float64)
    assert tied.decoder.weight is tied.encoder.weight
    assert "decoder.weight" not in dict(tied.named_parameters())
    untied.load_state_dict(tied.state_dict())                       # both names, as torch's state_dict
    ids = _ids(rng, 6, 2, 7)
    g = rng.standard_normal((6, 2, 7))
    for m in (tied, untied):
        m.zero_grad()
        m(ids)
        m.backward(g)
    np.testing.assert_allclose(tied.encoder.weight.grad, untied.encoder.weight.grad + untied.decoder.weight.grad,
                               rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="embed == hidden"):
        LanguageModel(7, embed=4, hidden=5, tie_weights=True)


@pytest.mark.parametrize("cell", CELLS)
def test_chunks_with_carried_state_equal_one_long_sequence(cell, rng):
    """Truncated BPTT's forward: chunk j starting from chunk j-1's final state is the same computation."""
    model = LanguageModel(9, embed=4, hidden=6, layers=2, cell=cell, dropout=0.3, seed=0, dtype=np.float64).eval()
    ids = _ids(rng, 23, 3, 9)
    whole, final = model(ids)
    state, parts = None, []
    for start in range(0, 23, 5):
        logits, state = model(ids[start:start + 5], state)
        parts.append(logits)
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-12, atol=1e-13)
    for a, b in zip(_leaves(state), _leaves(final)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    # the evaluation helper: short chunks over streams == one chunk per stream
    stream = rng.integers(0, 9, size=301)
    np.testing.assert_allclose(evaluate_loss(model, stream, batch=3, seq_len=7),
                               evaluate_loss(model, stream, batch=3, seq_len=99), rtol=1e-12)


def _grads_of_chunks(model, chunks, targets, state=None):
    """Forward and backward chunk after chunk, carrying the state but not its gradient."""
    V = model.vocab_size
    for ids, y in zip(chunks, targets):
        logits, state = model(ids, state)
        _, d = cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        model.backward(d.reshape(logits.shape))
    return state


def test_truncated_bptt_gradient_is_the_sum_of_independent_chunks(rng):
    """Chunk 2's gradient is what it would be alone, from chunk 1's final state taken as a constant."""
    model = LanguageModel(6, embed=3, hidden=4, layers=2, cell="lstm", seed=2, dtype=np.float64)
    ids, y = _ids(rng, 8, 2, 6), _ids(rng, 8, 2, 6)
    model.zero_grad()
    _grads_of_chunks(model, [ids[:4], ids[4:]], [y[:4], y[4:]])
    together = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    carried = _grads_of_chunks(model, [ids[:4]], [y[:4]])
    first = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    _grads_of_chunks(model, [ids[4:]], [y[4:]], state=carried)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(together[n], first[n] + p.grad, rtol=1e-12, atol=1e-14, err_msg=n)
    model.zero_grad()
    _grads_of_chunks(model, [ids], [y])  # full BPTT differs: the truncation is real
    assert any(not np.allclose(together[n], p.grad) for n, p in model.named_parameters())


@pytest.mark.parametrize("cell", CELLS)
def test_step_decoding_equals_forward_and_keeps_no_cache(cell, rng):
    model = LanguageModel(8, embed=4, hidden=5, layers=2, cell=cell, seed=0).eval()
    ids = _ids(rng, 6, 2, 8)
    whole, _ = model(ids)
    model.train()  # step keeps no cache even in training mode
    model.eval()
    state = None
    for t in range(6):
        logits, state = model.step(ids[t], state)
        np.testing.assert_allclose(logits, whole[t], rtol=1e-5, atol=1e-6)
    assert all(not m._cache for m in model.modules())


def test_internals_expose_every_layer(rng):
    model = LanguageModel(8, embed=4, hidden=5, layers=2, cell="lstm", seed=0)
    internals = model.internals(_ids(rng, 7, 1, 8))
    assert len(internals) == 2
    assert set("ifgoch") <= set(internals[0]) and internals[1]["c"].shape == (7, 1, 5)
    assert all(not m._cache for m in model.modules())


@pytest.mark.parametrize("cell", ("lstm", "gru", "rnn"))
def test_equals_pytorch_embedding_rnn_linear(cell, rng):
    """Logits, loss and every gradient against torch (Embedding -> RNN -> Linear, cross-entropy)."""
    V, E, H, L, T, B = 10, 6, 7, 2, 5, 3
    ours = LanguageModel(V, embed=E, hidden=H, layers=L, cell=cell, seed=4, dtype=np.float64)
    enc = torch.nn.Embedding(V, E).double()
    rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](E, H, num_layers=L).double()
    dec = torch.nn.Linear(H, V).double()
    weights = ours.state_dict()
    for prefix, mod in (("encoder.", enc), ("rnn.", rnn), ("decoder.", dec)):
        mod.load_state_dict({k[len(prefix):]: torch.from_numpy(v) for k, v in weights.items() if k.startswith(prefix)})
    ids, y = _ids(rng, T, B, V), _ids(rng, T, B, V)
    logits, _ = ours(ids)
    loss, d = cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    ours.zero_grad()
    ours.backward(d.reshape(logits.shape))
    out, _ = rnn(enc(torch.from_numpy(ids)))
    t_logits = dec(out)
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, V), torch.from_numpy(y).reshape(-1))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss, t_loss.item(), rtol=1e-12)
    grads = {**{"encoder." + k: p.grad for k, p in enc.named_parameters()},
             **{"rnn." + k: p.grad for k, p in rnn.named_parameters()},
             **{"decoder." + k: p.grad for k, p in dec.named_parameters()}}
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_bad_arguments_raise_one_sentence(rng):
    with pytest.raises(ValueError, match="cell must be one of"):
        LanguageModel(5, cell="transformer")
    with pytest.raises(ValueError, match="hidden must be a positive integer"):
        LanguageModel(5, hidden=0)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        LanguageModel(5, dropout=1.0)
    model = LanguageModel(5, embed=3, hidden=3, layers=1)
    with pytest.raises(ValueError, match=r"must lie in 0..4"):
        model(np.array([[0, 5]]))
    with pytest.raises(ValueError, match="integer token ids"):
        model(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2 dimensions"):
        model(np.zeros(3, dtype=np.int64))
