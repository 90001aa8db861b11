"""TransformerEncoderLayer / TransformerDecoderLayer(bias=False) against torch.nn's (torch >= 2.1).

bias=False drops the biases of the attention (in_proj_bias, out_proj.bias), of linear1 and
linear2 and of the norms, with torch's state dict names, loading both ways. Pre- and post-norm
layers match torch (float64, 1e-8 relative) in outputs and every gradient, and central
differences (rel < 1e-6).
"""
import numpy as np
import pytest
import torch

from unrolled.attention import (Seq2SeqTransformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                                TransformerEncoderLayer, TransformerLM, causal_mask)
from unrolled.testing import gradcheck

from test_transformer import assert_close, padding, randomize, to_torch

torch.set_num_threads(1)

E, NHEAD, FF = 8, 2, 12
S, T, B = 5, 4, 3
SRC_LENGTHS = [5, 3, 2]
LAYERS = {"encoder": (TransformerEncoderLayer, torch.nn.TransformerEncoderLayer),
          "decoder": (TransformerDecoderLayer, torch.nn.TransformerDecoderLayer)}


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
def test_layer_without_bias_matches_torch(kind, norm_first, batch_first, rng):
    ours_class, torch_class = LAYERS[kind]
    ours = ours_class(E, NHEAD, FF, dropout=0.0, activation="gelu", norm_first=norm_first, batch_first=batch_first,
                      bias=False, seed=0).double()
    randomize(ours, rng)
    theirs = to_torch(ours, torch_class(E, NHEAD, FF, dropout=0.0, activation="gelu", norm_first=norm_first,
                                        batch_first=batch_first, bias=False, dtype=torch.float64))
    layout = (lambda a: a.transpose(1, 0, 2).copy()) if batch_first else (lambda a: a)
    tgt, memory = layout(rng.standard_normal((T, B, E))), layout(rng.standard_normal((S, B, E)))
    if kind == "encoder":
        args, kwargs = (memory,), dict(src_mask=causal_mask(S), src_key_padding_mask=padding(SRC_LENGTHS, S))
    else:
        args, kwargs = (tgt, memory), dict(tgt_mask=causal_mask(T), tgt_key_padding_mask=padding([4, 2, 3], T),
                                           memory_key_padding_mask=padding(SRC_LENGTHS, S))
    y = ours(*args, **kwargs)
    dy = rng.standard_normal(y.shape)
    grads = ours.backward(dy)                                  # dsrc, or (dtgt, dmemory)
    grads = grads if kind == "decoder" else (grads,)
    t_args = [torch.from_numpy(a).requires_grad_() for a in args]
    yt = theirs(*t_args, **{k: torch.from_numpy(v) for k, v in kwargs.items()})
    (yt * torch.from_numpy(dy)).sum().backward()
    assert_close(y, yt, "output")
    for i, (g, t) in enumerate(zip(grads, t_args)):
        assert_close(g, t.grad, f"input {i}")
    params = dict(ours.named_parameters())
    assert set(params) == {n for n, _ in theirs.named_parameters()}
    assert not any(n.endswith("bias") for n in params)
    for name, p in theirs.named_parameters():
        assert_close(params[name].grad, p.grad, name)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_names_and_loading_both_ways(kind, bias, rng):
    ours_class, torch_class = LAYERS[kind]
    theirs = torch_class(E, NHEAD, FF, dropout=0.0, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.5))
    ours = ours_class(E, NHEAD, FF, dropout=0.0, norm_first=False, bias=bias, dtype=np.float64, seed=0)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]                 # torch's names and order
    assert ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()}) == ([], [])
    args = (rng.standard_normal((T, B, E)),) + ((rng.standard_normal((S, B, E)),) if kind == "decoder" else ())
    assert_close(ours(*args), theirs.train()(*map(torch.from_numpy, args)), "output")
    back = torch_class(E, NHEAD, FF, bias=bias, dtype=torch.float64)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for k, v in back.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), theirs.state_dict()[k].numpy())
    with pytest.raises(ValueError, match="load_state_dict (is missing|was given unexpected) 'self_attn.in_proj_bias'"):
        ours_class(E, NHEAD, FF, bias=not bias).load_state_dict(ours.state_dict())


@pytest.mark.parametrize("norm_first", [True, False])
def test_layers_without_bias_gradcheck(norm_first, rng):
    encoder = TransformerEncoderLayer(E, NHEAD, FF, dropout=0.0, norm_first=norm_first, bias=False, seed=0).double()
    decoder = TransformerDecoderLayer(E, NHEAD, FF, dropout=0.0, norm_first=norm_first, bias=False, seed=1).double()
    randomize(encoder, rng)
    randomize(decoder, rng)
    pad = padding(SRC_LENGTHS, S)
    gradcheck(encoder, (rng.standard_normal((S, B, E)),), dict(src_key_padding_mask=pad, is_causal=True))
    gradcheck(decoder, (rng.standard_normal((T, B, E)), rng.standard_normal((S, B, E))),
              dict(memory_key_padding_mask=pad, tgt_is_causal=True))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_bias_in_torchs_position_and_a_dtype_there_is_refused(kind):
    """(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, norm_first, bias)."""
    ours_class, torch_class = LAYERS[kind]
    ours = ours_class(E, NHEAD, FF, 0.1, "relu", 1e-5, False, True, False)
    theirs = torch_class(E, NHEAD, FF, 0.1, "relu", 1e-5, False, True, False)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "bias=False" in repr(ours) and "bias=False" not in repr(ours_class(E, NHEAD, FF))
    with pytest.raises(ValueError, match=r"^bias must be True or False, but was given <class 'numpy\.float64'>\.$"):
        ours_class(E, NHEAD, FF, 0.1, "relu", 1e-5, False, True, np.float64)   # dtype is not the ninth argument


