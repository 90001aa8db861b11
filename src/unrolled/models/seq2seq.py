"""Sequence to sequence with attention: a (bi)GRU/LSTM encoder and a step-by-step attention decoder.

    model = Seq2Seq(src_vocab_size, tgt_vocab_size, embed=256, hidden=256, cell="gru",
                    bidirectional=True, attention="bahdanau")
    logits = model(src, tgt_in, src_lengths)        # src (S, B), tgt_in (T, B) ids -> (T, B, V)
    model.backward(dlogits)                         # every weight's gradient, encoder included
    ids = translate_greedy(model, src, src_lengths, 20, bos_id=2, eos_id=3)       # batched, until <eos>
    hyps = translate_beam(model, src_ids, 20, bos_id=2, eos_id=3, beam_width=5)   # [(ids, logprob), ...]

The encoder embeds the source and runs a recurrent layer over it with the sources' lengths; its
outputs are the `memory` the decoder attends over, padding masked. Its final states start the
decoder: as they are when the encoder runs one way, and through a learned bridge,
h0 = tanh(W [h_fwd; h_bwd] + b) (c0 without the tanh), when it runs both ways.

One decoder step reads the previous target token y (its embedding e) and the state:

    bahdanau  c = attend(h_prev_top, memory);  h = cells([e; c], h_prev);  logits = out(h_top)
    luong     h = cells([e; a_prev], h_prev);  c = attend(h_top, memory);  a = tanh(W_c [c; h_top]);
              logits = out(a)       (a_prev is the previous step's a: Luong's input feeding)
    none      h = cells(e, h_prev);  logits = out(h_top)

Training feeds the reference token at each step with probability `teacher_forcing` (per token),
else the model's own previous argmax (no gradient through the choice); when the reference is fed
throughout, the output layer runs once over every step. Dropout acts on the embeddings, between
decoder layers and before the output layer.

For decoding, `start(src, src_lengths)` encodes once and `step(tokens, state)` advances one token,
as Seq2SeqTransformer does, so `translate_greedy` and `translate_beam` serve both. The state is a
`DecoderState` of arrays whose axis 1 is the batch (the encoder memory and mask ride along), so
`unrolled.decoding.beam_search` reorders it as it does a language model's recurrent state.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import decoding
from ..attention.attention import BahdanauAttention, LuongAttention, length_mask
from ..core import init
from ..core.checks import as_array, check_lengths, check_sizes
from ..core.functional import log_softmax, softmax
from ..core.module import Module, no_grad
from ..layers import Dropout, Embedding, Linear
from ..rnn import GRU, LSTM, GRUCell, LSTMCell

CELLS = {"gru": (GRU, GRUCell), "lstm": (LSTM, LSTMCell)}
ATTENTIONS = ("bahdanau", "luong", "none")


class DecoderState(NamedTuple):
    """Everything one decoder step reads; batch on axis 1 of every array."""

    h: np.ndarray                 # (L, B, H)
    c: np.ndarray | None          # (L, B, H) for an LSTM
    feed: np.ndarray | None       # (1, B, H) Luong's attentional vector of the previous step
    memory: np.ndarray            # (S, B, D*H) encoder outputs
    mask: np.ndarray              # (S, B) bool, True at real source tokens
    keys: np.ndarray | None       # (S, B, H) Bahdanau's projected memory, computed once per source


def _split(x: np.ndarray, sizes) -> list[np.ndarray]:
    """Cut the last axis into consecutive pieces of `sizes`."""
    return np.split(x, np.cumsum(sizes)[:-1], axis=-1)


class Seq2Seq(Module):
    """Encoder-decoder translation model (see the module docstring).

    pad_id, bos_id, eos_id: the target specials (<pad> is also the source padding id).
    luong_score: "general" or "dot" (dot needs the memory as wide as the decoder, i.e. one direction).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embed: int = 256, hidden: int = 256,
                 layers: int = 1, cell: str = "gru", bidirectional: bool = True, attention: str = "bahdanau",
                 luong_score: str = "general", dropout: float = 0.1, pad_id: int = 1, bos_id: int = 2,
                 eos_id: int = 3, dtype=np.float32, seed=None):
        super().__init__()
        check_sizes(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, embed=embed, hidden=hidden,
                    layers=layers)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, but was given {cell!r}.")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, but was given {attention!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), but was given {dropout!r}.")
        for name, value in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= value < min(src_vocab_size, tgt_vocab_size):
                raise ValueError(f"{name} must be an id in both vocabularies, but was given {value!r}.")
        rng = init.as_generator(seed)
        self.src_vocab_size, self.tgt_vocab_size = int(src_vocab_size), int(tgt_vocab_size)
        self.embed, self.hidden, self.layers = int(embed), int(hidden), int(layers)
        self.cell, self.bidirectional, self.attention_kind = cell, bool(bidirectional), attention
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        self.dtype = np.dtype(dtype)
        layer_cls, cell_cls = CELLS[cell]
        H, D = self.hidden, 2 if bidirectional else 1
        self.memory_size = D * H
        self.n_states = 2 if cell == "lstm" else 1

        self.src_embed = Embedding(src_vocab_size, embed, padding_idx=pad_id, dtype=dtype, seed=rng)
        self.encoder = layer_cls(embed, H, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                                 bidirectional=bidirectional, dtype=dtype, seed=rng)
        self.bridge = [Linear(2 * H, H, dtype=dtype, seed=rng) for _ in range(self.n_states)] if D == 2 else []
        self.tgt_embed = Embedding(tgt_vocab_size, embed, padding_idx=pad_id, dtype=dtype, seed=rng)
        extra = {"bahdanau": self.memory_size, "luong": H, "none": 0}[attention]   # beside e in the cell input
        self.decoder = [cell_cls(embed + extra if k == 0 else H, H, dtype=dtype, seed=rng) for k in range(layers)]
        if attention == "bahdanau":
            self.attention = BahdanauAttention(H, self.memory_size, attention_size=H, dtype=dtype, seed=rng)
        elif attention == "luong":
            self.attention = LuongAttention(H, self.memory_size, score=luong_score, dtype=dtype, seed=rng)
            self.combine = Linear(self.memory_size + H, H, bias=False, dtype=dtype, seed=rng)
        self.dropout = Dropout(dropout, seed=rng)
        self.out = Linear(H, tgt_vocab_size, dtype=dtype, seed=rng)

    def extra_repr(self) -> str:
        return (f"src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size}, embed={self.embed}, "
                f"hidden={self.hidden}, layers={self.layers}, cell={self.cell!r}, "
                f"bidirectional={self.bidirectional}, attention={self.attention_kind!r}")

    # ----- checks ---------------------------------------------------------------------------

    def _ids(self, ids, name: str, ndim: int, vocab_size: int) -> np.ndarray:
        ids = as_array(ids, name, ndim)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name} must hold integer token ids, but was given dtype {ids.dtype}.")
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"{name} must lie in 0..{vocab_size - 1} (its vocabulary), but range from "
                             f"{ids.min()} to {ids.max()}.")
        return ids.astype(np.int64, copy=False)

    # ----- the encoder ----------------------------------------------------------------------

    def encode(self, src, src_lengths) -> DecoderState:
        """src (S, B) ids, src_lengths (B,) -> the decoder's first state (memory and mask included)."""
        src = self._ids(src, "src", 2, self.src_vocab_size)
        S, B = src.shape
        lengths = check_lengths(src_lengths, B, S)
        x = self.dropout(self.src_embed(src))                       # (S, B, E)
        memory, finals = self.encoder(x, None, lengths)             # (S, B, D*H), (L*D, B, H) each
        finals = finals if isinstance(finals, tuple) else (finals,)
        if self.bidirectional:
            L = self.layers
            joined = [f.reshape(L, 2, B, self.hidden).transpose(0, 2, 1, 3).reshape(L, B, 2 * self.hidden)
                      for f in finals]                                # (L, B, 2H): [fwd; bwd] per layer
            starts = [bridge(j) for bridge, j in zip(self.bridge, joined)]
            starts[0] = np.tanh(starts[0])                           # h0; an LSTM's c0 stays linear
            self._save(starts[0])
        else:
            starts = list(finals)
        h, c = starts[0], (starts[1] if self.n_states == 2 else None)
        feed = np.zeros((1, B, self.hidden), self.dtype) if self.attention_kind == "luong" else None
        keys = self.attention.project_keys(memory) if self.attention_kind == "bahdanau" else None
        return DecoderState(h, c, feed, memory, length_mask(lengths, S), keys)

    def _encode_backward(self, d_memory: np.ndarray, d_starts: list) -> None:
        if self.bidirectional:
            h0 = self._restore()
            d_starts[0] = d_starts[0] * (1 - h0 * h0)               # through the tanh
            B = h0.shape[1]
            d_finals = [bridge.backward(d).reshape(self.layers, B, 2, self.hidden).transpose(0, 2, 1, 3)
                        .reshape(2 * self.layers, B, self.hidden) for bridge, d in zip(self.bridge, d_starts)]
        else:
            d_finals = d_starts
        dx, _ = self.encoder.backward(d_memory, tuple(d_finals) if self.n_states == 2 else d_finals[0])
        self.src_embed.backward(self.dropout.backward(dx))

    # ----- one decoder step -----------------------------------------------------------------

    def _step(self, tokens: np.ndarray, state: DecoderState):
        """tokens (B,) -> (output (B, H), next state, attention weights (B, S) or None).

        The output is what the output layer reads (after dropout): `_logits` turns it into logits.
        """
        h, c, feed, memory, mask, keys = state
        x = self.dropout(self.tgt_embed(tokens))                    # (B, E)
        weights = None
        if self.attention_kind == "bahdanau":
            context, weights = self.attention(h[-1], memory, mask, projected_keys=keys)  # (B, D*H), (B, S)
            x = np.concatenate([x, context], axis=1)
        elif self.attention_kind == "luong":
            x = np.concatenate([x, feed[0]], axis=1)                # (B, E + H)
        new_h, new_c = np.empty_like(h), (None if c is None else np.empty_like(c))
        for k, cell in enumerate(self.decoder):
            if c is None:
                new_h[k] = cell(x, h[k])
            else:
                new_h[k], new_c[k] = cell(x, (h[k], c[k]))
            x = self.dropout(new_h[k]) if k < self.layers - 1 else new_h[k]
        top = x                                                      # (B, H)
        new_feed = None
        if self.attention_kind == "luong":
            context, weights = self.attention(top, memory, mask)
            x = np.tanh(self.combine(np.concatenate([context, top], axis=1)))  # (B, H)
            new_feed = x[None]
            self._save(x)
        return x, DecoderState(new_h, new_c, new_feed, memory, mask, keys), weights

    def _logits(self, outputs: np.ndarray) -> np.ndarray:
        """(..., H) decoder outputs -> (..., V) logits, through dropout and the output layer."""
        return self.out(self.dropout(outputs))

    def _step_backward(self, dx, d_h, d_c, d_feed, d_memory, d_keys):
        """Back through one step from its output's gradient dx (B, H): returns the gradients of its
        input state (h, c, feed); adds into d_memory and d_keys."""
        H = self.hidden
        if self.attention_kind == "luong":
            a = self._restore()
            d_pre = (dx + d_feed[0]) * (1 - a * a)                   # a feeds the output and the next step
            d_context, d_top = _split(self.combine.backward(d_pre), [self.memory_size, H])
            d_query, dm = self.attention.backward(d_context)
            d_top = d_top + d_query
            d_memory += dm
        else:
            d_top = dx
        d_h_prev, d_c_prev = np.empty_like(d_h), (None if d_c is None else np.empty_like(d_c))
        dx = d_top
        for k in reversed(range(self.layers)):
            cell = self.decoder[k]
            if k < self.layers - 1:
                dx = self.dropout.backward(dx)
            if d_c is None:
                dx, d_h_prev[k] = cell.backward(dx + d_h[k])
            else:
                dx, (d_h_prev[k], d_c_prev[k]) = cell.backward(dx + d_h[k], d_c[k])
        d_feed_prev = None
        if self.attention_kind == "bahdanau":
            de, d_context = _split(dx, [self.embed, self.memory_size])
            d_query, dm, dk = self.attention.backward(d_context)
            d_h_prev[-1] += d_query
            d_memory += dm
            d_keys += dk
        elif self.attention_kind == "luong":
            de, d_feed_prev = _split(dx, [self.embed, H])
            d_feed_prev = d_feed_prev[None]
        else:
            de = dx
        self.tgt_embed.backward(self.dropout.backward(de))
        return d_h_prev, d_c_prev, d_feed_prev

    # ----- training -------------------------------------------------------------------------

    def forward(self, src, tgt, src_lengths, teacher_forcing: float = 1.0, rng=None,
                return_attention: bool = False):
        """src (S, B), tgt (T, B) ids starting with <bos>, src_lengths (B,) -> logits (T, B, V).

        teacher_forcing: the probability of feeding each reference token (1: always); the draws
        come from `rng` (an int seed or Generator). With `return_attention`, also the weights
        (T, B, S) (zeros without attention).
        """
        tgt = self._ids(tgt, "tgt", 2, self.tgt_vocab_size)
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], but was given {teacher_forcing!r}.")
        state = self.encode(src, src_lengths)
        T, B = tgt.shape
        if state.h.shape[1] != B:
            raise ValueError(f"tgt must hold the source's {state.h.shape[1]} sequences, but was given shape {tgt.shape}.")
        forced = teacher_forcing == 1.0 or T < 2
        if not forced and teacher_forcing > 0:
            coins = init.as_generator(rng).random((T, B)) < teacher_forcing   # (T, B): True feeds the reference
        outputs = np.empty((T, B, self.hidden), self.dtype)
        logits = None if forced else np.empty((T, B, self.tgt_vocab_size), self.dtype)
        weights = np.zeros((T, B, state.memory.shape[0]), self.dtype)
        tokens = tgt[0]
        for t in range(T):
            if t > 0 and not forced:
                guess = logits[t - 1].argmax(axis=1)
                tokens = guess if teacher_forcing == 0 else np.where(coins[t], tgt[t], guess)
            elif t > 0:
                tokens = tgt[t]
            outputs[t], state, w = self._step(tokens, state)
            if not forced:
                logits[t] = self._logits(outputs[t])                 # the next step reads its argmax
            if w is not None:
                weights[t] = w
        if forced:
            logits = self._logits(outputs)                           # (T, B, V): one GEMM for every step
        self._save((T, B, state, forced))
        return (logits, weights) if return_attention else logits

    def backward(self, d_logits):
        """d_logits (T, B, V) -> (None, None, None): token ids and lengths have no gradient."""
        T, B, last, forced = self._restore()
        d_logits = as_array(d_logits, "d_logits", 3, self.dtype)
        if d_logits.shape != (T, B, self.tgt_vocab_size):
            raise ValueError(f"d_logits must have shape {(T, B, self.tgt_vocab_size)}, "
                             f"but was given shape {d_logits.shape}.")
        d_h = np.zeros_like(last.h)
        d_c = None if last.c is None else np.zeros_like(last.c)
        d_feed = None if last.feed is None else np.zeros_like(last.feed)
        d_memory = np.zeros_like(last.memory)
        d_keys = None if last.keys is None else np.zeros_like(last.keys)
        if forced:
            d_outputs = self.dropout.backward(self.out.backward(d_logits))     # (T, B, H)
        for t in reversed(range(T)):
            dx = d_outputs[t] if forced else self.dropout.backward(self.out.backward(d_logits[t]))
            d_h, d_c, d_feed = self._step_backward(dx, d_h, d_c, d_feed, d_memory, d_keys)
        if d_keys is not None:
            d_memory += self.attention.project_keys_backward(d_keys)
        self._encode_backward(d_memory, [d_h] if d_c is None else [d_h, d_c])
        return None, None, None

    # ----- decoding -------------------------------------------------------------------------

    def start(self, src, src_lengths) -> DecoderState:
        """Encode src (S, B) once: the decoding state before the first target token; keeps no cache."""
        with no_grad():
            return self.encode(src, src_lengths)

    def step(self, tokens, state: DecoderState):
        """tokens (B,) -> (logits (B, V), next state): one target token; keeps no cache."""
        tokens = self._ids(tokens, "tokens", 1, self.tgt_vocab_size)
        with no_grad():
            outputs, state, _ = self._step(tokens, state)
            logits = self._logits(outputs)
        return logits, state

    def attention_maps(self, src, tgt, src_lengths) -> list[np.ndarray]:
        """The decoder's attention over the source for a whole target: [(B, T, S)] (zeros without attention)."""
        with no_grad():
            _, weights = self.forward(src, tgt, src_lengths, return_attention=True)
        return [weights.transpose(1, 0, 2)]


