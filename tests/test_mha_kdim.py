"""MultiheadAttention's kdim, vdim, add_bias_kv and add_zero_attn against torch.nn.MultiheadAttention.

Keys and values of their own sizes (separate q_proj_weight, k_proj_weight, v_proj_weight), the
learned bias key and value and the zero key match torch (float64, 1e-8 relative) in outputs,
weights, query, key, value and every parameter gradient, with key padding, bool and float
attention masks, need_weights on and off, in both layouts; state dicts load both ways. Central
differences check the same with dropout and a `past` cache, and incremental decoding equals the
causal forward.
"""
import numpy as np
import pytest
import torch

from unrolled.attention import MultiheadAttention, causal_mask
from unrolled.testing import gradcheck

from test_attention import assert_close, assert_matches_torch, padding, randomize

torch.set_num_threads(1)

E, H, L, S, B = 8, 2, 4, 5, 3
KDIM, VDIM = 5, 3
LENGTHS = [5, 2, 3]
OPTIONS = {"kdim": dict(kdim=KDIM, vdim=VDIM), "kdim only": dict(kdim=KDIM), "vdim only": dict(vdim=VDIM),
           "bias_kv": dict(add_bias_kv=True), "zero_attn": dict(add_zero_attn=True),
           "all": dict(kdim=KDIM, vdim=VDIM, add_bias_kv=True, add_zero_attn=True),
           "all, no bias": dict(kdim=KDIM, vdim=VDIM, add_bias_kv=True, add_zero_attn=True, bias=False)}


def sizes(options):
    return options.get("kdim", E), options.get("vdim", E)


def inputs(rng, options, n=S, batch_first=False):
    kdim, vdim = sizes(options)
    arrays = rng.standard_normal((L, B, E)), rng.standard_normal((n, B, kdim)), rng.standard_normal((n, B, vdim))
    return tuple(a.transpose(1, 0, 2).copy() for a in arrays) if batch_first else arrays


def torch_twin(ours, options, batch_first=False):
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=torch.float64, **options)
    missing, unexpected = theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert not missing and not unexpected
    return theirs.train()


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["none", "padding", "bool", "float"])
@pytest.mark.parametrize("average", [True, False])
def test_matches_torch(option, batch_first, masks, average, rng):
    options = OPTIONS[option]
    ours = MultiheadAttention(E, H, batch_first=batch_first, seed=0, **options).double()
    randomize(ours, rng)
    theirs = torch_twin(ours, options, batch_first)
    query, key, value = inputs(rng, options, batch_first=batch_first)
    kwargs = dict(average_attn_weights=average)
    if masks != "none":
        kwargs["key_padding_mask"] = padding(LENGTHS, S)
    if masks == "bool":
        kwargs["attn_mask"] = rng.random((B * H, L, S)) < 0.3
        kwargs["attn_mask"][..., 0] = False                                     # no query without a key
    if masks == "float":
        kwargs["key_padding_mask"] = rng.standard_normal((B, S))
        kwargs["attn_mask"] = np.where(rng.random((L, S)) < 0.3, -np.inf, rng.standard_normal((L, S)))
        kwargs["attn_mask"][:, 0] = 0.0

    assert_matches_torch(ours, theirs, rng, query, key, value, **kwargs)


