"""Decoding: text from a language model's next-token distribution.

The model side is a step function that reads one token per sequence and returns the logits of the
next one:

    step(tokens: int64 (B,), state) -> (logits float (B, V), new_state)

`state` is None at the start, then whatever the model returns: any nested tuple/list of arrays
whose axis 1 is the batch, as recurrent states `(num_layers * num_directions, B, H)` are.

    logits, state = prime(step, prompt_ids)                      # feed a prompt, batch 1
    ids = sample(step, prompt_ids, 400, temperature=0.8, top_k=40, rng=0, on_token=print_token)
    ids = greedy(step, prompt_ids, 400)                          # argmax at every step
    hyps = beam_search(step, prompt_ids, 50, beam_width=5, eos_id=eos)  # [(ids, logprob), ...] best first

Sampling filters the distribution in this order: temperature, then top-k, then top-p, then draws
from what is left, renormalised. Every function returns only the new tokens, not the prompt.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from .core.functional import log_softmax, softmax
from .core.init import as_generator


# ----- argument checks ----------------------------------------------------------------------


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, but was given {value!r}.")
    return int(value)


def _check_sampling(temperature, top_k, top_p) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not 0 <= temperature < math.inf:
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 picks the most likely token), but was given {temperature!r}."
        )
    if top_k is not None:
        _check_int(top_k, "top_k", 1)
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, Real) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], but was given {top_p!r}.")


def _as_prompt(prompt_ids) -> np.ndarray:
    ids = np.asarray(prompt_ids)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ValueError(
            f"prompt_ids must be a 1-D sequence of integer token ids, but was given {ids.dtype} of shape {ids.shape}."
        )
    if ids.size == 0:
        raise ValueError("prompt_ids must hold at least one token id to prime the model, but was given none.")
    return ids.astype(np.int64)


# ----- calling the model --------------------------------------------------------------------


class NonFiniteLogits(ValueError):
    """The model gave no usable next-token distribution (in training: its weights have diverged)."""


def _step(step, tokens: np.ndarray, state):
    """One model step, with its logits checked: (B, V) and a finite maximum in every row."""
    logits, state = step(tokens, state)
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[0] != len(tokens):
        raise ValueError(
            f"step must return logits of shape ({len(tokens)}, V) for {len(tokens)} tokens, "
            f"but returned shape {logits.shape}."
        )
    if not np.isfinite(logits.max(axis=1)).all():
        raise NonFiniteLogits(
            "step returned logits that are NaN, +inf or all -inf; the model has no usable next-token distribution."
        )
    return logits, state


def _take(state, index: np.ndarray):
    """The state of the hypotheses `index`: every leaf reordered along its batch axis 1."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        parts = [_take(s, index) for s in state]
        return type(state)(*parts) if hasattr(state, "_fields") else type(state)(parts)  # namedtuples too
    return np.take(state, index, axis=1)


def prime(step, prompt_ids, state=None):
    """Feed `prompt_ids` one token at a time (batch 1); returns (logits of the next token (V,), state)."""
    for token in _as_prompt(prompt_ids):
        logits, state = _step(step, np.array([token]), state)
    return logits[0], state


# ----- sampling -----------------------------------------------------------------------------


def _choose(logits: np.ndarray, temperature: float, top_k, top_p, rng: np.random.Generator) -> int:
    """One token id drawn from (V,) logits after temperature, top-k and top-p filtering."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = (logits.astype(np.float64) - logits.max()) / temperature  # (V,), max 0: no overflow at any temperature
    order = np.argsort(-z, kind="stable")[:top_k]  # most likely first; top_k=None keeps all
    p = softmax(z[order])  # renormalised over what top-k kept
    if top_p is not None:
        keep = int(np.searchsorted(np.cumsum(p), top_p)) + 1  # the smallest prefix with mass >= top_p
        order, p = order[:keep], p[:keep]
    cdf = np.cumsum(p)
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))  # inverse CDF: one uniform per token
    return int(order[min(i, len(order) - 1)])


def sample(step, prompt_ids, length: int, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, rng=None, on_token=None) -> np.ndarray:
    """`length` new token ids (int64), each drawn from the model's distribution given all before it.

    temperature: divides the logits; below 1 sharper, above 1 flatter, 0 the argmax (as `greedy`).
    top_k: keep only the k most likely tokens. top_p: keep the smallest set of most likely tokens
    whose probability reaches p (nucleus sampling; always at least one token).
    rng: an int seed, a `np.random.Generator` or None; the same seed gives the same tokens.
    on_token: called with each id as soon as it is chosen, before the model reads it, so a caller
    can stream text as it is made.
    """
    _check_sampling(temperature, top_k, top_p)
    length = _check_int(length, "length", 0)
    rng = as_generator(rng)
    logits, state = prime(step, prompt_ids)
    out = []                                # grows as tokens come: a huge length costs nothing up front
    for t in range(length):
        token = _choose(logits, temperature, top_k, top_p, rng)
        out.append(token)
        if on_token is not None:
            on_token(token)
        if t + 1 < length:
            logits, state = _step(step, np.array([token], dtype=np.int64), state)
            logits = logits[0]
    return np.array(out, dtype=np.int64)


def greedy(step, prompt_ids, length: int, on_token=None) -> np.ndarray:
    """`length` new token ids, each the most likely one: `sample` at temperature 0."""
    return sample(step, prompt_ids, length, temperature=0.0, on_token=on_token)


# ----- beam search --------------------------------------------------------------------------


def _normalised(logprob: float, n_tokens: int, alpha: float) -> float:
    """GNMT's length normalisation (Wu et al. 2016): logprob / ((5 + n) / 6) ** alpha."""
    return logprob / ((5 + n_tokens) / 6) ** alpha


