"""Transformer blocks and stacks with torch.nn.TransformerEncoderLayer / DecoderLayer's names.

    layer = TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=256, dropout=0.1)
    y = layer(x, src_key_padding_mask=pad, is_causal=True)     # x (S, B, E) -> (S, B, E)
    dx = layer.backward(dy)

Pre-norm residual blocks by default (`norm_first=True`), each sublayer wrapped as
x + dropout(sublayer(norm(x))):

    encoder layer:  x += dropout1(self_attn(norm1(x)));  x += dropout2(ff(norm2(x)))
    decoder layer:  x += dropout1(self_attn(norm1(x)));  x += dropout2(multihead_attn(norm2(x), memory))
                    x += dropout3(ff(norm3(x)))
    ff(x) = linear2(dropout(activation(linear1(x))))      # position-wise, activation relu or gelu

`norm_first=False` gives the original post-norm block, x = norm(x + dropout(sublayer(x))).
Parameters are named as torch's (self_attn.*, multihead_attn.*, linear1.*, linear2.*, norm1..3.*),
so a torch state_dict loads as it is. `bias=False` (torch >= 2.1) drops every bias: the attention's
in_proj_bias and out_proj.bias, linear1.bias, linear2.bias and the norms' shifts. Sequences are
time-major (S, B, E) unless `batch_first`. Masks are MultiheadAttention's (True = blocked). With
`past`, a layer's self-attention reuses cached keys and values (see MultiheadAttention) and the
layer returns (y, present); backward then takes `dpresent` and returns the past's gradient as
well. The stacks TransformerEncoder and TransformerDecoder chain `num_layers` blocks
(`layers.0.*`, ...) and a final LayerNorm (`norm.*`).
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import check_flags, check_sizes
from ..core.module import Module
from ..layers import GELU, Dropout, LayerNorm, Linear, ReLU
from .multihead import MultiheadAttention

ACTIVATIONS = ("relu", "gelu")


def _activation(name: str) -> Module:
    if name == "relu":
        return ReLU()
    if name == "gelu":
        return GELU()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, but was given {name!r}.")


# ----- the position-wise feed-forward network -------------------------------------------------

def feed_forward(m: Module, x: np.ndarray) -> np.ndarray:
    """linear2(dropout(activation(linear1(x)))) with `m`'s linear1, activation, dropout, linear2."""
    return m.linear2(m.dropout(m.activation(m.linear1(x))))          # (..., d_model)


def feed_forward_backward(m: Module, dy: np.ndarray) -> np.ndarray:
    return m.linear1.backward(m.activation.backward(m.dropout.backward(m.linear2.backward(dy))))


class PositionwiseFeedForward(Module):
    """FFN(x) = linear2(dropout(activation(linear1(x)))), the same at every position.

    The blocks below hold the same four parts as attributes of their own, under torch's names.
    """

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.1, activation: str = "relu",
                 dtype=np.float32, seed=None):
        super().__init__()
        check_sizes(d_model=d_model, dim_feedforward=dim_feedforward)
        rng = init.as_generator(seed)
        self.linear1 = Linear(d_model, dim_feedforward, dtype=dtype, seed=rng)
        self.activation = _activation(activation)
        self.dropout = Dropout(dropout, seed=rng)
        self.linear2 = Linear(dim_feedforward, d_model, dtype=dtype, seed=rng)

    def forward(self, x):
        return feed_forward(self, x)

    def backward(self, dy):
        return feed_forward_backward(self, dy)


# ----- blocks ---------------------------------------------------------------------------------

