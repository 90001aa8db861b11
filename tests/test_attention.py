"""Attention layers: finite-difference gradient checks, masks, incremental decoding and PyTorch parity.

Bahdanau, Luong (dot, general), scaled dot-product and multi-head attention are checked against
central differences in float64 (rel < 1e-6) with and without masks; multi-head attention matches
torch.nn.MultiheadAttention (float64, 1e-8 relative) in outputs, weights, input and parameter
gradients with key padding and causal masks in both layouts.
"""
import numpy as np
import pytest
import torch

from unrolled.attention import (BahdanauAttention, LuongAttention, MultiheadAttention, ScaledDotProductAttention,
                                causal_mask, length_mask, masked_softmax)
from unrolled.testing import gradcheck

torch.set_num_threads(1)

S, B, HQ, HK = 5, 3, 4, 6
LENGTHS = [5, 2, 3]


def assert_close(ours, theirs, what, rtol=1e-8):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max(), err_msg=what)


def randomize(module, rng, scale=0.7):
    """Random non-zero weights and biases (the default init leaves some biases at zero)."""
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * scale


def key_attention(kind, query_size=HQ, key_size=HK):
    if kind == "bahdanau":
        return BahdanauAttention(query_size, key_size, attention_size=7, seed=1)
    if kind == "dot":
        return LuongAttention(key_size, key_size, score="dot")
    return LuongAttention(query_size, key_size, score="general", seed=1)


# ----- Bahdanau and Luong -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bahdanau", "dot", "general"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("steps", [None, 2])
def test_key_attention_gradcheck(kind, masked, steps, rng):
    attn = key_attention(kind).double()
    randomize(attn, rng)
    query = rng.standard_normal(((steps,) if steps else ()) + (B, attn.query_size))
    keys = rng.standard_normal((S, B, HK))
    mask = length_mask(LENGTHS, S) if masked else None
    gradcheck(attn, (query, keys), dict(mask=mask))


@pytest.mark.parametrize("kind", ["bahdanau", "dot", "general"])
def test_key_attention_shapes_and_float32_default(kind, rng):
    attn = key_attention(kind)
    query = rng.standard_normal((B, attn.query_size)).astype(np.float32)
    keys = rng.standard_normal((S, B, HK)).astype(np.float32)
    context, weights = attn(query, keys)
    assert context.shape == (B, HK) and weights.shape == (B, S)
    assert context.dtype == weights.dtype == np.float32
    assert all(p.dtype == np.float32 for p in attn.parameters())
    np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-6)
    context3, weights3 = attn(np.stack([query, query]), keys)   # (T, B, Hq): every step the same
    assert context3.shape == (2, B, HK) and weights3.shape == (2, B, S)
    np.testing.assert_allclose(context3[1], context, rtol=1e-6)


@pytest.mark.parametrize("kind", ["bahdanau", "dot", "general"])
def test_key_attention_masks_keep_attention_off_padding(kind, rng):
    attn = key_attention(kind).double()
    randomize(attn, rng)
    query = rng.standard_normal((B, attn.query_size))
    keys = rng.standard_normal((S, B, HK))
    mask = length_mask(LENGTHS, S)
    context, weights = attn(query, keys, mask)
    assert (weights[~mask.T] == 0).all() and (weights[mask.T] > 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-12)
    _, dkeys = attn.backward(rng.standard_normal(context.shape), rng.standard_normal(weights.shape))
    assert (dkeys[~mask] == 0).all() and (dkeys[mask] != 0).all()   # no gradient into padding
    # padding holds anything: the results do not change
    noisy = np.where(mask[..., None], keys, 1e3 * rng.standard_normal(keys.shape))
    context2, weights2 = attn(query, noisy, mask)
    np.testing.assert_array_equal(weights2, weights)
    np.testing.assert_allclose(context2, context, rtol=1e-13)
    # each sequence alone over its real keys gives the same numbers as the padded batch
    for b, n in enumerate(LENGTHS):
        c, w = attn(query[b:b + 1], keys[:n, b:b + 1])
        np.testing.assert_allclose(c[0], context[b], rtol=1e-12)
        np.testing.assert_allclose(w[0], weights[b, :n], rtol=1e-12)


def test_luong_dot_is_the_plain_dot_product(rng):
    query, keys = rng.standard_normal((B, HK)), rng.standard_normal((S, B, HK))
    context, weights = LuongAttention(HK, HK, "dot").double()(query, keys)
    scores = np.einsum("bh,sbh->bs", query, keys)
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    np.testing.assert_allclose(context, np.einsum("bs,sbh->bh", expected, keys), rtol=1e-12)


