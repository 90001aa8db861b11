"""Linear, Embedding, Dropout, LayerNorm and Sequential: finite differences, PyTorch parity, errors."""
import numpy as np
import pytest
import torch

from unrolled import Dropout, Embedding, LayerNorm, Linear, LogSoftmax, Sequential, Sigmoid, Softmax, Tanh, no_grad
from unrolled.testing import gradcheck

torch.set_num_threads(1)


@pytest.fixture
def rng():
    """Not seed 0: gradcheck draws its upstream gradient from seed 0, and an input drawn from the
    same stream would make the upstream gradient a multiple of the input (LayerNorm's gradient then
    all but vanishes)."""
    return np.random.default_rng(12345)


def assert_close(ours, theirs, rtol=1e-8):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-13)


def randomize(module, rng, scale=0.5):
    """Random non-zero values in every parameter (biases included), so no term can hide."""
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * scale + 0.1
    return module


def to_torch(module, torch_module):
    """Load our state_dict into the torch module as it is."""
    torch_module.load_state_dict({k: torch.tensor(v) for k, v in module.state_dict().items()})
    return torch_module


def compare_grads(module, torch_module):
    torch_params = dict(torch_module.named_parameters())
    for name, p in module.named_parameters():
        assert_close(p.grad, torch_params[name].grad)


# ----- Linear ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(shape, bias, rng):
    m = randomize(Linear(5, 4, bias=bias, seed=1).double(), rng)
    assert max(gradcheck(m, (rng.standard_normal(shape),)).values()) < 1e-6


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(bias, rng):
    m = randomize(Linear(6, 3, bias=bias, dtype=np.float64, seed=0), rng)
    t = to_torch(m, torch.nn.Linear(6, 3, bias=bias, dtype=torch.float64))
    x, dy = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 4, 3))
    y, dx = m(x), m.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = t(xt)
    yt.backward(torch.tensor(dy))
    assert_close(y, yt)
    assert_close(dx, xt.grad)
    compare_grads(m, t)


def test_linear_init_is_torchs_and_loads_torchs_state_dict():
    m = Linear(100, 50, seed=3)
    assert m.weight.shape == (50, 100) and m.bias.shape == (50,) and m.weight.dtype == np.float32
    bound = 1 / np.sqrt(100)
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.weight.data).max() > 0.95 * bound
    assert np.abs(m.bias.data).max() <= bound and m.bias.data.std() > 0.3 * bound
    np.testing.assert_array_equal(Linear(100, 50, seed=3).weight.data, m.weight.data)  # same seed, same weights
    t = torch.nn.Linear(100, 50)
    m.load_state_dict(t.state_dict())
    np.testing.assert_array_equal(m.weight.data, t.weight.detach().numpy())
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]


def test_linear_gradients_accumulate_over_calls(rng):
    m = Linear(3, 2, dtype=np.float64, seed=0)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    m(x1)
    m(x2)
    m.backward(np.ones((5, 2)))
    m.backward(np.ones((4, 2)))
    np.testing.assert_allclose(m.weight.grad, np.ones((2, 4)) @ x1 + np.ones((2, 5)) @ x2)
    np.testing.assert_allclose(m.bias.grad, [9.0, 9.0])


def test_linear_errors():
    m = Linear(3, 2)
    with pytest.raises(ValueError, match=r"input must have shape \(\.\.\., 3\), but was given shape \(4, 2\)"):
        m(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="dtype float32 like the layer's weights, but was given float64"):
        m(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="floating-point"):
        m(np.zeros((4, 3), np.int32))
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        m.backward(np.zeros((4, 2), np.float32))
    m(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2\), but was given shape \(2, 4\)"):
        m.backward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="out_features must be a positive integer"):
        Linear(3, 0)


# ----- Embedding ---------------------------------------------------------------------------

def test_embedding_gradcheck_with_repeated_ids(rng):
    m = Embedding(6, 3, dtype=np.float64, seed=0)
    ids = np.array([[1, 2, 1], [5, 1, 2], [0, 5, 1]])
    assert max(gradcheck(m, (ids,)).values()) < 1e-6


