"""Attention over a set of keys: additive (Bahdanau), dot and general (Luong), scaled dot-product.

One decoder step of a recurrent sequence-to-sequence model attends over the encoder's outputs,
time-major like the recurrent layers:

    attn = BahdanauAttention(query_size=256, key_size=512)      # or LuongAttention(256, 512, "general")
    context, weights = attn(query, keys, mask)    # query (B, Hq), keys (S, B, Hk), mask (S, B) bool
    dquery, dkeys = attn.backward(dcontext, dweights=None)

`context` is (B, Hk), the weighted sum of the keys (the keys are also the values); `weights` is
(B, S), each row a distribution over the source positions. `mask` is True where a key is a real
token and False at padding: masked keys get a weight of exactly 0 and no gradient. A query may
also hold several steps at once, (T, B, Hq) -> context (T, B, Hk), weights (T, B, S), when they do
not depend on one another (Luong attention over a whole teacher-forced decoder output).

`ScaledDotProductAttention` is the batched kernel of the Transformer, softmax(q k^T / sqrt(d)) v
over any leading dimensions, with torch.nn.functional.scaled_dot_product_attention's mask
convention (a bool mask is True where attention is allowed; a float mask is added to the scores)
and dropout on the attention weights.

A query whose keys are all masked gets weights of 0 and a zero context (PyTorch gives NaN there).
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import as_array, check_float_dtype, check_shape, check_sizes
from ..core.functional import as_float_array, softmax_backward
from ..core.module import Module, Parameter
from ..layers import Dropout, Linear


def masked_softmax(scores: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis, exactly 0 where `allowed` is False or a score is -inf.

    `allowed` is a bool array broadcastable to `scores` (None allows everything). A row with
    nothing allowed is all zeros instead of NaN.
    """
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)                       # (..., 1)
    top = np.where(np.isfinite(top), top, 0)                       # an all -inf row: exp(-inf) = 0 below
    e = np.exp(scores - top)
    total = e.sum(axis=-1, keepdims=True)
    e /= np.where(total > 0, total, 1)
    return e