def test_key_attention_backward_pairs_with_forward_calls(rng):
    """Two decoder steps, back-propagated newest first, accumulate into the same weights."""
    attn = BahdanauAttention(HQ, HK, seed=0).double()
    keys = rng.standard_normal((S, B, HK))
    q1, q2 = rng.standard_normal((2, B, HQ))
    g1, g2 = rng.standard_normal((2, B, HK))
    attn(q1, keys)
    attn(q2, keys)
    dq2, dk2 = attn.backward(g2)
    dq1, dk1 = attn.backward(g1)
    both = {n: p.grad.copy() for n, p in attn.named_parameters()}
    attn.zero_grad()
    attn(np.stack([q1, q2]), keys)                 # the same two steps as one (T, B, Hq) query
    dq, dk = attn.backward(np.stack([g1, g2]))
    np.testing.assert_allclose(dq, np.stack([dq1, dq2]), rtol=1e-12)
    np.testing.assert_allclose(dk, dk1 + dk2, rtol=1e-12)
    for n, p in attn.named_parameters():
        np.testing.assert_allclose(p.grad, both[n], rtol=1e-12)
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        attn.backward(g1)


class ProjectedAsInput(BahdanauAttention):
    """projected_keys as a positional input, so that gradcheck checks its gradient too."""

    def forward(self, query, keys, projected_keys, mask=None):
        return super().forward(query, keys, mask, projected_keys=projected_keys)


def test_bahdanau_projected_keys_gradcheck(rng):
    attn = ProjectedAsInput(HQ, HK, attention_size=7, seed=1).double()
    randomize(attn, rng)
    query, keys = rng.standard_normal((B, HQ)), rng.standard_normal((S, B, HK))
    projected = rng.standard_normal((S, B, 7))
    gradcheck(attn, (query, keys, projected), dict(mask=length_mask(LENGTHS, S)))


def test_bahdanau_keys_projected_once_equal_keys_projected_at_every_step(rng):
    attn = BahdanauAttention(HQ, HK, seed=0).double()
    randomize(attn, rng)
    keys, mask = rng.standard_normal((S, B, HK)), length_mask(LENGTHS, S)
    queries, dcontexts = rng.standard_normal((3, B, HQ)), rng.standard_normal((3, B, HK))
    outputs = [attn(q, keys, mask) for q in queries]
    grads = [attn.backward(d) for d in reversed(dcontexts)][::-1]
    expected = {n: p.grad.copy() for n, p in attn.named_parameters()}
    attn.zero_grad()
    projected = attn.project_keys(keys)
    fast = [attn(q, keys, mask, projected_keys=projected) for q in queries]
    fast_grads = [attn.backward(d) for d in reversed(dcontexts)][::-1]
    dkeys = sum(g[1] for g in fast_grads) + attn.project_keys_backward(sum(g[2] for g in fast_grads))
    for (c, w), (cf, wf) in zip(outputs, fast):
        np.testing.assert_allclose(cf, c, rtol=1e-13)
        np.testing.assert_allclose(wf, w, rtol=1e-13)
    for g, gf in zip(grads, fast_grads):
        np.testing.assert_allclose(gf[0], g[0], rtol=1e-12)
    np.testing.assert_allclose(dkeys, sum(g[1] for g in grads), rtol=1e-12)
    for n, p in attn.named_parameters():
        np.testing.assert_allclose(p.grad, expected[n], rtol=1e-12, err_msg=n)