def test_embedding_padding_row_gets_no_gradient_and_the_others_are_unchanged(rng):
    # The padding row is excluded from the gradient by design, so finite differences would disagree
    # there; every other row must get exactly the gradient of the same table without padding.
    ids = np.array([[1, 2, 1], [5, 1, 2], [0, 5, 1]])
    dy = rng.standard_normal((3, 3, 3))
    padded, plain = Embedding(6, 3, padding_idx=2, dtype=np.float64, seed=0), Embedding(6, 3, dtype=np.float64)
    plain.load_state_dict(padded.state_dict())
    np.testing.assert_array_equal(padded(ids), plain(ids))
    assert padded.backward(dy) is None and plain.backward(dy) is None
    others = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(padded.weight.grad[others], plain.weight.grad[others], rtol=1e-15)
    assert np.all(padded.weight.grad[2] == 0) and np.all(plain.weight.grad[2] != 0)
    assert np.all(padded.weight.grad[[0, 1, 5]] != 0) and np.all(padded.weight.grad[[3, 4]] == 0)


@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_matches_torch(padding_idx, rng):
    m = Embedding(7, 4, padding_idx=padding_idx, dtype=np.float64, seed=0)
    t = to_torch(m, torch.nn.Embedding(7, 4, padding_idx=padding_idx, dtype=torch.float64))
    ids = rng.integers(0, 7, size=(5, 6))
    ids[0, :3] = 6  # make sure the last row (padding_idx=-1) is used, repeatedly
    dy = rng.standard_normal((5, 6, 4))
    y = m(ids)
    m.backward(dy)
    yt = t(torch.tensor(ids))
    yt.backward(torch.tensor(dy))
    assert_close(y, yt)
    compare_grads(m, t)


def test_embedding_init_and_padding_row():
    m = Embedding(2000, 50, padding_idx=3, seed=0)
    w = m.weight.data
    assert w.dtype == np.float32 and np.all(w[3] == 0) and m.padding_idx == 3
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01  # N(0, 1), as torch
    assert Embedding(5, 2, padding_idx=-2).padding_idx == 3


def test_embedding_sparse_accumulation_equals_add_at(rng):
    m = Embedding(50, 8, dtype=np.float64, seed=0)
    ids = rng.integers(0, 10, size=(40, 7))  # a small vocabulary used often: many repeats
    dy = rng.standard_normal((40, 7, 8))
    m(ids)
    m(ids[:5])
    m.backward(dy[:5])
    m.backward(dy)  # accumulates over calls too
    expected = np.zeros((50, 8))
    np.add.at(expected, ids.reshape(-1), dy.reshape(-1, 8))
    np.add.at(expected, ids[:5].reshape(-1), dy[:5].reshape(-1, 8))
    np.testing.assert_allclose(m.weight.grad, expected, rtol=1e-13, atol=1e-13)


def test_embedding_errors():
    m = Embedding(5, 2)
    with pytest.raises(ValueError, match="ids must lie in 0..4, but range from 0 to 5"):
        m(np.array([0, 5]))
    with pytest.raises(ValueError, match="ids must lie in 0..4, but range from -1 to 2"):
        m(np.array([-1, 2]))
    with pytest.raises(ValueError, match="integer array, but was given dtype float64"):
        m(np.array([1.0]))
    with pytest.raises(ValueError, match="padding_idx must be an integer in -5..4"):
        Embedding(5, 2, padding_idx=5)
    m(np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"dy must have shape \(1, 2, 2\)"):
        m.backward(np.zeros((2, 2)))


# ----- Dropout -----------------------------------------------------------------------------

class FixedMaskDropout(Dropout):
    """Dropout that redraws the same mask at every call, so finite differences see one function."""

    def forward(self, x):
        self.rng = np.random.default_rng(7)
        return super().forward(x)


def test_dropout_gradcheck(rng):
    assert max(gradcheck(FixedMaskDropout(0.3), (rng.standard_normal((4, 5)),)).values()) < 1e-6


