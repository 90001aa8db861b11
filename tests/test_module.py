import numpy as np
import pytest
import torch

import unrolled
from unrolled import Module, Parameter, no_grad
from unrolled.core import init
from unrolled.testing import gradcheck


class Affine(Module):
    """y = x * w + b, elementwise: the smallest module with a backward pass."""

    def __init__(self, n):
        super().__init__()
        self.w = Parameter(np.arange(1.0, n + 1))
        self.b = Parameter(np.ones(n))

    def forward(self, x):
        self._save(x)
        return x * self.w.data + self.b.data

    def backward(self, dy):
        x = self._restore()
        self.w.grad += (dy * x).sum(0)
        self.b.grad += dy.sum(0)
        return dy * self.w.data


class Pair(Module):
    def __init__(self):
        super().__init__()
        self.first = Affine(3)
        self.blocks = [Affine(3), Affine(3)]
        self.tied = self.first.w  # a tied parameter is listed once, under its first name


def test_named_parameters_are_dotted_and_unique():
    names = [n for n, _ in Pair().named_parameters()]
    assert names == ["first.w", "first.b", "blocks.0.w", "blocks.0.b", "blocks.1.w", "blocks.1.b"]


def test_state_dict_round_trip_and_strictness():
    a, b = Pair(), Pair()
    for p in a.parameters():
        p.data[...] = np.random.default_rng(1).standard_normal(p.shape)
    b.load_state_dict(a.state_dict())
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"first.w": np.zeros(3)})
    before = b.state_dict()
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict({**a.state_dict(), "blocks.1.b": np.zeros(4)})
    for k, v in b.state_dict().items():  # a failed load changes nothing
        np.testing.assert_array_equal(v, before[k])
    missing, unexpected = b.load_state_dict({"first.w": np.zeros(3), "extra": np.zeros(1)}, strict=False)
    assert "first.b" in missing and unexpected == ["extra"]


def test_backward_pairs_with_forward_in_reverse_order():
    m = Affine(2)
    x1, x2 = np.array([[1.0, 2.0]]), np.array([[3.0, 5.0]])
    m(x1)
    m(x2)
    m.backward(np.ones((1, 2)))  # pops x2
    np.testing.assert_array_equal(m.w.grad, [3.0, 5.0])
    m.backward(np.ones((1, 2)))  # pops x1, accumulating
    np.testing.assert_array_equal(m.w.grad, [4.0, 7.0])
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        m.backward(np.ones((1, 2)))


def test_inference_keeps_no_cache():
    m = Affine(2)
    with no_grad():
        m(np.ones((1, 2)))
    assert m._cache == []
    m.eval()
    m(np.ones((1, 2)))
    assert m._cache == []
    m.train()
    m(np.ones((1, 2)))
    assert len(m._cache) == 1


def test_gradcheck_passes_and_catches_a_wrong_gradient():
    m = Affine(4)
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert max(gradcheck(m, (x,)).values()) < 1e-8

    class Wrong(Affine):
        def backward(self, dy):
            return 2 * super().backward(dy)

    with pytest.raises(AssertionError, match="input"):
        gradcheck(Wrong(4), (x,))


def test_to_double_casts_parameters_and_grads():
    m = Pair().float()
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32 for p in m.parameters())
    m.double()
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in m.parameters())


def test_orthogonal_and_glorot(rng):
    q = init.orthogonal((6, 4), rng, np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-12)
    w = init.orthogonal_blocks((12, 4), 3, rng, np.float64)
    for k in range(3):
        blk = w[4 * k:4 * k + 4]
        np.testing.assert_allclose(blk @ blk.T, np.eye(4), atol=1e-12)
    g = init.glorot_uniform((50, 30), rng)
    assert np.abs(g).max() <= np.sqrt(6 / 80)
    b = init.forget_gate_bias(np.zeros(12), 3)
    np.testing.assert_array_equal(b, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="seed"):
        init.as_generator("x")


def test_a_tied_weight_is_in_the_state_dict_under_each_name_as_in_torch():
    emb, lin = unrolled.Embedding(5, 3, dtype=np.float64, seed=0), unrolled.Linear(3, 5, dtype=np.float64, seed=1)
    lin.weight = emb.weight
    ours = unrolled.Sequential(emb, lin)
    theirs = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5)).double()
    theirs[1].weight = theirs[0].weight
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["0.weight", "1.weight", "1.bias"]
    assert [name for name, _ in ours.named_parameters()] == ["0.weight", "1.bias"]      # one Parameter
    assert ours.load_state_dict(theirs.state_dict()) == ([], [])
    np.testing.assert_array_equal(lin.weight.data, theirs[1].weight.detach().numpy())
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert ours.load_state_dict({"0.weight": np.ones((5, 3)), "1.bias": np.zeros(5)}) == ([], [])  # one name is enough
    np.testing.assert_array_equal(lin.weight.data, 1)
    with pytest.raises(ValueError, match="is missing '1.bias'"):
        ours.load_state_dict({"1.weight": np.ones((5, 3))})
    untied = {"0.weight": np.ones((5, 3)), "1.weight": np.zeros((5, 3)), "1.bias": np.zeros(5)}
    with pytest.raises(ValueError, match="different arrays for '0.weight' and '1.weight', which name one tied weight"):
        ours.load_state_dict(untied)                                 # an untied model's weights do not fit
    np.testing.assert_array_equal(lin.weight.data, 1)                # all or nothing