class _Block(Module):
    """What both blocks share: the feed-forward parts, the norms and dropouts, residual wiring."""

    def __init__(self, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, norm_first,
                 batch_first, bias, dtype, rng, cross_attention: bool):
        super().__init__()
        check_sizes(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward)
        check_flags(bias=bias)                                   # a dtype here meant dtype=, before bias= came
        self.d_model, self.norm_first = int(d_model), bool(norm_first)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first=batch_first, dtype=dtype,
                                            seed=rng)
        if cross_attention:
            self.multihead_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first=batch_first,
                                                     dtype=dtype, seed=rng)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype, seed=rng)
        self.dropout = Dropout(dropout, seed=rng)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype, seed=rng)
        self.activation = _activation(activation)
        for i in range(1, 4 if cross_attention else 3):
            setattr(self, f"norm{i}", LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
            setattr(self, f"dropout{i}", Dropout(dropout, seed=rng))

    def _residual(self, x, i: int, sublayer):
        """x + dropout_i(sublayer(norm_i(x))) pre-norm, norm_i(x + dropout_i(sublayer(x))) post-norm.

        `sublayer(h)` returns (output, extra); returns (new x, extra).
        """
        norm, drop = getattr(self, f"norm{i}"), getattr(self, f"dropout{i}")
        if self.norm_first:
            y, extra = sublayer(norm(x))
            return x + drop(y), extra
        y, extra = sublayer(x)
        return norm(x + drop(y)), extra

    def _residual_backward(self, dy, i: int, sublayer_backward):
        """The gradient of _residual's x, given sublayer_backward(dy_sub) -> (dh, extra)."""
        norm, drop = getattr(self, f"norm{i}"), getattr(self, f"dropout{i}")
        if self.norm_first:
            dh, extra = sublayer_backward(drop.backward(dy))
            return dy + norm.backward(dh), extra
        dz = norm.backward(dy)
        dh, extra = sublayer_backward(drop.backward(dz))
        return dz + dh, extra

    def _self_attention(self, mask, padding, is_causal, past):
        """sublayer(h) for self-attention: (output, present or None)."""
        def sublayer(h):
            out = self.self_attn(h, h, h, key_padding_mask=padding, need_weights=False, attn_mask=mask,
                                 is_causal=is_causal, past=past)
            return out[0], (out[2] if past is not None else None)
        return sublayer

    def _self_attention_backward(self, dpresent):
        def sublayer_backward(dy):
            grads = self.self_attn.backward(dy, None, dpresent)
            return grads[0] + grads[1] + grads[2], (grads[3] if len(grads) == 4 else None)
        return sublayer_backward

    def _feed_forward(self, h):
        return feed_forward(self, h), None

    def _feed_forward_backward(self, dy):
        return feed_forward_backward(self, dy), None

    def extra_repr(self) -> str:
        no_bias = ", bias=False" if self.linear1.bias is None else ""
        return f"d_model={self.d_model}, norm_first={self.norm_first}{no_bias}"


class TransformerEncoderLayer(_Block):
    """torch.nn.TransformerEncoderLayer (norm_first=True by default here): self-attention and a
    feed-forward network, each in a residual block.

    forward(src (S, B, E), src_mask=None, src_key_padding_mask=None, is_causal=False, past=None)
        -> y (S, B, E), or (y, present) when past is given
    backward(dy, dpresent=None) -> dsrc, or (dsrc, dpast) when past was given

    A causal encoder layer with `past` is a decoder-only (GPT-style) block.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = True, bias: bool = True, dtype=np.float32, seed=None):
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, norm_first,
                         batch_first, bias, dtype, init.as_generator(seed), cross_attention=False)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False, past=None):
        x, present = self._residual(src, 1, self._self_attention(src_mask, src_key_padding_mask, is_causal, past))
        x, _ = self._residual(x, 2, self._feed_forward)
        self._save(past is not None)
        return x if past is None else (x, present)

    def backward(self, dy, dpresent=None):
        has_past = self._restore()
        dx, _ = self._residual_backward(dy, 2, self._feed_forward_backward)
        dx, dpast = self._residual_backward(dx, 1, self._self_attention_backward(dpresent))
        return (dx, dpast) if has_past else dx


class TransformerDecoderLayer(_Block):
    """torch.nn.TransformerDecoderLayer (norm_first=True by default here): causal self-attention,
    attention over the encoder's `memory` (`multihead_attn`), a feed-forward network.

    forward(tgt (T, B, E), memory (S, B, E), tgt_mask=None, memory_mask=None,
            tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False,
            memory_is_causal=False, past=None) -> y (T, B, E), or (y, present) when past is given
    backward(dy, dpresent=None) -> (dtgt, dmemory), plus dpast when past was given

    After every forward, `cross_weights` holds the attention over the memory, (B, T, S) averaged
    over heads: what a translation heatmap plots.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = True, bias: bool = True, dtype=np.float32, seed=None):
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, norm_first,
                         batch_first, bias, dtype, init.as_generator(seed), cross_attention=True)
        self.cross_weights = None

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal: bool = False, memory_is_causal: bool = False,
                past=None):
        def cross_attention(h):
            out, self.cross_weights = self.multihead_attn(h, memory, memory, key_padding_mask=memory_key_padding_mask,
                                                          attn_mask=memory_mask, is_causal=memory_is_causal)
            return out, None

        x, present = self._residual(tgt, 1, self._self_attention(tgt_mask, tgt_key_padding_mask, tgt_is_causal, past))
        x, _ = self._residual(x, 2, cross_attention)
        x, _ = self._residual(x, 3, self._feed_forward)
        self._save(past is not None)
        return x if past is None else (x, present)

    def backward(self, dy, dpresent=None):
        has_past = self._restore()

        def cross_attention_backward(d):
            dquery, dkey, dvalue = self.multihead_attn.backward(d)
            return dquery, dkey + dvalue

        dx, _ = self._residual_backward(dy, 3, self._feed_forward_backward)
        dx, dmemory = self._residual_backward(dx, 2, cross_attention_backward)
        dx, dpast = self._residual_backward(dx, 1, self._self_attention_backward(dpresent))
        return (dx, dmemory, dpast) if has_past else (dx, dmemory)


