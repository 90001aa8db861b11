"""Multi-head attention with torch.nn.MultiheadAttention's parameters, masks and outputs.

    mha = MultiheadAttention(embed_dim=64, num_heads=4)          # time-major: (L, B, E)
    out, weights = mha(query, key, value, key_padding_mask=pad, attn_mask=causal_mask(L))
    dquery, dkey, dvalue = mha.backward(dout, dweights)

Parameters are torch's: `in_proj_weight` (3E, E) stacking W_q, W_k, W_v, `in_proj_bias` (3E,),
`out_proj.weight` (E, E), `out_proj.bias` (E,), so a torch state_dict loads as it is. Each head
h attends with its own slice of E/num_heads features:

    head_h = softmax(q_h k_h^T / sqrt(E / num_heads) + mask) v_h,   out = concat(heads) W_o^T + b_o

Masks follow torch: `key_padding_mask` (B, S) and `attn_mask` (L, S) or (B * num_heads, L, S)
are True where attention is NOT allowed (or float, added to the scores), the opposite of
BahdanauAttention's `mask`; `is_causal=True` blocks every key after the query's own position (it
needs no attn_mask, unlike torch's). Blocked keys get a weight of exactly 0 and no gradient.
`weights` is (B, L, S) averaged over heads, or (B, num_heads, L, S) with
`average_attn_weights=False`, batch first whatever the layout, as torch; None when
`need_weights=False`. Dropout acts on the attention weights; the returned weights are those
before dropout.

Incremental decoding passes `past=(k, v)`, the projected keys and values of the positions seen so
far ((t, B, E) each, in the layer's layout; t may be 0). The new keys and values are appended,
queries sit at positions t.., `is_causal` lets query i see keys up to t + i, `key_padding_mask`
then covers all t + S keys, and the call returns a third output, `present = (k, v)` of length
t + S, to pass as the next `past`. backward then takes `dpresent` too and returns a fourth
gradient, `dpast`.
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import as_array, check_float_dtype, check_shape, check_sizes
from ..core.module import Module, Parameter
from ..layers import Linear
from .attention import ScaledDotProductAttention


def causal_mask(size: int, dtype=bool) -> np.ndarray:
    """(size, size) attn_mask blocking every key after the query: bool True above the diagonal,
    or float -inf there and 0 elsewhere (torch.nn.Transformer.generate_square_subsequent_mask)."""
    blocked = np.triu(np.ones((size, size), bool), k=1)
    if np.dtype(dtype) == bool:
        return blocked
    return np.where(blocked, -np.inf, 0).astype(dtype)


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first): see the
    module docstring for the call, the masks and incremental decoding.

    forward(query (L, B, E), key (S, B, E), value (S, B, E), key_padding_mask=None,
            need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False,
            past=None) -> (output (L, B, E), weights) [+ present when past is given]
    backward(doutput, dweights=None, dpresent=None) -> (dquery, dkey, dvalue) [+ dpast]
    With batch_first=True every sequence array is (B, L, E) instead.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, dtype=np.float32, seed=None):
        super().__init__()
        check_sizes(embed_dim=embed_dim, num_heads=num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim must be divisible by num_heads, but was given {embed_dim} and {num_heads}.")
        rng = init.as_generator(seed)
        E = int(embed_dim)
        self.embed_dim, self.num_heads, self.head_dim = E, int(num_heads), E // int(num_heads)
        self.batch_first = bool(batch_first)
        self.dtype = check_float_dtype(dtype)
        self.in_proj_weight = Parameter(init.glorot_uniform((3 * E, E), rng, self.dtype))   # torch: xavier_uniform_
        self.in_proj_bias = Parameter(np.zeros(3 * E, self.dtype)) if bias else None
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype, seed=rng)
        if bias:
            self.out_proj.bias.data[...] = 0                                                  # torch: constant_(0)
        self.attention = ScaledDotProductAttention(dropout, seed=rng)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.attention.dropout.p}, "
                f"batch_first={self.batch_first}")

    # ----- helpers --------------------------------------------------------------------------

    def _time_major(self, x, name: str) -> np.ndarray:
        x = as_array(x, name, 3, self.dtype)
        return x.transpose(1, 0, 2) if self.batch_first else x

    def _layout(self, x: np.ndarray) -> np.ndarray:
        """A time-major (T, B, E) array in the layer's layout."""
        return x.transpose(1, 0, 2) if self.batch_first else x

    def _project(self, x: np.ndarray, part: int) -> np.ndarray:
        """x (T, B, E) @ W_part^T + b_part for part 0, 1, 2 = query, key, value."""
        E = self.embed_dim
        y = x.reshape(-1, E) @ self.in_proj_weight.data[part * E:(part + 1) * E].T   # (T*B, E): one GEMM
        if self.in_proj_bias is not None:
            y += self.in_proj_bias.data[part * E:(part + 1) * E]
        return y.reshape(x.shape)

    def _project_backward(self, dy: np.ndarray, x: np.ndarray, part: int) -> np.ndarray:
        E = self.embed_dim
        rows = slice(part * E, (part + 1) * E)
        dy2 = dy.reshape(-1, E)                                               # (T*B, E)
        self.in_proj_weight.grad[rows] += dy2.T @ x.reshape(-1, E)            # (E, E)
        if self.in_proj_bias is not None:
            self.in_proj_bias.grad[rows] += dy2.sum(axis=0)
        return (dy2 @ self.in_proj_weight.data[rows]).reshape(dy.shape)      # (T, B, E)

    def _heads(self, x: np.ndarray) -> np.ndarray:
        """(T, B, E) -> (B, num_heads, T, head_dim)."""
        T, B, _ = x.shape
        return x.reshape(T, B, self.num_heads, self.head_dim).transpose(1, 2, 0, 3)

    def _merge(self, x: np.ndarray) -> np.ndarray:
        """(B, num_heads, T, head_dim) -> (T, B, E)."""
        B, _, T, _ = x.shape
        return x.transpose(2, 0, 1, 3).reshape(T, B, self.embed_dim)

    def _mask(self, key_padding_mask, attn_mask, is_causal: bool, B: int, L: int, S: int, t: int):
        """The combined mask for ScaledDotProductAttention, broadcastable to (B, H, L, S): bool
        (True = allowed) when every mask is bool, float (-inf = blocked) otherwise; None if none."""
        H = self.num_heads
        blocked, bias = None, None
        if key_padding_mask is not None:
            m = np.asarray(key_padding_mask)
            if m.shape != (B, S) or not (m.dtype == bool or np.issubdtype(m.dtype, np.floating)):
                raise ValueError(f"key_padding_mask must be a bool or float array of shape ({B}, {S}) (batch, keys), "
                                 f"but was given {m.dtype} of shape {m.shape}.")
            m = m[:, None, None, :]                                           # (B, 1, 1, S)
            blocked, bias = (m, None) if m.dtype == bool else (None, m)
        if attn_mask is not None:
            m = np.asarray(attn_mask)
            if m.shape not in ((L, S), (B * H, L, S)) or not (m.dtype == bool or np.issubdtype(m.dtype, np.floating)):
                raise ValueError(f"attn_mask must be a bool or float array of shape ({L}, {S}) or ({B * H}, {L}, {S}), "
                                 f"but was given {m.dtype} of shape {m.shape}.")
            if m.ndim == 3:
                m = m.reshape(B, H, L, S)
            if m.dtype == bool:
                blocked = m if blocked is None else blocked | m
            else:
                bias = m if bias is None else bias + m
        if is_causal:
            m = ~np.tri(L, S, k=t, dtype=bool)                                # (L, S): key j > t + i
            blocked = m if blocked is None else blocked | m
        if bias is None:
            return None if blocked is None else ~blocked
        bias = bias.astype(self.dtype)
        return bias if blocked is None else np.where(blocked, -np.inf, bias).astype(self.dtype)

    # ----- forward and backward -------------------------------------------------------------

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False, past=None):
        query = self._time_major(query, "query")                              # (L, B, E)
        key = self._time_major(key, "key")                                    # (S, B, E)
        value = self._time_major(value, "value")                              # (S, B, E)
        L, B, E = query.shape
        check_shape(query, (L, B, self.embed_dim), "query")
        check_shape(key, (None, B, E), "key")
        check_shape(value, key.shape, "value")
        q, k, v = self._project(query, 0), self._project(key, 1), self._project(value, 2)
        t = 0
        if past is not None:
            if not isinstance(past, (tuple, list)) or len(past) != 2:
                raise ValueError(f"past must be a pair (keys, values), but was given {type(past).__name__}.")
            k_past, v_past = (self._time_major(p, name) for p, name in zip(past, ("past keys", "past values")))
            check_shape(k_past, (None, B, E), "past keys")
            check_shape(v_past, k_past.shape, "past values")
            t = k_past.shape[0]
            k = np.concatenate([k_past, k])                                   # (t+S, B, E)
            v = np.concatenate([v_past, v])
        S = k.shape[0]
        mask = self._mask(key_padding_mask, attn_mask, is_causal, B, L, S, t)
        heads, w = self.attention(self._heads(q), self._heads(k), self._heads(v), mask)   # (B, H, L, D), (B, H, L, S)
        out = self.out_proj(self._merge(heads))                               # (L, B, E)
        weights = (w.mean(axis=1) if average_attn_weights else w) if need_weights else None
        self._save((query, key, value, t, past is not None, None if weights is None else weights.shape))
        out = self._layout(out)
        if past is None:
            return out, weights
        return out, weights, (self._layout(k), self._layout(v))

    def backward(self, doutput, dweights=None, dpresent=None):
        query, key, value, t, has_past, weights_shape = self._restore()
        L, B, E = query.shape
        doutput = np.asarray(doutput)
        check_shape(doutput, self._layout(query).shape, "doutput")
        dheads = self._heads(self.out_proj.backward(self._layout(doutput)))  # (B, H, L, D)
        if dweights is not None:
            if weights_shape is None:
                raise ValueError("dweights must be None when the forward pass returned no weights "
                                 "(need_weights=False).")
            dweights = np.asarray(dweights)
            check_shape(dweights, weights_shape, "dweights")
            if len(weights_shape) == 3:                                       # averaged over heads
                dweights = np.broadcast_to(dweights[:, None] / self.num_heads, (B, self.num_heads) + weights_shape[1:])
        dq, dk, dv = (self._merge(d) for d in self.attention.backward(dheads, dweights))   # (L|t+S, B, E)
        if dpresent is not None:
            dk = dk + self._layout(np.asarray(dpresent[0]))
            dv = dv + self._layout(np.asarray(dpresent[1]))
        grads = (self._layout(self._project_backward(dq, query, 0)),
                 self._layout(self._project_backward(dk[t:], key, 1)),
                 self._layout(self._project_backward(dv[t:], value, 2)))
        if not has_past:
            return grads
        return grads + ((self._layout(dk[:t]), self._layout(dv[:t])),)
