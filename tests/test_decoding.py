import itertools
from collections import namedtuple

import numpy as np
import pytest

from unrolled.decoding import beam_search, greedy, prime, sample


def _log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class CountingBigram:
    """A tiny language model: logits = A[token] + counts @ C.

    The next-token distribution depends on the last token (a bigram table A) and on how often each
    token has been read so far (the state, a running count), so a beam search that mixed up the
    states of its hypotheses would score them wrongly. The state is nested, (counts (1, B, V),
    [steps (1, B, 1)]), with the batch on axis 1 as recurrent states have it. `calls` records the
    batch size of every call.
    """

    def __init__(self, V, seed=0, scale=2.0):
        rng = np.random.default_rng(seed)
        self.V = V
        self.A = scale * rng.standard_normal((V, V))
        self.C = rng.standard_normal((V, V))
        self.calls = []

    def __call__(self, tokens, state):
        assert tokens.dtype == np.int64 and tokens.ndim == 1
        B = len(tokens)
        self.calls.append(B)
        if state is None:
            state = (np.zeros((1, B, self.V)), [np.zeros((1, B, 1))])
        counts, (steps,) = state
        counts = counts.copy()
        counts[0, np.arange(B), tokens] += 1
        logits = self.A[tokens] + counts[0] @ self.C  # (B, V)
        return logits, (counts, [steps + 1])

    def logprob(self, prompt, ids):
        """log p(ids | prompt), by running the model on one sequence: the brute-force reference."""
        state, total = None, 0.0
        logits = None
        for token in prompt:
            logits, state = self(np.array([token]), state)
        for token in ids:
            total += _log_softmax(logits[0])[token]
            logits, state = self(np.array([token]), state)
        return total

    def path_logits(self, prompt, ids):
        """(len(ids), V) logits the model gives before each of `ids`, continuing `prompt`."""
        out, state = [], None
        for token in list(prompt) + list(ids):
            logits, state = self(np.array([token]), state)
            out.append(logits[0])
        return np.array(out[len(prompt) - 1 : len(prompt) - 1 + len(ids)])


class Unigram:
    """A model whose next-token distribution is always softmax(logits), whatever it has read."""

    def __init__(self, probs):
        self.logits = np.log(np.asarray(probs, dtype=np.float64))

    def __call__(self, tokens, state):
        return np.tile(self.logits, (len(tokens), 1)), None


PROMPT = np.array([1, 0, 2])


# ----- prime, greedy, temperature -----------------------------------------------------------


def test_prime_feeds_the_prompt_one_token_at_a_time():
    model = CountingBigram(5)
    logits, (counts, (steps,)) = prime(model, PROMPT)
    assert logits.shape == (5,) and model.calls == [1, 1, 1]
    np.testing.assert_array_equal(counts[0, 0], [1, 1, 1, 0, 0])
    assert steps[0, 0, 0] == 3
    np.testing.assert_allclose(logits, model.A[2] + counts[0, 0] @ model.C, rtol=1e-14)
    more, _ = prime(model, [3], state=(counts, [steps]))  # priming continues from a given state
    np.testing.assert_allclose(more, model.A[3] + (counts[0, 0] + np.eye(5)[3]) @ model.C, rtol=1e-14)


def test_greedy_is_the_argmax_at_every_step():
    model = CountingBigram(6, seed=1)
    ids = greedy(model, PROMPT, 12)
    assert ids.dtype == np.int64 and ids.shape == (12,)
    np.testing.assert_array_equal(ids, model.path_logits(PROMPT, ids).argmax(axis=1))
    assert len(set(ids.tolist())) > 1  # a path, not one repeated token


@pytest.mark.parametrize("temperature", [1e-3, 1e-6, 1e-300])
def test_temperature_towards_zero_gives_the_argmax(temperature):
    model = CountingBigram(6, seed=1)
    expected = greedy(model, PROMPT, 12)
    for seed in range(5):
        ids = sample(model, PROMPT, 12, temperature=temperature, rng=seed)
        np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(sample(model, PROMPT, 12, temperature=0, rng=3), expected)