@pytest.mark.parametrize("option", ["kdim", "all"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_torch_self_attention_without_weights(option, batch_first, rng):
    """need_weights=False (torch's scaled_dot_product_attention path), a causal mask and padding."""
    options = {k: v for k, v in OPTIONS[option].items() if k not in ("kdim", "vdim")}   # self-attention: E
    ours = MultiheadAttention(E, H, batch_first=batch_first, seed=0, **options).double()
    randomize(ours, rng)
    theirs = torch_twin(ours, options, batch_first)
    x = rng.standard_normal((B, L, E) if batch_first else (L, B, E))
    kwargs = dict(key_padding_mask=padding([4, 2, 3], L), attn_mask=causal_mask(L), need_weights=False)
    out, weights = ours(x, x.copy(), x.copy(), **kwargs)
    assert weights is None
    dout = rng.standard_normal(out.shape)
    grads = ours.backward(dout)
    xs = [torch.from_numpy(x.copy()).requires_grad_() for _ in range(3)]
    t_out, _ = theirs(*xs, **{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})
    (t_out * torch.from_numpy(dout)).sum().backward()
    assert_close(out, t_out, "output")
    for name, g, t in zip(("dquery", "dkey", "dvalue"), grads, xs):
        assert_close(g, t.grad, name)
    for name, p in theirs.named_parameters():
        assert_close(dict(ours.named_parameters())[name].grad, p.grad, name)


@pytest.mark.parametrize("option", list(OPTIONS) + ["plain", "no bias", "kdim = vdim = E"])
def test_state_dict_names_shapes_and_loading_both_ways(option, rng):
    options = {"plain": {}, "no bias": dict(bias=False), "kdim = vdim = E": dict(kdim=E, vdim=E)}.get(option)
    options = OPTIONS[option] if options is None else options
    theirs = torch.nn.MultiheadAttention(E, H, dtype=torch.float64, **options)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape))))
    ours = MultiheadAttention(E, H, dtype=np.float64, seed=0, **options)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]                 # torch's names and order
    assert ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()}) == ([], [])
    query, key, value = inputs(rng, options)
    out, weights = ours(query, key, value, key_padding_mask=padding(LENGTHS, S))
    t_out, t_weights = theirs.train()(*map(torch.from_numpy, (query, key, value)),
                                      key_padding_mask=torch.from_numpy(padding(LENGTHS, S)))
    assert_close(out, t_out, "output")
    assert_close(weights, t_weights, "weights")
    back = torch.nn.MultiheadAttention(E, H, dtype=torch.float64, **options)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for k, v in back.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), theirs.state_dict()[k].numpy())
    separate = sizes(options) != (E, E)
    assert (ours.in_proj_weight is None) == (theirs.in_proj_weight is None) == separate
    assert (ours.q_proj_weight is None) == (theirs.q_proj_weight is None) == (not separate)


def test_init_is_torchs():
    ours = MultiheadAttention(64, 4, seed=0, kdim=32, vdim=16, add_bias_kv=True)
    assert (ours.kdim, ours.vdim, ours.in_proj_weight) == (32, 16, None)
    for w, fan_in in ((ours.q_proj_weight, 64), (ours.k_proj_weight, 32), (ours.v_proj_weight, 16)):
        bound = np.sqrt(6 / (fan_in + 64))                     # xavier_uniform_ on each (E, n) weight
        assert w.dtype == np.float32 and np.abs(w.data).max() <= bound and w.data.std() > bound / 3
    assert (ours.in_proj_bias.data == 0).all() and (ours.out_proj.bias.data == 0).all()
    for b in (ours.bias_k, ours.bias_v):                      # xavier_normal_ on (1, 1, E): std 1 / sqrt(E)
        assert b.shape == (1, 1, 64) and 0.5 / 8 < b.data.std() < 1.5 / 8
    assert "kdim=32, vdim=16, add_bias_kv=True" in repr(ours)


class Fixed(MultiheadAttention):
    """`past` as a positional input for gradcheck, and the same dropout mask at every call."""

    def forward(self, query, key, value, past=None, **kwargs):
        self.attention.dropout.rng = np.random.default_rng(7)
        return super().forward(query, key, value, past=past, **kwargs)


@pytest.mark.parametrize("option", ["kdim", "bias_kv", "zero_attn", "all"])
@pytest.mark.parametrize("average", [True, False])
def test_gradcheck(option, average, rng):
    mha = Fixed(E, H, dropout=0.2, seed=0, **OPTIONS[option]).double()
    randomize(mha, rng)
    kwargs = dict(average_attn_weights=average, key_padding_mask=padding(LENGTHS, S),
                  attn_mask=rng.standard_normal((L, S)))
    gradcheck(mha, inputs(rng, OPTIONS[option]), kwargs)