def test_dropout_same_seed_same_mask_and_gradient_uses_it(rng):
    x = rng.uniform(1, 2, size=(20, 30))
    a, b, c = Dropout(0.4, seed=5), Dropout(0.4, seed=5), Dropout(0.4, seed=6)
    ya, yb, yc = a(x), b(x), c(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya == 0, yc == 0)
    np.testing.assert_array_equal(Dropout(0.4, seed=5)(x.astype(np.float32)) == 0, ya == 0)  # mask ignores dtype
    kept = ya != 0
    np.testing.assert_allclose(ya[kept], x[kept] / 0.6)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(a.backward(dy), np.where(kept, dy / 0.6, 0.0))
    assert not np.array_equal(a(x) == 0, ya == 0)  # the generator moves on: a fresh mask each call


def test_dropout_keeps_the_mean_and_drops_a_fraction_p():
    p, n = 0.3, 400_000
    y = Dropout(p, seed=0)(np.ones(n, np.float32))
    sigma = np.sqrt(p / (1 - p) / n)  # standard deviation of the mean of n masked ones
    assert abs(y.mean() - 1) < 5 * sigma
    assert abs((y == 0).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert y.dtype == np.float32


def test_dropout_is_identity_in_eval_and_with_p_zero(rng):
    x = rng.standard_normal((3, 4))
    d = Dropout(0.5, seed=0).eval()
    assert d(x) is x and d._cache == []
    z = Dropout(0.0, seed=0)
    assert z(x) is x
    dy = rng.standard_normal((3, 4))
    assert z.backward(dy) is dy
    with no_grad():
        t = Dropout(0.5, seed=0)
        assert np.any(t(x) == 0) and t._cache == []  # training mode drops even without gradients


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, "0.5", None])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\)"):
        Dropout(p)


# ----- LayerNorm ---------------------------------------------------------------------------

LAYERNORM_AFFINE = [dict(elementwise_affine=True), dict(elementwise_affine=True, bias=False),
                    dict(elementwise_affine=False), dict(elementwise_affine=False, bias=False)]


def layernorm_names(kwargs):
    """torch's parameter names: weight and bias, weight alone with bias=False, none without the affine."""
    if not kwargs["elementwise_affine"]:
        return []
    return ["weight", "bias"] if kwargs.get("bias", True) else ["weight"]


@pytest.mark.parametrize("shape,normalized", [((3, 5), 5), ((2, 3, 4), (3, 4)), ((2, 2, 6), 6)])
@pytest.mark.parametrize("kwargs", LAYERNORM_AFFINE)
def test_layernorm_gradcheck(shape, normalized, kwargs, rng):
    m = randomize(LayerNorm(normalized, **kwargs, dtype=np.float64), rng)
    assert max(gradcheck(m, (rng.standard_normal(shape) * 2 + 1,)).values()) < 1e-6


@pytest.mark.parametrize("normalized", [6, (4, 6)])
@pytest.mark.parametrize("kwargs", LAYERNORM_AFFINE)
def test_layernorm_matches_torch(normalized, kwargs, rng):
    m = randomize(LayerNorm(normalized, eps=1e-3, **kwargs, dtype=np.float64), rng)
    t = to_torch(m, torch.nn.LayerNorm(normalized, eps=1e-3, **kwargs, dtype=torch.float64))
    x, dy = rng.standard_normal((3, 4, 6)) * 3, rng.standard_normal((3, 4, 6))
    y, dx = m(x), m.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = t(xt)
    yt.backward(torch.tensor(dy))
    assert_close(y, yt)
    assert_close(dx, xt.grad)
    compare_grads(m, t)
    names = layernorm_names(kwargs)
    assert [n for n, _ in m.named_parameters()] == names == [n for n, _ in t.named_parameters()]
    assert list(m.state_dict()) == names == list(t.state_dict())