def test_temperature_one_samples_with_the_model_probabilities():
    probs = np.array([0.5, 0.3, 0.2])
    ids = sample(Unigram(probs), [0], 20_000, rng=0)
    np.testing.assert_allclose(np.bincount(ids, minlength=3) / len(ids), probs, atol=0.015)


def test_temperature_flattens_or_sharpens_the_distribution():
    probs = np.array([0.6, 0.3, 0.1])
    for temperature in (0.5, 2.0):
        expected = probs ** (1 / temperature) / (probs ** (1 / temperature)).sum()
        ids = sample(Unigram(probs), [0], 20_000, temperature=temperature, rng=1)
        np.testing.assert_allclose(np.bincount(ids, minlength=3) / len(ids), expected, atol=0.015)


# ----- top-k and top-p ----------------------------------------------------------------------


def test_top_k_never_emits_outside_the_k_most_likely():
    model = CountingBigram(10, seed=2, scale=0.5)  # flat enough that the k tokens all get drawn
    ids = sample(model, PROMPT, 3000, temperature=1.5, top_k=3, rng=0)
    logits = model.path_logits(PROMPT, ids)
    ranks = (logits > logits[np.arange(len(ids)), ids][:, None]).sum(axis=1)  # 0 = the most likely
    assert ranks.max() <= 2
    assert set(ranks.tolist()) == {0, 1, 2}  # and every one of the k is drawn


def test_top_k_keeps_the_relative_frequencies_of_the_kept_tokens():
    probs = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    ids = sample(Unigram(probs), [0], 20_000, top_k=2, rng=2)
    np.testing.assert_allclose(np.bincount(ids, minlength=5) / len(ids), [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0], atol=0.015)


def test_top_p_only_emits_the_nucleus_with_renormalised_frequencies():
    probs = np.array([0.1, 0.04, 0.4, 0.15, 0.25, 0.06])  # sorted: 0.4, 0.25, 0.15 reach 0.8 >= 0.7
    ids = sample(Unigram(probs), [0], 20_000, top_p=0.7, rng=3)
    freq = np.bincount(ids, minlength=6) / len(ids)
    assert set(ids.tolist()) == {2, 4, 3}
    np.testing.assert_allclose(freq, [0, 0, 0.4 / 0.8, 0.15 / 0.8, 0.25 / 0.8, 0], atol=0.015)


def test_top_p_keeps_at_least_one_token_and_all_at_one():
    probs = np.array([0.2, 0.5, 0.3])
    np.testing.assert_array_equal(sample(Unigram(probs), [0], 50, top_p=1e-9, rng=0), np.ones(50))
    ids = sample(Unigram(probs), [0], 20_000, top_p=1.0, rng=4)
    np.testing.assert_allclose(np.bincount(ids, minlength=3) / len(ids), probs, atol=0.015)


def test_temperature_then_top_k_then_top_p():
    probs = np.array([0.45, 0.3, 0.15, 0.1])
    # temperature 2: p ~ sqrt(probs) = .671 .548 .387 .316; top_k=3 drops the last; renormalised
    # .419 .342 .242; top_p=0.7 keeps the first two (.419 < .7 <= .761), renormalised .551 .449.
    soft = np.sqrt(probs[:3]) / np.sqrt(probs[:3]).sum()
    expected = np.array([soft[0], soft[1], 0, 0]) / (soft[0] + soft[1])
    ids = sample(Unigram(probs), [0], 20_000, temperature=2.0, top_k=3, top_p=0.7, rng=5)
    np.testing.assert_allclose(np.bincount(ids, minlength=4) / len(ids), expected, atol=0.015)


# ----- reproducibility and streaming --------------------------------------------------------