def test_key_attention_errors(rng):
    attn = BahdanauAttention(HQ, HK)
    query = np.zeros((B, HQ), np.float32)
    keys = np.zeros((S, B, HK), np.float32)
    with pytest.raises(ValueError, match=r"mask must be a bool array of shape \(5, 3\)"):
        attn(query, keys, np.ones((B, S), bool))
    with pytest.raises(ValueError, match="mask must be a bool"):
        attn(query, keys, np.ones((S, B)))
    with pytest.raises(ValueError, match=r"keys must have shape \(5, 3, 6\)"):
        attn(query, np.zeros((S, B, HK + 1), np.float32))
    with pytest.raises(ValueError, match=r"query must have shape \(3, 4\)"):
        attn(np.zeros((B + 1, HQ), np.float32), keys)
    with pytest.raises(ValueError, match="dtype float32"):
        attn(query.astype(np.float64), keys)
    with pytest.raises(ValueError, match="dot attention needs query_size == key_size"):
        LuongAttention(HQ, HK, "dot")
    with pytest.raises(ValueError, match="projected_keys is for BahdanauAttention"):
        LuongAttention(HQ, HK)(query, keys, projected_keys=np.zeros((S, B, HK), np.float32))
    with pytest.raises(ValueError, match=r"projected_keys must have shape \(5, 3, 6\)"):
        attn(query, keys, projected_keys=np.zeros((S, B, HK + 1), np.float32))
    with pytest.raises(ValueError, match="score must be one of"):
        LuongAttention(HQ, HK, "concat")
    with pytest.raises(ValueError, match="lengths must be"):
        length_mask([2.0, 1.0], 3)


# ----- masked softmax and scaled dot-product attention --------------------------------------

def test_masked_softmax_zeros_blocked_entries_and_empty_rows():
    scores = np.array([[1.0, 2.0, 3.0], [0.5, -np.inf, 0.5], [1.0, 2.0, 3.0]])
    allowed = np.array([[True, False, True], [True, True, True], [False, False, False]])
    w = masked_softmax(scores, allowed)
    e = np.exp([1.0, 3.0])
    np.testing.assert_allclose(w[0], [e[0] / e.sum(), 0, e[1] / e.sum()], rtol=1e-15)
    np.testing.assert_array_equal(w[1], [0.5, 0, 0.5])
    np.testing.assert_array_equal(w[2], [0, 0, 0])
    np.testing.assert_allclose(masked_softmax(np.array([[1e4, 0.0]])), [[1, 0]])  # shifted: no overflow


class Reseeded(ScaledDotProductAttention):
    """The same dropout mask at every call, so that finite differences see a fixed function."""

    def forward(self, *args, **kwargs):
        self.dropout.rng = np.random.default_rng(7)
        return super().forward(*args, **kwargs)