# ----- stacks ---------------------------------------------------------------------------------

class _Stack(Module):
    def __init__(self, layer_class, num_layers, d_model, nhead, dim_feedforward, dropout, activation,
                 layer_norm_eps, batch_first, norm_first, norm, bias, dtype, seed):
        super().__init__()
        check_sizes(num_layers=num_layers)
        check_flags(norm=norm, bias=bias)                  # a dtype given where bias now stands is refused
        rng = init.as_generator(seed)
        self.num_layers = int(num_layers)
        self.layers = [layer_class(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                                   norm_first, bias, dtype=dtype, seed=rng) for _ in range(num_layers)]
        self.norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype) if norm else None

    @staticmethod
    def _past(past, n: int):
        if past is None:
            return [None] * n
        if not isinstance(past, (tuple, list)) or len(past) != n:
            raise ValueError(f"past must hold one (keys, values) pair per layer ({n}), but was given "
                             f"{len(past) if isinstance(past, (tuple, list)) else type(past).__name__}.")
        return list(past)


class TransformerEncoder(_Stack):
    """torch.nn.TransformerEncoder of `num_layers` TransformerEncoderLayers and a final LayerNorm
    (`norm=True`, as a pre-norm stack needs); `bias=False` builds them all without biases, as
    torch.nn.Transformer(bias=False).

    forward(src, mask=None, src_key_padding_mask=None, is_causal=False, past=None)
        -> y, or (y, presents) when past (one (keys, values) pair per layer) is given
    backward(dy, dpresents=None) -> dsrc, or (dsrc, dpasts)
    """

    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = True, norm: bool = True, bias: bool = True,
                 dtype=np.float32, seed=None):
        super().__init__(TransformerEncoderLayer, num_layers, d_model, nhead, dim_feedforward, dropout, activation,
                         layer_norm_eps, batch_first, norm_first, norm, bias, dtype, seed)

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: bool = False, past=None):
        pasts = self._past(past, self.num_layers)
        x, presents = src, []
        for layer, p in zip(self.layers, pasts):
            x = layer(x, mask, src_key_padding_mask, is_causal, past=p)
            if p is not None:
                x, present = x
                presents.append(present)
        if self.norm is not None:
            x = self.norm(x)
        self._save(past is not None)
        return x if past is None else (x, tuple(presents))

    def backward(self, dy, dpresents=None):
        has_past = self._restore()
        dpresents = self._past(dpresents, self.num_layers)  # checked before the norm takes its cache
        if self.norm is not None:
            dy = self.norm.backward(dy)
        dpasts = []
        for layer, dp in zip(reversed(self.layers), reversed(dpresents)):
            dy = layer.backward(dy, dp) if has_past else layer.backward(dy)
            if has_past:
                dy, dpast = dy
                dpasts.append(dpast)
        return (dy, tuple(reversed(dpasts))) if has_past else dy


class TransformerDecoder(_Stack):
    """torch.nn.TransformerDecoder of `num_layers` TransformerDecoderLayers and a final LayerNorm.

    forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
            memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False, past=None)
        -> y, or (y, presents) when past is given
    backward(dy, dpresents=None) -> (dtgt, dmemory), plus dpasts when past was given; dmemory
    sums every layer's cross-attention gradient.
    """

    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = True, norm: bool = True, bias: bool = True,
                 dtype=np.float32, seed=None):
        super().__init__(TransformerDecoderLayer, num_layers, d_model, nhead, dim_feedforward, dropout, activation,
                         layer_norm_eps, batch_first, norm_first, norm, bias, dtype, seed)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal: bool = False, memory_is_causal: bool = False,
                past=None):
        pasts = self._past(past, self.num_layers)
        x, presents = tgt, []
        for layer, p in zip(self.layers, pasts):
            x = layer(x, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                      tgt_is_causal, memory_is_causal, past=p)
            if p is not None:
                x, present = x
                presents.append(present)
        if self.norm is not None:
            x = self.norm(x)
        self._save(past is not None)
        return x if past is None else (x, tuple(presents))

    def backward(self, dy, dpresents=None):
        has_past = self._restore()
        dpresents = self._past(dpresents, self.num_layers)  # checked before the norm takes its cache
        if self.norm is not None:
            dy = self.norm.backward(dy)
        dmemory, dpasts = 0, []
        for layer, dp in zip(reversed(self.layers), reversed(dpresents)):
            grads = layer.backward(dy, dp)
            dy, dmemory = grads[0], dmemory + grads[1]
            if has_past:
                dpasts.append(grads[2])
        return (dy, dmemory, tuple(reversed(dpasts))) if has_past else (dy, dmemory)