@pytest.mark.parametrize("option", ["bias_kv", "zero_attn", "all"])
def test_gradcheck_with_past(option, rng):
    options = {k: v for k, v in OPTIONS[option].items() if k not in ("kdim", "vdim")}
    mha = Fixed(E, H, dropout=0.2, batch_first=True, seed=0, **options).double()
    randomize(mha, rng)
    x = rng.standard_normal((B, L, E))
    past = (rng.standard_normal((B, 3, E)), rng.standard_normal((B, 3, E)))
    gradcheck(mha, (x, x.copy(), x.copy(), past), dict(is_causal=True, key_padding_mask=padding([7, 5, 6], 3 + L)))


@pytest.mark.parametrize("option", ["bias_kv", "zero_attn", "all"])
def test_incremental_decoding_equals_the_causal_forward(option, rng):
    """The bias and zero keys are never blocked, and never cached: each call appends them anew."""
    options = {k: v for k, v in OPTIONS[option].items() if k not in ("kdim", "vdim")}
    mha = MultiheadAttention(E, H, seed=0, **options).double()
    randomize(mha, rng)
    x = rng.standard_normal((L, B, E))
    full, weights = mha(x, x, x, is_causal=True)
    extra = weights.shape[-1] - L
    assert extra == options.get("add_bias_kv", False) + options.get("add_zero_attn", False)
    assert (weights[:, :, L:] > 0).all()                                    # visible to every query
    past = (np.zeros((0, B, E)), np.zeros((0, B, E)))
    for i in range(L):
        step, _, past = mha(x[i:i + 1], x[i:i + 1], x[i:i + 1], is_causal=True, past=past)
        np.testing.assert_allclose(step, full[i:i + 1], rtol=1e-12)
    assert past[0].shape == x.shape


def test_errors(rng):
    with pytest.raises(ValueError, match="kdim must be a positive integer, but was given 0"):
        MultiheadAttention(E, H, kdim=0)
    with pytest.raises(ValueError, match="vdim must be a positive integer, but was given True"):
        MultiheadAttention(E, H, vdim=True)
    with pytest.raises(ValueError, match="add_bias_kv must be True or False, but was given 'yes'"):
        MultiheadAttention(E, H, add_bias_kv="yes")
    with pytest.raises(ValueError, match="add_zero_attn must be True or False, but was given 1"):
        MultiheadAttention(E, H, add_zero_attn=1)
    with pytest.raises(ValueError, match="bias must be True or False, but was given 'x'"):
        MultiheadAttention(E, H, 0.0, "x")
    with pytest.raises(ValueError, match="batch_first must be True or False, but was given 'yes'"):
        MultiheadAttention(E, H, batch_first="yes")
    with pytest.raises(TypeError):              # torch's positional order: add_bias_kv fifth, never batch_first
        MultiheadAttention(E, H, 0.0, True, True)
    mha = MultiheadAttention(E, H, kdim=KDIM, vdim=VDIM)
    query, key, value = (a.astype(np.float32) for a in inputs(rng, OPTIONS["kdim"]))
    with pytest.raises(ValueError, match=r"key must have shape \(any, 3, 5\), but was given shape \(5, 3, 8\)"):
        mha(query, np.zeros((S, B, E), np.float32), value)
    with pytest.raises(ValueError, match=r"value must have shape \(5, 3, 3\), but was given shape \(4, 3, 3\)"):
        mha(query, key, value[:L])
    with pytest.raises(ValueError, match=r"value must have shape \(5, 3, 3\), but was given shape \(5, 3, 5\)"):
        mha(query, key, key)
    out, weights = MultiheadAttention(E, H, add_bias_kv=True, add_zero_attn=True)(query, query, query)
    assert out.dtype == np.float32 and weights.shape == (B, L, L + 2)
