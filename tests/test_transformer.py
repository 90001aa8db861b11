"""Transformer: gradient checks, PyTorch parity of the blocks, masks, and cached decoding.

Positions, the feed-forward network, encoder and decoder layers and stacks, the translation
Transformer and the decoder-only language model are checked against central differences in
float64 (rel < 1e-6). Encoder and decoder layers (pre- and post-norm, relu and gelu) and the
encoder stack match torch.nn (float64, 1e-8 relative) in outputs and every gradient. Incremental
decoding with the key/value cache equals the full causal forward.
"""
import numpy as np
import pytest
import torch

from unrolled import decoding
from unrolled.attention import (LearnedPositionalEmbedding, PositionwiseFeedForward, Seq2SeqTransformer,
                                SinusoidalPositionalEncoding, TransformerDecoder, TransformerDecoderLayer,
                                TransformerEncoder, TransformerEncoderLayer, TransformerLM, causal_mask,
                                positional_encoding)
from unrolled.optim import Adam
from unrolled.core.functional import cross_entropy
from unrolled.testing import gradcheck

torch.set_num_threads(1)

E, NHEAD, FF = 8, 2, 12
S, T, B = 5, 4, 3
SRC_LENGTHS = [5, 3, 2]


def assert_close(ours, theirs, what, rtol=1e-8):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max(), err_msg=what)


def randomize(module, rng, scale=0.5):
    """Random non-zero weights, biases and norm gains (the default init has zero biases, unit gains)."""
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * scale


def padding(lengths, n):
    """key_padding_mask (B, n), True at padding."""
    return np.arange(n)[None, :] >= np.asarray(lengths)[:, None]


# ----- positions and the feed-forward network -----------------------------------------------