def test_same_seed_same_sample_and_other_seeds_differ():
    model = CountingBigram(8, seed=3, scale=0.5)
    a = sample(model, PROMPT, 200, temperature=1.0, top_p=0.9, rng=np.random.default_rng(11))
    b = sample(model, PROMPT, 200, temperature=1.0, top_p=0.9, rng=np.random.default_rng(11))
    c = sample(model, PROMPT, 200, temperature=1.0, top_p=0.9, rng=11)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, sample(model, PROMPT, 200, top_p=0.9, rng=12))


def test_on_token_streams_each_token_before_the_model_reads_it():
    model = CountingBigram(5)
    seen = []
    ids = sample(model, PROMPT, 6, rng=0, on_token=lambda i: seen.append((i, len(model.calls))))
    assert [i for i, _ in seen] == ids.tolist()
    assert [n for _, n in seen] == [3, 4, 5, 6, 7, 8]  # token t arrives after the prompt and t steps
    assert len(model.calls) == 3 + 5  # the last token is not fed to the model
    assert sample(model, PROMPT, 0, rng=0).shape == (0,)


# ----- beam search --------------------------------------------------------------------------


def _exhaustive(model, prompt, length, eos_id=None, alpha=0.0):
    """Every complete hypothesis with its logprob, ranked as beam_search ranks them."""
    V = model.V
    hyps = []
    for n in range(1, length + 1):
        for ids in itertools.product(range(V), repeat=n):
            if eos_id is not None and eos_id in ids[:-1]:
                continue  # nothing follows an eos
            ends = eos_id is not None and ids[-1] == eos_id
            if n == length or ends:
                hyps.append((list(ids), model.logprob(prompt, ids)))
    hyps.sort(key=lambda h: -h[1] / ((5 + len(h[0])) / 6) ** alpha)
    return hyps


def test_beam_search_wide_enough_finds_the_exact_ranking():
    model = CountingBigram(3, seed=4, scale=1.0)
    found = beam_search(model, PROMPT, 4, beam_width=3**4)
    expected = _exhaustive(model, PROMPT, 4)
    assert len(found) == len(expected) == 81
    assert [ids.tolist() for ids, _ in found] == [ids for ids, _ in expected]
    np.testing.assert_allclose([lp for _, lp in found], [lp for _, lp in expected], rtol=1e-12)
    assert found[0][0].dtype == np.int64


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_beam_search_with_eos_finds_the_exact_ranking(alpha):
    model = CountingBigram(3, seed=5, scale=1.0)
    found = beam_search(model, PROMPT, 4, beam_width=3**4, length_penalty=alpha, eos_id=2)
    expected = _exhaustive(model, PROMPT, 4, eos_id=2, alpha=alpha)
    assert len(expected) == 1 + 2 + 4 + 8 + 16  # ended at each length, plus the full-length ones
    assert [ids.tolist() for ids, _ in found] == [ids for ids, _ in expected]
    np.testing.assert_allclose([lp for _, lp in found], [lp for _, lp in expected], rtol=1e-12)


def test_beam_search_narrow_beam_returns_the_best_hypothesis_on_this_model():
    model = CountingBigram(3, seed=4, scale=1.0)
    best_ids, best_lp = _exhaustive(model, PROMPT, 4)[0]
    found = beam_search(model, PROMPT, 4, beam_width=4)
    assert len(found) == 4 and found[0][0].tolist() == best_ids
    assert found[0][1] == pytest.approx(best_lp, rel=1e-12)
    lps = [lp for _, lp in found]
    assert lps == sorted(lps, reverse=True)


def test_beam_width_one_equals_greedy():
    model = CountingBigram(7, seed=6)
    [(ids, logprob)] = beam_search(model, PROMPT, 15, beam_width=1)
    np.testing.assert_array_equal(ids, greedy(model, PROMPT, 15))
    assert logprob == pytest.approx(model.logprob(PROMPT, ids), rel=1e-12)


