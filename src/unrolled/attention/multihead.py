"""Multi-head attention with torch.nn.MultiheadAttention's parameters, masks and outputs.

    mha = MultiheadAttention(embed_dim=64, num_heads=4)          # time-major: (L, B, E)
    out, weights = mha(query, key, value, key_padding_mask=pad, attn_mask=causal_mask(L))
    dquery, dkey, dvalue = mha.backward(dout, dweights)

Parameters are torch's: `in_proj_weight` (3E, E) stacking W_q, W_k, W_v, `in_proj_bias` (3E,),
`out_proj.weight` (E, E), `out_proj.bias` (E,), so a torch state_dict loads as it is. Keys and
values of other sizes (`kdim`, `vdim`) take torch's separate `q_proj_weight` (E, E),
`k_proj_weight` (E, kdim) and `v_proj_weight` (E, vdim) instead of `in_proj_weight`, with
`in_proj_bias` still one (3E,) vector. Each head h attends with its own slice of E/num_heads
features:

    head_h = softmax(q_h k_h^T / sqrt(E / num_heads) + mask) v_h,   out = concat(heads) W_o^T + b_o

Masks follow torch: `key_padding_mask` (B, S) and `attn_mask` (L, S) or (B * num_heads, L, S)
are True where attention is NOT allowed (or float, added to the scores), the opposite of
BahdanauAttention's `mask`; `is_causal=True` blocks every key after the query's own position (it
needs no attn_mask, unlike torch's). Blocked keys get a weight of exactly 0 and no gradient.
`add_bias_kv=True` appends one learned key and value (`bias_k`, `bias_v`, (1, 1, E)) after the S
keys, `add_zero_attn=True` a key and value of zeros after those: keys that no mask blocks, so
weights cover S + 1 or S + 2 keys, as torch's. `weights` is (B, L, S) averaged over heads, or
(B, num_heads, L, S) with `average_attn_weights=False`, batch first whatever the layout, as torch;
None when `need_weights=False`. Dropout acts on the attention weights; the returned weights are
those before dropout.

Incremental decoding passes `past=(k, v)`, the projected keys and values of the positions seen so
far ((t, B, E) each, in the layer's layout; t may be 0). The new keys and values are appended,
queries sit at positions t.., `is_causal` lets query i see keys up to t + i, `key_padding_mask`
then covers all t + S keys, and the call returns a third output, `present = (k, v)` of length
t + S (without the bias and zero keys, appended anew at each call), to pass as the next `past`.
backward then takes `dpresent` too and returns a fourth gradient, `dpast`.
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import as_array, check_flags, check_float_dtype, check_shape, check_sizes
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
    """torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, *, add_bias_kv,
    add_zero_attn, kdim, vdim, batch_first): see the module docstring for the call, the masks and
    incremental decoding.

    forward(query (L, B, E), key (S, B, kdim), value (S, B, vdim), key_padding_mask=None,
            need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False,
            past=None) -> (output (L, B, E), weights) [+ present when past is given]
    backward(doutput, dweights=None, dpresent=None) -> (dquery, dkey, dvalue) [+ dpast]
    With batch_first=True every sequence array is (B, L, E) instead.

    The arguments after `bias` are keyword-only: torch's positions after it (add_bias_kv,
    add_zero_attn, kdim, vdim, batch_first, device, dtype) hold arguments this layer partly
    lacks (device), so a positional call in torch's order fails loudly instead of meaning
    something else.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, *,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, dtype=np.float32, seed=None):
        super().__init__()
        check_sizes(embed_dim=embed_dim, num_heads=num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim must be divisible by num_heads, but was given {embed_dim} and {num_heads}.")
        kdim, vdim = embed_dim if kdim is None else kdim, embed_dim if vdim is None else vdim
        check_sizes(kdim=kdim, vdim=vdim)
        check_flags(bias=bias, add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn, batch_first=batch_first)
        rng = init.as_generator(seed)
        E = int(embed_dim)
        self.embed_dim, self.num_heads, self.head_dim = E, int(num_heads), E // int(num_heads)
        self.kdim, self.vdim = int(kdim), int(vdim)
        self.batch_first, self.add_zero_attn = bool(batch_first), bool(add_zero_attn)
        self.dtype = check_float_dtype(dtype)
        if self.kdim == E and self.vdim == E:                         # torch: xavier_uniform_ on each weight
            self.in_proj_weight = Parameter(init.glorot_uniform((3 * E, E), rng, self.dtype))
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.in_proj_weight = None
            self.q_proj_weight = Parameter(init.glorot_uniform((E, E), rng, self.dtype))
            self.k_proj_weight = Parameter(init.glorot_uniform((E, self.kdim), rng, self.dtype))
            self.v_proj_weight = Parameter(init.glorot_uniform((E, self.vdim), rng, self.dtype))
        self.in_proj_bias = Parameter(np.zeros(3 * E, self.dtype)) if bias else None
        self.bias_k = self.bias_v = None
        if add_bias_kv:                    # torch: xavier_normal_ on (1, 1, E), std sqrt(2 / (E + E))
            self.bias_k = Parameter((rng.standard_normal((1, 1, E)) / np.sqrt(E)).astype(self.dtype))
            self.bias_v = Parameter((rng.standard_normal((1, 1, E)) / np.sqrt(E)).astype(self.dtype))
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype, seed=rng)
        if bias:
            self.out_proj.bias.data[...] = 0                                                  # torch: constant_(0)
        self.attention = ScaledDotProductAttention(dropout, seed=rng)

    def extra_repr(self) -> str:
        other_sizes = f", kdim={self.kdim}, vdim={self.vdim}" if self.in_proj_weight is None else ""
        extras = "".join(f", {name}=True" for name, on in (("add_bias_kv", self.bias_k is not None),
                                                            ("add_zero_attn", self.add_zero_attn)) if on)
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.attention.dropout.p}"
                f"{other_sizes}{extras}, batch_first={self.batch_first}")

    # ----- helpers --------------------------------------------------------------------------

    def _time_major(self, x, name: str) -> np.ndarray:
        x = as_array(x, name, 3, self.dtype)
        return x.transpose(1, 0, 2) if self.batch_first else x

    def _layout(self, x: np.ndarray) -> np.ndarray:
        """A time-major (T, B, E) array in the layer's layout."""
        return x.transpose(1, 0, 2) if self.batch_first else x

    def _in_proj(self, part: int):
        """W_part (E, n) and its gradient (views) for part 0, 1, 2 = query, key, value: rows of
        in_proj_weight (n = E), or q_proj_weight, k_proj_weight, v_proj_weight (n = E, kdim, vdim)."""
        if self.in_proj_weight is None:
            w = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[part]
            return w.data, w.grad
        rows = slice(part * self.embed_dim, (part + 1) * self.embed_dim)
        return self.in_proj_weight.data[rows], self.in_proj_weight.grad[rows]

    def _project(self, x: np.ndarray, part: int) -> np.ndarray:
        """x (T, B, n) @ W_part^T + b_part -> (T, B, E) for part 0, 1, 2 = query, key, value."""
        E = self.embed_dim
        W, _ = self._in_proj(part)                                            # (E, n)
        y = x.reshape(-1, W.shape[1]) @ W.T                                   # (T*B, E): one GEMM
        if self.in_proj_bias is not None:
            y += self.in_proj_bias.data[part * E:(part + 1) * E]
        return y.reshape(x.shape[:2] + (E,))

    def _project_backward(self, dy: np.ndarray, x: np.ndarray, part: int) -> np.ndarray:
        E = self.embed_dim
        W, dW = self._in_proj(part)                                           # (E, n)
        dy2 = dy.reshape(-1, E)                                               # (T*B, E)
        dW += dy2.T @ x.reshape(-1, W.shape[1])                               # (E, n)
        if self.in_proj_bias is not None:
            self.in_proj_bias.grad[part * E:(part + 1) * E] += dy2.sum(axis=0)
        return (dy2 @ W).reshape(x.shape)                                     # (T, B, n)

    def _heads(self, x: np.ndarray) -> np.ndarray:
        """(T, B, E) -> (B, num_heads, T, head_dim)."""
        T, B, _ = x.shape
        return x.reshape(T, B, self.num_heads, self.head_dim).transpose(1, 2, 0, 3)

    def _merge(self, x: np.ndarray) -> np.ndarray:
        """(B, num_heads, T, head_dim) -> (T, B, E)."""
        B, _, T, _ = x.shape
        return x.transpose(2, 0, 1, 3).reshape(T, B, self.embed_dim)

    def _mask(self, key_padding_mask, attn_mask, is_causal: bool, B: int, L: int, S: int, t: int, extra: int):
        """The combined mask for ScaledDotProductAttention, broadcastable to (B, H, L, S + extra): bool
        (True = allowed) when every mask is bool, float (-inf = blocked) otherwise; None if none.
        The `extra` keys after the S (bias_k, the zero key) are always allowed, as torch pads its masks."""
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
            mask = None if blocked is None else ~blocked
        else:
            bias = bias.astype(self.dtype)
            mask = bias if blocked is None else np.where(blocked, -np.inf, bias).astype(self.dtype)
        if mask is None or not extra:
            return mask
        allow = np.full(mask.shape[:-1] + (extra,), mask.dtype == bool, mask.dtype)   # True, or 0 added
        return np.concatenate([mask, allow], axis=-1)                                 # (..., S + extra)

    # ----- forward and backward -------------------------------------------------------------

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False, past=None):
        query = self._time_major(query, "query")                              # (L, B, E)
        key = self._time_major(key, "key")                                    # (S, B, kdim)
        value = self._time_major(value, "value")                              # (S, B, vdim)
        L, B, E = query.shape
        check_shape(query, (L, B, self.embed_dim), "query")
        check_shape(key, (None, B, self.kdim), "key")
        check_shape(value, (key.shape[0], B, self.vdim), "value")
        q, k, v = self._project(query, 0), self._project(key, 1), self._project(value, 2)   # (L|S, B, E)
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
        present = (self._layout(k), self._layout(v))
        if self.bias_k is not None:                                           # one more key and value
            k = np.concatenate([k, np.broadcast_to(self.bias_k.data, (1, B, E))])   # (S+1, B, E)
            v = np.concatenate([v, np.broadcast_to(self.bias_v.data, (1, B, E))])
        kh, vh = self._heads(k), self._heads(v)                               # (B, H, S', D)
        if self.add_zero_attn:                                                # and a key and value of zeros
            zero = np.zeros(kh.shape[:2] + (1, self.head_dim), self.dtype)
            kh, vh = np.concatenate([kh, zero], axis=2), np.concatenate([vh, zero], axis=2)
        mask = self._mask(key_padding_mask, attn_mask, is_causal, B, L, S, t, kh.shape[2] - S)
        heads, w = self.attention(self._heads(q), kh, vh, mask)               # (B, H, L, D), (B, H, L, S')
        out = self.out_proj(self._merge(heads))                               # (L, B, E)
        weights = (w.mean(axis=1) if average_attn_weights else w) if need_weights else None
        self._save((query, key, value, t, past is not None, None if weights is None else weights.shape))
        out = self._layout(out)
        if past is None:
            return out, weights
        return out, weights, present

    def backward(self, doutput, dweights=None, dpresent=None):
        query, key, value, t, has_past, weights_shape = self._restore()
        L, B, E = query.shape
        doutput = np.asarray(doutput)
        check_shape(doutput, self._layout(query).shape, "doutput")
        if dweights is not None:                          # checked before out_proj takes its cache
            if weights_shape is None:
                raise ValueError("dweights must be None when the forward pass returned no weights "
                                 "(need_weights=False).")
            dweights = np.asarray(dweights)
            check_shape(dweights, weights_shape, "dweights")
            if len(weights_shape) == 3:                                       # averaged over heads
                dweights = np.broadcast_to(dweights[:, None] / self.num_heads, (B, self.num_heads) + weights_shape[1:])
        if dpresent is not None:
            if not has_past:
                raise ValueError("dpresent must be None when the forward pass was given no past.")
            n = t + key.shape[0]                                          # keys seen so far
            present_shape = (B, n, E) if self.batch_first else (n, B, E)
            if not isinstance(dpresent, (tuple, list)) or len(dpresent) != 2:
                raise ValueError(f"dpresent must be a (keys, values) pair, but was given {type(dpresent).__name__}.")
            for name, part in zip(("dpresent keys", "dpresent values"), dpresent):
                check_shape(np.asarray(part), present_shape, name)
        dheads = self._heads(self.out_proj.backward(self._layout(doutput)))  # (B, H, L, D)
        dqh, dkh, dvh = self.attention.backward(dheads, dweights)             # (B, H, L|S', D)
        if self.add_zero_attn:                                                # the zero key and value
            dkh, dvh = dkh[:, :, :-1], dvh[:, :, :-1]
        dq, dk, dv = self._merge(dqh), self._merge(dkh), self._merge(dvh)    # (L|t+S(+1), B, E)
        if self.bias_k is not None:
            self.bias_k.grad += dk[-1].sum(axis=0)                            # (B, E) -> (1, 1, E)
            self.bias_v.grad += dv[-1].sum(axis=0)
            dk, dv = dk[:-1], dv[:-1]                                         # (t+S, B, E)
        if dpresent is not None:
            dk = dk + self._layout(np.asarray(dpresent[0]))
            dv = dv + self._layout(np.asarray(dpresent[1]))
        grads = (self._layout(self._project_backward(dq, query, 0)),
                 self._layout(self._project_backward(dk[t:], key, 1)),
                 self._layout(self._project_backward(dv[t:], value, 2)))
        if not has_past:
            return grads
        return grads + ((self._layout(dk[:t]), self._layout(dv[:t])),)