def test_sinusoidal_encoding_is_vaswanis():
    pos = SinusoidalPositionalEncoding(6, max_len=50, dtype=np.float64)
    x = np.zeros((4, 2, 6))
    y = pos(x, offset=7)
    p = np.arange(7, 11)[:, None]
    i = np.arange(3)[None, :]
    np.testing.assert_allclose(y[:, 1, 0::2], np.sin(p / 10000 ** (2 * i / 6)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(y[:, 0, 1::2], np.cos(p / 10000 ** (2 * i / 6)), rtol=1e-12, atol=1e-15)
    odd = SinusoidalPositionalEncoding(5, max_len=10)(np.zeros((3, 1, 5), np.float32))
    assert odd.dtype == np.float32 and np.isfinite(odd).all() and odd[1, 0, 4] == np.float32(np.sin(1 / 10000 ** 0.8))


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_positions_gradcheck(kind, rng):
    pos = positional_encoding(kind, 4, 10, np.float64, seed=0)
    gradcheck(pos, (rng.standard_normal((3, 2, 4)),), dict(offset=5))


def test_learned_positions_accumulate_into_their_rows(rng):
    pos = LearnedPositionalEmbedding(4, max_len=10, dtype=np.float64, seed=0)
    dy = rng.standard_normal((3, 2, 4))
    pos(np.zeros((3, 2, 4)), offset=2)
    np.testing.assert_array_equal(pos.backward(dy), dy)
    np.testing.assert_allclose(pos.weight.grad[2:5], dy.sum(axis=1))
    assert (pos.weight.grad[:2] == 0).all() and (pos.weight.grad[5:] == 0).all()


def test_positions_errors():
    pos = SinusoidalPositionalEncoding(4, max_len=6)
    with pytest.raises(ValueError, match=r"must lie in 0..5 \(max_len\), but were given offset 4 and T = 3"):
        pos(np.zeros((3, 1, 4), np.float32), offset=4)
    with pytest.raises(ValueError, match=r"input must have shape \(any, any, 4\)"):
        pos(np.zeros((3, 1, 5), np.float32))
    with pytest.raises(ValueError, match="positions must be one of"):
        positional_encoding("rotary", 4, 6)
    with pytest.raises(ValueError, match="max_len must be a positive integer"):
        LearnedPositionalEmbedding(4, max_len=0)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feed_forward_gradcheck(activation, rng):
    ff = PositionwiseFeedForward(E, FF, dropout=0.0, activation=activation, seed=0).double()
    randomize(ff, rng)
    gradcheck(ff, (rng.standard_normal((T, B, E)),))


# ----- blocks and stacks: finite differences --------------------------------------------------

@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_gradcheck(norm_first, activation, rng):
    layer = TransformerEncoderLayer(E, NHEAD, FF, dropout=0.0, activation=activation, norm_first=norm_first,
                                    seed=0).double()
    randomize(layer, rng)
    x = rng.standard_normal((S, B, E))
    gradcheck(layer, (x,), dict(src_key_padding_mask=padding(SRC_LENGTHS, S), is_causal=True))


class EncoderLayerWithPast(TransformerEncoderLayer):
    """`past` as a positional input, so that gradcheck checks its gradient too."""

    def forward(self, src, past, **kwargs):
        return super().forward(src, past=past, **kwargs)


def test_encoder_layer_gradcheck_with_past(rng):
    layer = EncoderLayerWithPast(E, NHEAD, FF, dropout=0.0, seed=0).double()
    randomize(layer, rng)
    past = (rng.standard_normal((2, B, E)), rng.standard_normal((2, B, E)))
    gradcheck(layer, (rng.standard_normal((T, B, E)), past), dict(is_causal=True))


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer_gradcheck(norm_first, rng):
    layer = TransformerDecoderLayer(E, NHEAD, FF, dropout=0.0, norm_first=norm_first, seed=0).double()
    randomize(layer, rng)
    tgt, memory = rng.standard_normal((T, B, E)), rng.standard_normal((S, B, E))
    gradcheck(layer, (tgt, memory), dict(memory_key_padding_mask=padding(SRC_LENGTHS, S), tgt_is_causal=True))


def test_stacks_gradcheck(rng):
    encoder = TransformerEncoder(2, 4, NHEAD, 6, dropout=0.0, seed=0).double()
    decoder = TransformerDecoder(2, 4, NHEAD, 6, dropout=0.0, activation="gelu", seed=1).double()
    randomize(encoder, rng)
    randomize(decoder, rng)
    pad = padding(SRC_LENGTHS, S)
    gradcheck(encoder, (rng.standard_normal((S, B, 4)),), dict(src_key_padding_mask=pad))
    gradcheck(decoder, (rng.standard_normal((T, B, 4)), rng.standard_normal((S, B, 4))),
              dict(memory_key_padding_mask=pad, tgt_is_causal=True))


# ----- blocks and stacks: PyTorch parity -------------------------------------------------------

def to_torch(ours, theirs):
    missing, unexpected = theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert not missing and not unexpected
    return theirs.train()   # training mode with dropout 0: torch's exact slow path, no fast path


def check_grads(ours, theirs):
    params = dict(ours.named_parameters())
    assert set(params) == {n for n, _ in theirs.named_parameters()}
    for name, p in theirs.named_parameters():
        assert_close(params[name].grad, p.grad, name)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_matches_torch(norm_first, activation, batch_first, rng):
    ours = TransformerEncoderLayer(E, NHEAD, FF, dropout=0.0, activation=activation, norm_first=norm_first,
                                   batch_first=batch_first, seed=0).double()
    randomize(ours, rng)
    theirs = to_torch(ours, torch.nn.TransformerEncoderLayer(E, NHEAD, FF, dropout=0.0, activation=activation,
                                                             norm_first=norm_first, batch_first=batch_first,
                                                             dtype=torch.float64))
    x = rng.standard_normal((B, S, E) if batch_first else (S, B, E))
    pad, mask = padding(SRC_LENGTHS, S), causal_mask(S)
    y = ours(x, src_mask=mask, src_key_padding_mask=pad)
    dy = rng.standard_normal(y.shape)
    dx = ours.backward(dy)
    xt = torch.from_numpy(x).requires_grad_()
    yt = theirs(xt, src_mask=torch.from_numpy(mask), src_key_padding_mask=torch.from_numpy(pad))
    (yt * torch.from_numpy(dy)).sum().backward()
    assert_close(y, yt, "output")
    assert_close(dx, xt.grad, "dsrc")
    check_grads(ours, theirs)


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer_matches_torch(norm_first, rng):
    ours = TransformerDecoderLayer(E, NHEAD, FF, dropout=0.0, activation="gelu", norm_first=norm_first,
                                   seed=0).double()
    randomize(ours, rng)
    theirs = to_torch(ours, torch.nn.TransformerDecoderLayer(E, NHEAD, FF, dropout=0.0, activation="gelu",
                                                             norm_first=norm_first, dtype=torch.float64))
    tgt, memory = rng.standard_normal((T, B, E)), rng.standard_normal((S, B, E))
    tgt_pad, mem_pad, mask = padding([4, 2, 3], T), padding(SRC_LENGTHS, S), causal_mask(T)
    y = ours(tgt, memory, tgt_mask=mask, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=mem_pad)
    dy = rng.standard_normal(y.shape)
    dtgt, dmemory = ours.backward(dy)
    tt, mt = torch.from_numpy(tgt).requires_grad_(), torch.from_numpy(memory).requires_grad_()
    yt = theirs(tt, mt, tgt_mask=torch.from_numpy(mask), tgt_key_padding_mask=torch.from_numpy(tgt_pad),
                memory_key_padding_mask=torch.from_numpy(mem_pad))
    (yt * torch.from_numpy(dy)).sum().backward()
    assert_close(y, yt, "output")
    assert_close(dtgt, tt.grad, "dtgt")
    assert_close(dmemory, mt.grad, "dmemory")
    check_grads(ours, theirs)


def test_encoder_stack_matches_torch(rng):
    ours = TransformerEncoder(2, E, NHEAD, FF, dropout=0.0, seed=0).double()
    randomize(ours, rng)
    layer = torch.nn.TransformerEncoderLayer(E, NHEAD, FF, dropout=0.0, norm_first=True, dtype=torch.float64)
    theirs = to_torch(ours, torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(E, dtype=torch.float64),
                                                        enable_nested_tensor=False))
    x, pad = rng.standard_normal((S, B, E)), padding(SRC_LENGTHS, S)
    y = ours(x, src_key_padding_mask=pad)
    dy = rng.standard_normal(y.shape)
    dx = ours.backward(dy)
    xt = torch.from_numpy(x).requires_grad_()
    yt = theirs(xt, src_key_padding_mask=torch.from_numpy(pad))
    (yt * torch.from_numpy(dy)).sum().backward()
    assert_close(y, yt, "output")
    assert_close(dx, xt.grad, "dsrc")
    check_grads(ours, theirs)


def test_layer_defaults_and_names_are_torchs():
    ours, theirs = TransformerDecoderLayer(E, NHEAD), torch.nn.TransformerDecoderLayer(E, NHEAD)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert ours.linear1.out_features == 2048 and ours.dropout.p == 0.1 and ours.norm_first
    assert all(p.dtype == np.float32 for p in ours.parameters())
    y = ours(np.zeros((T, B, E), np.float32), np.ones((S, B, E), np.float32))
    assert y.dtype == np.float32 and y.shape == (T, B, E)


def test_layer_errors():
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerEncoderLayer(E, NHEAD, activation="tanh")
    with pytest.raises(ValueError, match="dim_feedforward must be a positive integer"):
        TransformerEncoderLayer(E, NHEAD, dim_feedforward=0)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TransformerEncoderLayer(E, 3)
    with pytest.raises(ValueError, match=r"past must hold one \(keys, values\) pair per layer \(2\)"):
        TransformerEncoder(2, E, NHEAD)(np.zeros((T, B, E), np.float32), past=())


# ----- the translation Transformer ----------------------------------------------------------

def tiny_translator(seed=0, **kwargs):
    options = dict(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=6, dropout=0.0,
                   max_len=8, seed=seed)
    return Seq2SeqTransformer(6, 7, **{**options, **kwargs}).double()


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_translator_gradcheck(positions, rng):
    model = tiny_translator(positions=positions)
    randomize(model, rng)
    src, tgt = rng.integers(0, 6, (3, 2)), rng.integers(0, 7, (4, 2))
    gradcheck(model, (src, tgt), dict(src_lengths=[3, 2]))


def test_translator_ignores_source_padding(rng):
    model = tiny_translator(positions="learned")
    randomize(model, rng)
    src, tgt = rng.integers(1, 6, (4, 3)), rng.integers(0, 7, (5, 3))
    lengths = [4, 2, 1]
    src[2:, 1] = src[1:, 2] = 0                                   # id 0 only at padding
    logits = model(src, tgt, lengths)
    model.backward(rng.standard_normal(logits.shape))
    assert (model.src_tok_emb.weight.grad[0] == 0).all()         # no gradient reaches the padding
    assert (model.src_tok_emb.weight.grad[1:] != 0).any()
    for layer_weights in model.attention_maps(src, tgt, lengths):
        assert (layer_weights[~padding(lengths, 4)[:, None, :].repeat(5, 1)] > 0).all()
        assert (layer_weights[padding(lengths, 4)[:, None, :].repeat(5, 1)] == 0).all()
    other = src.copy()
    other[2:, 1] = other[1:, 2] = 5                               # whatever the padding holds
    np.testing.assert_allclose(model(other, tgt, lengths), logits, rtol=1e-12)
    for b, n in enumerate(lengths):                               # each sentence alone, unpadded
        np.testing.assert_allclose(model(src[:n, b:b + 1], tgt[:, b:b + 1])[:, 0], logits[:, b], rtol=1e-10)


def test_translator_incremental_decoding_equals_the_full_forward(rng):
    model = tiny_translator(num_decoder_layers=2).eval()
    randomize(model, rng)
    src, tgt = rng.integers(0, 6, (4, 3)), rng.integers(0, 7, (6, 3))
    full = model(src, tgt, [4, 2, 3])
    state = model.start(src, [4, 2, 3])
    for i in range(6):
        logits, state = model.step(tgt[i], state)
        np.testing.assert_allclose(logits, full[i], rtol=1e-12, atol=1e-12)
    assert model._cache == [] and all(m._cache == [] for m in model.modules())
    with pytest.raises(ValueError, match="max_len=8"):
        for i in range(3):
            _, state = model.step(tgt[i], state)


def test_translator_decodes_with_beam_search(rng):
    """The state reorders along the batch axis: beam search of width 1 is greedy decoding."""
    model = tiny_translator(num_decoder_layers=2).eval()
    randomize(model, rng, scale=1.0)
    encoded = model.start(rng.integers(0, 6, (4, 1)))

    def step(tokens, state):
        return model.step(tokens, encoded if state is None else state)

    state, tokens = encoded, [1]
    for _ in range(6):
        logits, state = model.step(np.array(tokens[-1:]), state)
        tokens.append(int(np.argmax(logits[0])))
    np.testing.assert_array_equal(decoding.greedy(step, [1], 6), tokens[1:])
    best, _ = decoding.beam_search(step, [1], 6, beam_width=1)[0]
    np.testing.assert_array_equal(best, tokens[1:])
    assert len(decoding.beam_search(step, [1], 6, beam_width=3)) == 3


# ----- the decoder-only language model ------------------------------------------------------

def tiny_lm(seed=0, **kwargs):
    options = dict(d_model=4, nhead=2, num_layers=2, dim_feedforward=6, dropout=0.0, max_len=6, seed=seed)
    return TransformerLM(7, **{**options, **kwargs}).double()


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_lm_gradcheck(positions, rng):
    model = tiny_lm(positions=positions)
    randomize(model, rng)
    gradcheck(model, (rng.integers(0, 7, (3, 2)),))


def test_lm_gradcheck_through_a_carried_state(rng):
    model = tiny_lm()
    randomize(model, rng)
    model.eval()
    _, state = model(rng.integers(0, 7, (2, 2)))
    model.train()
    gradcheck(model, (rng.integers(0, 7, (3, 2)), state))          # including d(keys, values) of the state


def test_lm_step_and_chunks_equal_the_full_causal_forward(rng):
    model = tiny_lm().eval()
    randomize(model, rng)
    ids = rng.integers(0, 7, (6, 2))
    full, full_state = model(ids)
    first, state = model(ids[:2])
    second, state = model(ids[2:], state)
    np.testing.assert_allclose(np.concatenate([first, second]), full, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(state[0], ids)
    state = None
    for i in range(6):
        logits, state = model.step(ids[i], state)
        np.testing.assert_allclose(logits, full[i], rtol=1e-12, atol=1e-12)
    for (k, v), (k2, v2) in zip(state[1], full_state[1]):
        np.testing.assert_allclose(k, k2, rtol=1e-12)
        np.testing.assert_allclose(v, v2, rtol=1e-12)
    # the window is full: a further step re-encodes the last max_len tokens from position 0
    new = np.array([3, 4])
    logits, state = model.step(new, state)
    window = np.concatenate([ids[1:], new[None]])
    np.testing.assert_allclose(logits, model(window)[0][-1], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(state[0], window)
    with pytest.raises(ValueError, match="context window holds max_len=6 positions, but was given 2 ids after a "
                                         "state of 6"):
        model(ids[:2], state)


def test_lm_is_causal(rng):
    model = tiny_lm().eval()
    randomize(model, rng)
    ids = rng.integers(0, 7, (5, 2))
    changed = ids.copy()
    changed[3] = (changed[3] + 1) % 7
    a, b = model(ids)[0], model(changed)[0]
    np.testing.assert_array_equal(a[:3], b[:3])
    assert not np.allclose(a[3:], b[3:])


def test_lm_samples_and_learns(rng):
    model = TransformerLM(5, d_model=16, nhead=2, num_layers=1, dropout=0.0, max_len=20, seed=0)
    ids = np.tile(np.arange(5), 4)[:, None].repeat(2, axis=1)         # 0 1 2 3 4 0 1 ... in two streams
    optimizer = Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        model.zero_grad()
        logits, _ = model(ids[:-1])
        loss, dlogits = cross_entropy(logits, ids[1:])
        model.backward(dlogits)
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.05 < 1.0 < losses[0]
    model.eval()
    np.testing.assert_array_equal(decoding.greedy(model.step, [0, 1], 10), [2, 3, 4, 0, 1, 2, 3, 4, 0, 1])


def test_lm_dropout_follows_its_seed_and_stops_in_eval(rng):
    ids = rng.integers(0, 7, (5, 2))
    a, b = tiny_lm(dropout=0.3), tiny_lm(dropout=0.3)
    train_a, train_b = a(ids)[0], b(ids)[0]
    np.testing.assert_array_equal(train_a, train_b)                    # same seed, same masks
    assert not np.allclose(a(ids)[0], train_a)                         # fresh masks at the next call
    a.eval()
    np.testing.assert_array_equal(a(ids)[0], a(ids)[0])                # no dropout in eval
    assert not np.allclose(a(ids)[0], train_a)


def test_lm_errors():
    model = tiny_lm()
    with pytest.raises(ValueError, match=r"ids must lie in 0..6 \(the vocabulary\)"):
        model(np.array([[7]]))
    with pytest.raises(ValueError, match="ids must hold integer token ids"):
        model(np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"state ids must have shape \(t, 2\)"):
        model(np.zeros((1, 2), np.int64), model.initial_state(3))
    with pytest.raises(ValueError, match="state must be"):
        model(np.zeros((1, 2), np.int64), (np.zeros((0, 2), np.int64), ()))