def length_mask(lengths, max_len: int) -> np.ndarray:
    """(max_len, B) bool, True at the first lengths[b] positions of sequence b: the `mask` of
    BahdanauAttention and LuongAttention for padded time-major keys."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer) or (lengths.size and lengths.min() < 0):
        raise ValueError(f"lengths must be a 1-D array of non-negative integers, but was given {lengths.dtype} "
                         f"of shape {lengths.shape}.")
    return np.arange(max_len)[:, None] < lengths[None, :]


class ScaledDotProductAttention(Module):
    """softmax(query key^T * scale + mask) value, with dropout on the weights while training.

        out, weights = sdpa(query (..., L, D), key (..., S, D), value (..., S, Dv),
                            attn_mask=None, is_causal=False)     # out (..., L, Dv), weights (..., L, S)
        dquery, dkey, dvalue = sdpa.backward(dout, dweights=None)

    `attn_mask` broadcasts to (..., L, S): bool True where attention is allowed, or float added
    to the scores (-inf blocks). `is_causal` also blocks key j > query i. `scale` defaults to
    1/sqrt(D). The returned weights are the softmax before dropout (PyTorch's MultiheadAttention
    returns them after); `dweights` is their gradient.
    """

    def __init__(self, dropout: float = 0.0, scale: float | None = None, seed=None):
        super().__init__()
        self.dropout = Dropout(dropout, seed=init.as_generator(seed))
        self.scale = None if scale is None else float(scale)

    def forward(self, query, key, value, attn_mask=None, is_causal: bool = False):
        q = as_float_array(query, "query", min_ndim=2)
        k = as_float_array(key, "key", q.dtype, min_ndim=2)
        v = as_float_array(value, "value", q.dtype, min_ndim=2)
        L, D = q.shape[-2:]
        if k.shape[-1] != D or v.shape[-2] != k.shape[-2] or k.shape[:-2] != v.shape[:-2]:
            raise ValueError(f"key must be (..., S, {D}) and value (..., S, Dv) with the same S, but were given "
                             f"shapes {k.shape} and {v.shape}.")
        S = k.shape[-2]
        scale = float(1.0 / np.sqrt(D)) if self.scale is None else self.scale   # a Python float keeps float32
        scores = (q @ np.swapaxes(k, -1, -2)) * scale              # (..., L, S)
        allowed = None
        if attn_mask is not None:
            attn_mask = np.asarray(attn_mask)
            try:
                np.broadcast_shapes(attn_mask.shape, scores.shape)
            except ValueError:
                raise ValueError(f"attn_mask must broadcast to the scores' shape {scores.shape}, but was given "
                                 f"shape {attn_mask.shape}.") from None
            if attn_mask.dtype == bool:
                allowed = attn_mask
            else:
                scores = scores + attn_mask.astype(q.dtype)
        if is_causal:
            causal = np.tri(L, S, dtype=bool)                      # (L, S): key j <= query i
            allowed = causal if allowed is None else allowed & causal
        weights = masked_softmax(scores, allowed)                 # (..., L, S)
        dropped = self.dropout(weights)
        out = dropped @ v                                          # (..., L, Dv)
        self._save((q, k, v, weights, dropped, scale))
        return out, weights

    def backward(self, dout, dweights=None):
        q, k, v, weights, dropped, scale = self._restore()
        dout = np.asarray(dout)
        check_shape(dout, q.shape[:-1] + v.shape[-1:], "dout")
        if dweights is not None:                                   # checked before dropout takes its cache
            dweights = np.asarray(dweights)
            check_shape(dweights, weights.shape, "dweights")
        dvalue = np.swapaxes(dropped, -1, -2) @ dout               # (..., S, Dv)
        dw = self.dropout.backward(dout @ np.swapaxes(v, -1, -2))  # (..., L, S)
        if dweights is not None:
            dw = dw + dweights
        dscores = softmax_backward(dw, weights) * scale            # 0 wherever a weight is 0
        dquery = dscores @ k                                       # (..., L, D)
        dkey = np.swapaxes(dscores, -1, -2) @ q                    # (..., S, D)
        return dquery, dkey, dvalue

    def extra_repr(self) -> str:
        return f"dropout={self.dropout.p}, scale={self.scale}"


class _KeyAttention(Module):
    """Shared part of Bahdanau and Luong attention: checks, the masked softmax and the context.

    Subclasses compute scores (B, N, S) from the query (N, B, Hq) and keys (S, B, Hk) in
    `_scores`, returning (scores, their cache), and back-propagate them in `_scores_backward`,
    returning (dquery, dkeys or None, dprojected_keys or None).
    """

    def __init__(self, query_size: int, key_size: int, dtype=np.float32):
        super().__init__()
        check_sizes(query_size=query_size, key_size=key_size)
        self.query_size, self.key_size = int(query_size), int(key_size)
        self.dtype = check_float_dtype(dtype)

    def forward(self, query, keys, mask=None, projected_keys=None):
        """query (B, Hq) or (T, B, Hq), keys (S, B, Hk), mask (S, B) bool (True at real tokens) or None.

        Returns (context (B, Hk) or (T, B, Hk), weights (B, S) or (T, B, S)). `projected_keys`
        is BahdanauAttention's (see there).
        """
        query = as_array(query, "query", (2, 3), self.dtype)
        keys = as_array(keys, "keys", 3, self.dtype)
        S, B = keys.shape[:2]
        check_shape(keys, (S, B, self.key_size), "keys")
        check_shape(query, query.shape[:-2] + (B, self.query_size), "query")
        single = query.ndim == 2
        q = query[None] if single else query                        # (N, B, Hq)
        allowed = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != bool or mask.shape != (S, B):
                raise ValueError(f"mask must be a bool array of shape ({S}, {B}) (the keys' time and batch), "
                                 f"but was given {mask.dtype} of shape {mask.shape}.")
            allowed = mask.T[:, None, :]                             # (B, 1, S)
        scores, score_cache = self._scores(q, keys, projected_keys)  # (B, N, S)
        w = masked_softmax(scores, allowed)                          # (B, N, S)
        kb = keys.transpose(1, 0, 2)                                 # (B, S, Hk)
        context = (w @ kb).transpose(1, 0, 2)                        # (N, B, Hk)
        weights = w.transpose(1, 0, 2)                               # (N, B, S)
        self._save((w, kb, score_cache, single))
        return (context[0], weights[0]) if single else (context, weights)

    def backward(self, dcontext, dweights=None):
        """dcontext like the context, dweights like the weights (or None) -> (dquery, dkeys), and
        dprojected_keys third when projected_keys were given."""
        w, kb, score_cache, single = self._restore()
        N, B, S = w.shape[1], w.shape[0], w.shape[2]
        dcontext = np.asarray(dcontext)
        check_shape(dcontext, ((B,) if single else (N, B)) + (self.key_size,), "dcontext")
        dc = (dcontext[None] if single else dcontext).transpose(1, 0, 2)       # (B, N, Hk)
        dw = dc @ kb.transpose(0, 2, 1)                                         # (B, N, S)
        if dweights is not None:
            dweights = np.asarray(dweights)
            check_shape(dweights, ((B,) if single else (N, B)) + (S,), "dweights")
            dw += (dweights[None] if single else dweights).transpose(1, 0, 2)
        dkeys = w.transpose(0, 2, 1) @ dc                                      # (B, S, Hk)
        dscores = softmax_backward(dw, w)                                      # (B, N, S), 0 where masked
        dq, dk, dprojected = self._scores_backward(dscores, score_cache)       # (N, B, Hq), (S, B, Hk)
        dkeys = dkeys.transpose(1, 0, 2) if dk is None else dk + dkeys.transpose(1, 0, 2)
        dq = dq[0] if single else dq
        return (dq, dkeys) if dprojected is None else (dq, dkeys, dprojected)

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}"


class BahdanauAttention(_KeyAttention):
    """Additive attention (Bahdanau et al., 2015): score(q, k) = v . tanh(W q + U k + b).

    `query_proj` (W, no bias) and `key_proj` (U, b) are Linear layers into `attention_size`
    (default: key_size); `v` is (attention_size,). Call and backward as in the module docstring.

    A decoder attends over the same keys at every step: project them once instead,

        projected = attn.project_keys(keys)                                  # (S, B, A)
        context, weights = attn(query, keys, mask, projected_keys=projected)  # at each step
        dquery, dkeys, dprojected = attn.backward(dcontext)                  # at each step
        dkeys_total += attn.project_keys_backward(dprojected_total)          # once, after every step

    The per-step dkeys then hold only the context's part of the keys' gradient.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int | None = None,
                 dtype=np.float32, seed=None):
        super().__init__(query_size, key_size, dtype)
        A = key_size if attention_size is None else attention_size
        if not isinstance(A, (int, np.integer)) or A < 1:
            raise ValueError(f"attention_size must be a positive integer, but was given {attention_size!r}.")
        rng = init.as_generator(seed)
        self.attention_size = int(A)
        self.query_proj = Linear(query_size, A, bias=False, dtype=dtype, seed=rng)
        self.key_proj = Linear(key_size, A, dtype=dtype, seed=rng)
        self.v = Parameter(init.uniform((A,), 1.0 / np.sqrt(A), rng, self.dtype))

    def project_keys(self, keys) -> np.ndarray:
        """keys (S, B, Hk) -> U keys + b (S, B, attention_size); pairs with project_keys_backward."""
        keys = as_array(keys, "keys", 3, self.dtype)
        check_shape(keys, (None, None, self.key_size), "keys")
        return self.key_proj(keys)

    def project_keys_backward(self, dprojected) -> np.ndarray:
        """dprojected (S, B, attention_size) -> dkeys (S, B, Hk), accumulating key_proj's gradients."""
        return self.key_proj.backward(dprojected)

    def _scores(self, q, keys, projected_keys):
        qp = self.query_proj(q).transpose(1, 0, 2)                  # (B, N, A)
        if projected_keys is None:
            kp = self.key_proj(keys)                                # (S, B, A)
        else:
            kp = as_array(projected_keys, "projected_keys", 3, self.dtype)
            check_shape(kp, keys.shape[:2] + (self.attention_size,), "projected_keys")
        kp = kp.transpose(1, 0, 2)                                  # (B, S, A)
        e = np.tanh(qp[:, :, None, :] + kp[:, None, :, :])          # (B, N, S, A)
        return e @ self.v.data, (e, projected_keys is not None)     # (B, N, S)

    def _scores_backward(self, dscores, cache):
        e, given = cache
        self.v.grad += np.einsum("bns,bnsa->a", dscores, e)
        dpre = dscores[..., None] * self.v.data * (1 - e * e)       # (B, N, S, A)
        dq = self.query_proj.backward(dpre.sum(axis=2).transpose(1, 0, 2))  # (N, B, Hq)
        dkp = dpre.sum(axis=1).transpose(1, 0, 2)                   # (S, B, A)
        if given:
            return dq, None, dkp
        return dq, self.key_proj.backward(dkp), None                # (S, B, Hk)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, attention_size={self.attention_size}"