# ----- decoding any encoder-decoder with start(src, src_lengths) and step(tokens, state) -----------

def translate_greedy(model, src, src_lengths, max_len: int, *, bos_id: int, eos_id: int,
                     temperature: float = 0.0, rng=None) -> list[np.ndarray]:
    """Decode a batch at once: the argmax at each step (temperature 0) or a draw at `temperature`.

    Works for any model with `start(src, src_lengths)` and `step(tokens, state)` (Seq2Seq,
    Seq2SeqTransformer). Returns each sentence's ids, without <eos>, at most `max_len` of them;
    decoding stops once every sentence has made its <eos>.
    """
    if isinstance(temperature, bool) or not 0 <= temperature < np.inf:
        raise ValueError(f"temperature must be a finite number >= 0, but was given {temperature!r}.")
    max_len = decoding._check_int(max_len, "max_len", 1)
    rng = init.as_generator(rng)
    state = model.start(src, src_lengths)
    B = len(src_lengths)
    tokens = np.full(B, bos_id, dtype=np.int64)
    out = np.full((max_len, B), eos_id, dtype=np.int64)                 # (T, B)
    done = np.zeros(B, dtype=bool)
    for t in range(max_len):
        logits, state = model.step(tokens, state)                        # (B, V)
        if temperature == 0:
            tokens = logits.argmax(axis=1)
        else:
            cdf = np.cumsum(softmax(logits.astype(np.float64) / temperature), axis=1)   # (B, V)
            tokens = np.minimum((cdf < rng.random((B, 1)) * cdf[:, -1:]).sum(axis=1), cdf.shape[1] - 1)
        out[t] = np.where(done, eos_id, tokens)
        done |= tokens == eos_id
        if done.all():
            break
    ids = []
    for b in range(B):
        ends = np.flatnonzero(out[:, b] == eos_id)
        ids.append(out[:int(ends[0]) if ends.size else max_len, b].copy())
    return ids