@pytest.mark.parametrize("mask", [None, "bool", "float", "causal"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_scaled_dot_product_gradcheck(mask, dropout, rng):
    sdpa = Reseeded(dropout=dropout)
    L, D, Dv, n = 4, 3, 2, 5
    q, k, v = rng.standard_normal((2, L, D)), rng.standard_normal((2, n, D)), rng.standard_normal((2, n, Dv))
    masks = {None: None, "bool": rng.random((2, 1, n)) < 0.7, "float": rng.standard_normal((L, n)), "causal": None}
    if mask == "bool":
        masks["bool"][:, :, 0] = True
    gradcheck(sdpa, (q, k, v), dict(attn_mask=masks[mask], is_causal=mask == "causal"))


def test_scaled_dot_product_matches_torch(rng):
    L, D, n = 4, 3, 6
    q, k, v = rng.standard_normal((2, 2, L, D)), rng.standard_normal((2, 2, n, D)), rng.standard_normal((2, 2, n, 5))
    allowed = rng.random((2, 1, L, n)) < 0.7
    allowed[..., 0] = True
    for kwargs in (dict(attn_mask=allowed), dict(is_causal=True), dict(attn_mask=rng.standard_normal((L, n)))):
        out, _ = ScaledDotProductAttention()(q, k, v, **kwargs)
        t_kwargs = {key: torch.from_numpy(val) if key == "attn_mask" else val for key, val in kwargs.items()}
        expected = torch.nn.functional.scaled_dot_product_attention(
            torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), **t_kwargs)
        assert_close(out, expected, str(list(kwargs)))


def test_attention_dropout_same_seed_same_result_and_off_in_eval(rng):
    q, k, v = rng.standard_normal((3, 2, 4, 3))
    a, b = ScaledDotProductAttention(0.5, seed=3).double(), ScaledDotProductAttention(0.5, seed=3).double()
    out_a, w_a = a(q, k, v)
    out_b, w_b = b(q, k, v)
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.allclose(out_a, w_a @ v)          # some weights were dropped
    a.eval()
    out_eval, w_eval = a(q, k, v)
    np.testing.assert_allclose(out_eval, w_eval @ v, rtol=1e-13)
    np.testing.assert_array_equal(w_eval, w_a)      # the returned weights are the ones before dropout


# ----- multi-head attention -----------------------------------------------------------------

E, H, L = 8, 2, 4


def padding(lengths, n):
    """torch's key_padding_mask: (B, n) True at padding."""
    return ~length_mask(lengths, n).T


@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both", "float"])
@pytest.mark.parametrize("average", [True, False])
def test_multihead_gradcheck(masks, average, rng):
    mha = MultiheadAttention(E, H, seed=0).double()
    randomize(mha, rng)
    query = rng.standard_normal((L, B, E))
    memory = rng.standard_normal((S, B, E))
    kwargs = dict(average_attn_weights=average)
    if masks in ("padding", "both"):
        kwargs["key_padding_mask"] = padding([4, 2, 3], L) if masks == "both" else padding(LENGTHS, S)
    if masks == "float":
        kwargs["key_padding_mask"] = rng.standard_normal((B, S))
        kwargs["attn_mask"] = np.where(rng.random((L, S)) < 0.3, -np.inf, rng.standard_normal((L, S)))
        kwargs["attn_mask"][:, 0] = 0.0
    if masks in ("causal", "both"):   # self-attention over distinct copies: one gradient per input
        gradcheck(mha, (query, query.copy(), query.copy()), dict(kwargs, is_causal=True))
    else:
        gradcheck(mha, (query, memory, memory.copy()), kwargs)


class PastAsInput(MultiheadAttention):
    """`past` as a positional input, so that gradcheck checks its gradient too, and the same
    dropout mask at every call."""

    def forward(self, query, key, value, past, **kwargs):
        self.attention.dropout.rng = np.random.default_rng(7)
        return super().forward(query, key, value, past=past, **kwargs)


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_gradcheck_with_past_and_dropout(batch_first, rng):
    mha = PastAsInput(E, H, dropout=0.2, batch_first=batch_first, seed=0).double()
    randomize(mha, rng)
    x = rng.standard_normal((L, B, E))
    past = (rng.standard_normal((3, B, E)), rng.standard_normal((3, B, E)))
    kpm = padding([7, 5, 6], 3 + L)
    if batch_first:
        x, past = x.transpose(1, 0, 2).copy(), tuple(p.transpose(1, 0, 2).copy() for p in past)
    gradcheck(mha, (x, x.copy(), x.copy(), past), dict(is_causal=True, key_padding_mask=kpm))


def torch_mha(ours, batch_first):
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=torch.float64)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return theirs.train()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("setting", ["cross_padding", "self_causal_padding", "plain"])
def test_multihead_matches_torch(batch_first, average, setting, rng):
    ours = MultiheadAttention(E, H, batch_first=batch_first, seed=0).double()
    randomize(ours, rng)
    theirs = torch_mha(ours, batch_first)
    n = L if setting == "self_causal_padding" else S
    query = rng.standard_normal((L, B, E))
    key = query.copy() if setting == "self_causal_padding" else rng.standard_normal((n, B, E))
    value = query.copy() if setting == "self_causal_padding" else rng.standard_normal((n, B, E))
    kwargs = dict(average_attn_weights=average)
    if setting != "plain":
        kwargs["key_padding_mask"] = padding([4, 2, 3] if n == L else LENGTHS, n)
    if setting == "self_causal_padding":
        kwargs["attn_mask"] = causal_mask(L)
    if batch_first:
        query, key, value = (a.transpose(1, 0, 2).copy() for a in (query, key, value))

    assert_matches_torch(ours, theirs, rng, query, key, value, **kwargs)


def assert_matches_torch(ours, theirs, rng, query, key, value, **kwargs):
    """Our MultiheadAttention against torch's: output, weights, dquery, dkey, dvalue and every
    parameter's gradient (same names), for random output and weight gradients."""
    out, weights = ours(query, key, value, **kwargs)
    dout, dweights = rng.standard_normal(out.shape), rng.standard_normal(weights.shape)
    grads = ours.backward(dout, dweights)

    inputs = [torch.from_numpy(a).requires_grad_() for a in (query, key, value)]
    t_out, t_weights = theirs(*inputs, **{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                          for k, v in kwargs.items()})
    ((t_out * torch.from_numpy(dout)).sum() + (t_weights * torch.from_numpy(dweights)).sum()).backward()
    assert_close(out, t_out, "output")
    assert_close(weights, t_weights, "weights")
    for name, g, t in zip(("dquery", "dkey", "dvalue"), grads, inputs):
        assert_close(g, t.grad, name)
    params = dict(ours.named_parameters())
    assert set(params) == {name for name, _ in theirs.named_parameters()}
    for name, p in theirs.named_parameters():
        assert_close(params[name].grad, p.grad, name)