def test_layernorm_without_bias_positional_like_torch_and_loads_torchs_state_dict(rng):
    """LayerNorm(normalized_shape, eps, elementwise_affine, bias) in torch's order."""
    t = torch.nn.LayerNorm((2, 5), 1e-4, True, False, dtype=torch.float64)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(rng.standard_normal((2, 5))))
    m = LayerNorm((2, 5), 1e-4, True, False, dtype=np.float64)
    assert m.bias is None and len(m.parameters()) == 1 and "bias=False" in repr(m)
    assert m.load_state_dict(t.state_dict()) == ([], [])
    np.testing.assert_array_equal(m.weight.data, t.weight.detach().numpy())
    x = rng.standard_normal((3, 2, 5))
    assert_close(m(x), t(torch.tensor(x)))
    with pytest.raises(ValueError, match="was given unexpected 'bias'"):
        m.load_state_dict(torch.nn.LayerNorm((2, 5), dtype=torch.float64).state_dict())
    with pytest.raises(ValueError, match="is missing 'bias'"):
        LayerNorm((2, 5), dtype=np.float64).load_state_dict(t.state_dict())
    torch.nn.LayerNorm((2, 5), bias=False).load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})


def test_layernorm_errors():
    m = LayerNorm((3, 4))
    with pytest.raises(ValueError, match=r"input must have shape \(\.\.\., 3, 4\), but was given shape \(2, 4, 3\)"):
        m(np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"but was given shape \(4,\)"):
        m(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="normalized_shape must be a positive integer"):
        LayerNorm(0)
    for eps in (0, -1e-5, "a", None, float("nan")):
        with pytest.raises(ValueError, match=f"eps must be a positive number, but was given {eps!r}"):
            LayerNorm(4, eps)
    with pytest.raises(ValueError, match=r"bias must be True or False, but was given <class 'numpy\.float64'>\.$"):
        LayerNorm(4, 1e-5, True, np.float64)                          # dtype is not the fourth argument


# ----- Sequential --------------------------------------------------------------------------

def make_mlp(dtype=np.float64):
    return Sequential(Linear(4, 6, dtype=dtype, seed=0), Tanh(), LayerNorm(6, dtype=dtype), Linear(6, 3, dtype=dtype, seed=1))


def test_sequential_names_and_torch_parity(rng):
    m = randomize(make_mlp(), rng)
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"]
    t = to_torch(m, torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.LayerNorm(6),
                                        torch.nn.Linear(6, 3)).double())
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    y, dx = m(x), m.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = t(xt)
    yt.backward(torch.tensor(dy))
    assert_close(y, yt)
    assert_close(dx, xt.grad)
    compare_grads(m, t)
    assert len(m) == 4 and isinstance(m[1], Tanh) and list(m)[3] is m[3]


def test_sequential_gradcheck(rng):
    m = randomize(make_mlp(), rng)
    assert max(gradcheck(m, (rng.standard_normal((2, 3, 4)),)).values()) < 1e-6


def test_sequential_starting_with_an_embedding(rng):
    m = Sequential(Embedding(9, 4, dtype=np.float64, seed=0), Linear(4, 2, dtype=np.float64, seed=1))
    assert max(gradcheck(m, (rng.integers(0, 9, size=(3, 4)),)).values()) < 1e-6


def test_sequential_errors():
    with pytest.raises(ValueError, match="takes Modules, but was given a ufunc at position 1"):
        Sequential(Tanh(), np.tanh)
    m = make_mlp()
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        m.backward(np.zeros((5, 3)))


@pytest.mark.parametrize("make", [Tanh, Sigmoid, Softmax, LogSoftmax,
                                  lambda: LayerNorm(5, elementwise_affine=False, dtype=np.float64)])
def test_an_output_backward_reads_cannot_be_changed_in_place(make):
    """Changing it would silently change the gradients, so it is a read-only view while recording."""
    x = np.random.default_rng(0).standard_normal((3, 5))
    layer = make()
    y = layer(x)
    with pytest.raises(ValueError, match="read-only"):
        y += 1
    dx = layer.backward(np.ones_like(y))
    fresh = make()
    np.testing.assert_array_equal(fresh.backward(np.ones_like(fresh(x))), dx)   # the refused write changed nothing
    with no_grad():
        y = layer(x)
    y += 1                                                        # nothing kept: an ordinary array