def translate_beam(model, src_ids, max_len: int, *, bos_id: int, eos_id: int, beam_width: int = 5,
                   length_penalty: float = 0.0) -> list[tuple[np.ndarray, float]]:
    """The `beam_width` best translations of one source sentence (ids (S,)), best first.

    Returns [(ids without <eos>, total log-probability), ...] from `unrolled.decoding.beam_search`
    (all hypotheses advance in one batched step; GNMT length normalisation `length_penalty`, 0
    ranks by plain totals). The encoder runs once; its memory rides in the state and is reordered
    with the hypotheses.
    """
    src_ids = np.asarray(src_ids)
    if src_ids.ndim != 1 or src_ids.size == 0:
        raise ValueError(f"src_ids must be one non-empty sentence of ids, but was given shape {src_ids.shape}.")
    initial = model.start(src_ids[:, None], np.array([src_ids.size]))

    def step(tokens, state):
        return model.step(tokens, initial if state is None else state)

    hyps = decoding.beam_search(step, np.array([bos_id]), max_len, beam_width=beam_width,
                                length_penalty=length_penalty, eos_id=eos_id)
    return [(ids[:-1] if ids.size and ids[-1] == eos_id else ids, logprob) for ids, logprob in hyps]


def sequence_logprob(model, src_ids, tgt_ids, *, bos_id: int, eos_id: int) -> float:
    """log p(tgt_ids, then <eos> | src_ids) under the model, one step at a time."""
    state = model.start(np.asarray(src_ids)[:, None], np.array([len(src_ids)]))
    total = 0.0
    for prev, token in zip([bos_id, *tgt_ids], [*tgt_ids, eos_id]):
        logits, state = model.step(np.array([prev]), state)
        total += float(log_softmax(logits[0].astype(np.float64))[token])
    return total