LUONG_SCORES = ("dot", "general")


class LuongAttention(_KeyAttention):
    """Multiplicative attention (Luong et al., 2015): score(q, k) = q . k ('dot', needs
    query_size == key_size) or q^T W_a k ('general').

    For 'general', `query_proj` is a Linear(query_size, key_size, bias=False) whose weight is
    W_a^T: the query is projected once instead of every key. Call and backward as in the module
    docstring.
    """

    def __init__(self, query_size: int, key_size: int, score: str = "general", dtype=np.float32, seed=None):
        super().__init__(query_size, key_size, dtype)
        if score not in LUONG_SCORES:
            raise ValueError(f"score must be one of {LUONG_SCORES}, but was given {score!r}.")
        if score == "dot" and query_size != key_size:
            raise ValueError(f"dot attention needs query_size == key_size, but was given {query_size} and {key_size}.")
        self.score = score
        self.query_proj = (Linear(query_size, key_size, bias=False, dtype=dtype, seed=init.as_generator(seed))
                           if score == "general" else None)

    def _scores(self, q, keys, projected_keys):
        if projected_keys is not None:
            raise ValueError("projected_keys is for BahdanauAttention; LuongAttention projects the query, "
                             "not the keys.")
        qk = q if self.query_proj is None else self.query_proj(q)  # (N, B, Hk)
        qb = qk.transpose(1, 0, 2)                                  # (B, N, Hk)
        kb = keys.transpose(1, 2, 0)                                # (B, Hk, S)
        return qb @ kb, (qb, kb)                                    # (B, N, S)

    def _scores_backward(self, dscores, cache):
        qb, kb = cache
        dq = (dscores @ kb.transpose(0, 2, 1)).transpose(1, 0, 2)  # (N, B, Hk)
        dk = (dscores.transpose(0, 2, 1) @ qb).transpose(1, 0, 2)  # (S, B, Hk)
        if self.query_proj is not None:
            dq = self.query_proj.backward(dq)                       # (N, B, Hq)
        return dq, dk, None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, score={self.score!r}"