def test_beam_search_steps_all_beams_in_one_call_per_time_step():
    model = CountingBigram(5, seed=7)
    beam_search(model, PROMPT, 6, beam_width=3)
    assert model.calls == [1, 1, 1] + [3] * 5  # the prompt, then one batched call per further step


def test_beam_search_reorders_namedtuple_and_list_states():
    State = namedtuple("State", "h c")
    inner = CountingBigram(4, seed=8)

    def step(tokens, state):
        logits, (counts, steps) = inner(tokens, None if state is None else (state.h, state.c))
        assert isinstance(steps, list)
        return logits, State(counts, steps)

    found = beam_search(step, PROMPT, 3, beam_width=4**3)
    expected = CountingBigram(4, seed=8)
    assert found[0][1] == pytest.approx(_exhaustive(expected, PROMPT, 3)[0][1], rel=1e-12)


def test_beam_search_stops_when_every_hypothesis_has_ended():
    model = Unigram([0.1, 0.9])  # eos (1) is the most likely token everywhere
    found = beam_search(model, [0], 10, beam_width=1, eos_id=1)
    assert found[0][0].tolist() == [1]
    assert found[0][1] == pytest.approx(np.log(0.9))
    only_eos = Unigram([1.0])
    assert [ids.tolist() for ids, _ in beam_search(only_eos, [0], 5, beam_width=2, eos_id=0)] == [[0]]
    assert [ids.tolist() for ids, _ in beam_search(model, [0], 0)] == [[]]


# ----- bad arguments and bad models ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-0.1), r"temperature must be a finite number >= 0 \(0 picks the most likely token\), but was given -0.1"),
        (dict(temperature=float("nan")), "temperature must be a finite number >= 0"),
        (dict(top_k=0), "top_k must be an integer >= 1, but was given 0"),
        (dict(top_k=2.5), "top_k must be an integer >= 1, but was given 2.5"),
        (dict(top_p=0.0), r"top_p must be a number in \(0, 1\], but was given 0.0"),
        (dict(top_p=1.5), r"top_p must be a number in \(0, 1\], but was given 1.5"),
        (dict(length=-1), "length must be an integer >= 0, but was given -1"),
        (dict(rng="seed"), "seed must be an int, a numpy Generator or None"),
    ],
)
def test_sample_rejects_bad_arguments(kwargs, message):
    args = dict(length=5) | kwargs
    with pytest.raises(ValueError, match=message):
        sample(CountingBigram(3), PROMPT, **args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(beam_width=0), "beam_width must be an integer >= 1, but was given 0"),
        (dict(length=-2), "length must be an integer >= 0, but was given -2"),
        (dict(length_penalty=float("inf")), "length_penalty must be a finite number"),
        (dict(eos_id=-1), "eos_id must be an integer >= 0, but was given -1"),
        (dict(eos_id=3), "eos_id must be a token id below the model's 3 tokens, but was given 3"),
    ],
)
def test_beam_search_rejects_bad_arguments(kwargs, message):
    args = dict(length=4) | kwargs
    with pytest.raises(ValueError, match=message):
        beam_search(CountingBigram(3), PROMPT, **args)


def test_bad_prompts_and_bad_models_get_one_sentence():
    with pytest.raises(ValueError, match="prompt_ids must hold at least one token id to prime the model, but was given none"):
        sample(CountingBigram(3), [], 5)
    with pytest.raises(ValueError, match="prompt_ids must be a 1-D sequence of integer token ids, but was given float64"):
        greedy(CountingBigram(3), [0.5, 1.0], 5)
    with pytest.raises(ValueError, match=r"step must return logits of shape \(1, V\) for 1 tokens, but returned shape \(3,\)"):
        prime(lambda tokens, state: (np.zeros(3), state), [0])
    with pytest.raises(ValueError, match="step returned logits that are NaN"):
        greedy(lambda tokens, state: (np.full((len(tokens), 3), np.nan), state), [0], 3)