def beam_search(step, prompt_ids, length: int, beam_width: int = 5, length_penalty: float = 0.0,
                eos_id: int | None = None) -> list[tuple[np.ndarray, float]]:
    """The `beam_width` most likely continuations of at most `length` tokens, best first.

    Returns [(ids int64 (n,), logprob), ...] with `logprob` the total log-probability of the ids.
    All live hypotheses advance together: one `step` call per time step with batch = the number
    of live beams, the state reordered to follow the surviving hypotheses. A hypothesis that
    emits `eos_id` among the step's `beam_width` best candidates ends there (its ids include the
    eos) and gives its place to the next best candidate, so the beam stays full; with width 1 this
    is greedy decoding. Ranking uses GNMT's length normalisation
    logprob / ((5 + n) / 6) ** length_penalty, n counting the new tokens; the default 0 ranks by
    the plain total, which favours shorter endings. The search stops early once `beam_width`
    ended hypotheses rank at least as high as any live one possibly could.
    """
    length = _check_int(length, "length", 0)
    beam_width = _check_int(beam_width, "beam_width", 1)
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, Real) or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number, but was given {length_penalty!r}.")
    if eos_id is not None:
        eos_id = _check_int(eos_id, "eos_id", 0)
    logits, state = prime(step, prompt_ids)
    if eos_id is not None and eos_id >= logits.shape[-1]:
        raise ValueError(
            f"eos_id must be a token id below the model's {logits.shape[-1]} tokens, but was given {eos_id}."
        )
    logp = log_softmax(logits[None].astype(np.float64))  # (1, V): one hypothesis, the empty one
    seqs = np.zeros((1, 0), dtype=np.int64)  # (K, t) tokens of the live hypotheses
    scores = np.zeros(1)  # (K,) their total log-probabilities
    finished: list[tuple[np.ndarray, float]] = []
    for t in range(length):
        if t > 0:
            logits, state = _step(step, seqs[:, -1], state)
            logp = log_softmax(logits.astype(np.float64))  # (K, V)
        total = (scores[:, None] + logp).ravel()  # (K*V,) every one-token extension
        n = min(2 * beam_width, total.size)  # enough that beam_width survive even if up to beam_width end
        best = np.argpartition(-total, n - 1)[:n]
        best = best[np.lexsort((best, -total[best]))]  # best first, ties by position: deterministic
        parent, token = np.divmod(best, logp.shape[1])
        live = []
        for rank in range(n):
            if token[rank] == eos_id:
                if rank < beam_width:  # an ending counts only among the beam's best: width 1 is greedy
                    finished.append((np.append(seqs[parent[rank]], eos_id), float(total[best[rank]])))
            elif len(live) < beam_width:
                live.append(rank)
        if not live:  # every hypothesis has ended
            seqs, scores = seqs[:0], scores[:0]
            break
        parent, token = parent[live], token[live]  # (K',)
        seqs = np.concatenate([seqs[parent], token[:, None]], axis=1)  # (K', t + 1)
        scores = total[best[live]]
        state = _take(state, parent)
        if len(finished) >= beam_width:
            # Totals only fall as hypotheses grow, so no live hypothesis will rank above its total
            # normalised at the most favourable length it can still reach: once beam_width ended
            # ones rank at least as high, the result is settled.
            reach = length if length_penalty >= 0 else t + 1
            best_live = _normalised(float(scores.max()), reach, length_penalty)
            if sorted(_normalised(s, len(ids), length_penalty) for ids, s in finished)[-beam_width] >= best_live:
                break
    hyps = finished + [(ids, float(s)) for ids, s in zip(seqs, scores)]
    hyps.sort(key=lambda h: -_normalised(h[1], len(h[0]), length_penalty))  # stable: earlier wins ties
    return hyps[:beam_width]