def test_multihead_init_names_and_shapes_are_torchs():
    ours = MultiheadAttention(E, H, seed=0)
    theirs = torch.nn.MultiheadAttention(E, H)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert ours.in_proj_weight.dtype == np.float32
    assert (ours.in_proj_bias.data == 0).all() and (ours.out_proj.bias.data == 0).all()
    bound = np.sqrt(6 / (E + 3 * E))                  # xavier_uniform_ on the (3E, E) in_proj_weight
    assert np.abs(ours.in_proj_weight.data).max() <= bound and ours.in_proj_weight.data.std() > bound / 3


def test_multihead_padding_gets_zero_weight_and_no_gradient(rng):
    mha = MultiheadAttention(E, H, seed=0).double()
    randomize(mha, rng)
    query, memory = rng.standard_normal((L, B, E)), rng.standard_normal((S, B, E))
    kpm = padding(LENGTHS, S)
    out, weights = mha(query, memory, memory, key_padding_mask=kpm, average_attn_weights=False)
    assert (weights.transpose(0, 3, 1, 2)[kpm] == 0).all()         # (B, S, H, L) at padded keys
    _, dkey, dvalue = mha.backward(rng.standard_normal(out.shape), rng.standard_normal(weights.shape))
    assert (dkey[kpm.T] == 0).all() and (dvalue[kpm.T] == 0).all()
    assert (dkey[~kpm.T] != 0).all()
    noisy = np.where(kpm.T[..., None], 1e3 * rng.standard_normal(memory.shape), memory)
    out2, _ = mha(query, noisy, noisy, key_padding_mask=kpm)
    np.testing.assert_allclose(out2, out, rtol=1e-12)


def test_multihead_causal_mask_blocks_the_future(rng):
    mha = MultiheadAttention(E, H, seed=0).double()
    x = rng.standard_normal((L, B, E))
    out, weights = mha(x, x, x, is_causal=True)
    assert (np.triu(np.ones((L, L), bool), 1) <= (weights == 0)).all()
    changed = x.copy()
    changed[-1] += 1.0                                             # the last position changes ...
    out2, _ = mha(changed, changed, changed, attn_mask=causal_mask(L, np.float64))
    np.testing.assert_allclose(out2[:-1], out[:-1], rtol=1e-13)    # ... and no earlier output sees it


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_incremental_decoding_equals_the_causal_forward(batch_first, rng):
    mha = MultiheadAttention(E, H, batch_first=batch_first, seed=0).double()
    randomize(mha, rng)
    x = rng.standard_normal((B, L, E) if batch_first else (L, B, E))
    full, _ = mha(x, x, x, is_causal=True)
    at = (lambda a, i: a[:, i:i + 1]) if batch_first else (lambda a, i: a[i:i + 1])
    empty = np.zeros((B, 0, E) if batch_first else (0, B, E))
    past = (empty, empty)
    for i in range(L):
        step, _, past = mha(at(x, i), at(x, i), at(x, i), is_causal=True, past=past)
        np.testing.assert_allclose(step, at(full, i), rtol=1e-12)
    assert past[0].shape == x.shape


def test_multihead_errors(rng):
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiheadAttention(6, 4)
    mha = MultiheadAttention(E, H)
    x = np.zeros((L, B, E), np.float32)
    with pytest.raises(ValueError, match=r"key_padding_mask must be a bool or float array of shape \(3, 4\)"):
        mha(x, x, x, key_padding_mask=np.zeros((L, B), bool))
    with pytest.raises(ValueError, match=r"attn_mask must be a bool or float array of shape \(4, 4\) or \(6, 4, 4\)"):
        mha(x, x, x, attn_mask=np.zeros((L, L + 1), bool))
    with pytest.raises(ValueError, match=r"query must have shape \(4, 3, 8\)"):
        mha(np.zeros((L, B, E + 1), np.float32), x, x)
    with pytest.raises(ValueError, match=r"value must have shape \(4, 3, 8\)"):
        mha(x, x, np.zeros((L + 1, B, E), np.float32))
    with pytest.raises(ValueError, match="past must be a pair"):
        mha(x, x, x, past=x)
    out, weights = mha(x, x, x, need_weights=False)
    assert out.dtype == np.float32 and weights is None
    with pytest.raises(ValueError, match="dweights must be None"):
        mha.backward(out, np.zeros((B, L, L), np.float32))