def test_stacks_keep_their_dtype_and_seed():
    """The stacks build their layers with dtype= and seed= by name, past the new bias position."""
    encoder = TransformerEncoder(2, E, NHEAD, FF, dtype=np.float64, seed=3)
    decoder = TransformerDecoder(1, E, NHEAD, FF, dtype=np.float64, seed=3)
    assert all(p.dtype == np.float64 for m in (encoder, decoder) for p in m.parameters())
    again = TransformerEncoder(2, E, NHEAD, FF, dtype=np.float64, seed=3)
    for (name, a), (_, b) in zip(encoder.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    assert any(n.endswith("bias") for n, _ in encoder.named_parameters())


def test_stacks_without_bias_match_torch(rng):
    """TransformerEncoder / TransformerDecoder(bias=False): every layer and the final norm without
    biases, with the names and numbers of torch's stacks built as torch.nn.Transformer(bias=False) builds them."""
    f64 = dict(dtype=torch.float64)
    encoder = TransformerEncoder(2, E, NHEAD, FF, dropout=0.0, bias=False, seed=0).double()
    decoder = TransformerDecoder(2, E, NHEAD, FF, dropout=0.0, bias=False, seed=1).double()
    randomize(encoder, rng)
    randomize(decoder, rng)
    assert not any(name.endswith("bias") for name in [*encoder.state_dict(), *decoder.state_dict()])
    t_encoder = to_torch(encoder, torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(E, NHEAD, FF, 0.0, norm_first=True, bias=False, **f64), 2,
        norm=torch.nn.LayerNorm(E, bias=False, **f64), enable_nested_tensor=False))
    t_decoder = to_torch(decoder, torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(E, NHEAD, FF, 0.0, norm_first=True, bias=False, **f64), 2,
        norm=torch.nn.LayerNorm(E, bias=False, **f64)))
    src, tgt = rng.standard_normal((S, B, E)), rng.standard_normal((T, B, E))
    memory = encoder(src)
    y = decoder(tgt, memory, tgt_is_causal=True, tgt_mask=causal_mask(T))
    dy = rng.standard_normal(y.shape)
    dtgt, dmemory = decoder.backward(dy)
    dsrc = encoder.backward(dmemory)
    src_t, tgt_t = (torch.from_numpy(a).requires_grad_() for a in (src, tgt))
    y_t = t_decoder(tgt_t, t_encoder(src_t), tgt_mask=torch.from_numpy(causal_mask(T)), tgt_is_causal=True)
    (y_t * torch.from_numpy(dy)).sum().backward()
    assert_close(y, y_t, "output")
    assert_close(dtgt, tgt_t.grad, "dtgt")
    assert_close(dsrc, src_t.grad, "dsrc")
    for ours, theirs in ((encoder, t_encoder), (decoder, t_decoder)):
        for name, p in theirs.named_parameters():
            assert_close(dict(ours.named_parameters())[name].grad, p.grad, name)
    with pytest.raises(ValueError, match=r"^bias must be True or False, but was given <class 'numpy\.float64'>\.$"):
        TransformerEncoder(1, E, NHEAD, FF, 0.1, "relu", 1e-5, False, True, True, np.float64)   # dtype is 12th now


def test_the_lm_and_the_translator_without_bias(rng):
    """bias=False reaches every Transformer layer of TransformerLM and Seq2SeqTransformer (the
    embeddings and output layers keep theirs), and their gradients check by finite differences."""
    lm = TransformerLM(7, d_model=E, nhead=NHEAD, num_layers=2, dim_feedforward=FF, dropout=0.0, seed=0,
                       bias=False).double()
    translator = Seq2SeqTransformer(6, 7, d_model=E, nhead=NHEAD, num_encoder_layers=1, num_decoder_layers=1,
                                    dim_feedforward=FF, dropout=0.0, seed=0, bias=False).double()
    for model, own in ((lm, {"decoder.bias"}), (translator, {"generator.bias"})):
        randomize(model, rng)
        assert {name for name in model.state_dict() if name.endswith("bias")} == own
    gradcheck(lm, (rng.integers(0, 7, (3, 2)),))
    gradcheck(translator, (rng.integers(0, 6, (3, 2)), rng.integers(0, 7, (4, 2))), dict(src_lengths=[3, 2]))
