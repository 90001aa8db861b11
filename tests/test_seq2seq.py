"""Seq2Seq: gradient checks, padding masks, teacher forcing, and greedy / sampled / beam decoding."""
import itertools

import numpy as np
import pytest

from unrolled.attention import Seq2SeqTransformer
from unrolled.core.functional import log_softmax
from unrolled.models.seq2seq import Seq2Seq, sequence_logprob, translate_beam, translate_greedy
from unrolled.testing import gradcheck

PAD, BOS, EOS = 1, 2, 3


def _batch(rng, S=4, T=3, B=2, src_vocab=9, tgt_vocab=8):
    """Padded time-major ids: source b has lengths[b] tokens, then <pad>."""
    lengths = np.array([S, 2, 3][:B])
    src = rng.integers(4, src_vocab, (S, B))
    src[np.arange(S)[:, None] >= lengths] = PAD
    tgt = np.vstack([np.full((1, B), BOS), rng.integers(3, tgt_vocab, (T - 1, B))])
    return src, tgt, lengths


def _model(attention, cell="gru", bidirectional=True, layers=1, score="general", hidden=4, sharpen=False, seed=3):
    model = Seq2Seq(9, 8, embed=4, hidden=hidden, layers=layers, cell=cell, bidirectional=bidirectional,
                    attention=attention, luong_score=score, dropout=0.0, seed=seed).double()
    if sharpen:  # larger attention weights: the query's gradient rises well above finite-difference noise
        for name, p in model.named_parameters():
            if name.startswith("attention") or name == "decoder.0.weight_ih":
                p.data *= 4
    return model


# ----- gradients ----------------------------------------------------------------------------------

@pytest.mark.parametrize("attention, cell, bidirectional, layers, score, sharpen", [
    ("bahdanau", "gru", True, 1, "general", False),
    ("bahdanau", "lstm", True, 1, "general", True),
    ("bahdanau", "lstm", False, 2, "general", True),
    ("luong", "lstm", True, 1, "general", False),
    ("luong", "gru", False, 2, "dot", False),
    ("none", "lstm", True, 1, "general", False),
    ("none", "gru", False, 2, "general", False),
])
def test_backward_matches_finite_differences(attention, cell, bidirectional, layers, score, sharpen):
    src, tgt, lengths = _batch(np.random.default_rng(0))
    model = _model(attention, cell, bidirectional, layers, score, sharpen=sharpen)
    errors = gradcheck(model, (src, tgt, lengths), eps=1e-5, rtol=1e-6)
    assert len(errors) == len(model.parameters())
    assert all(np.abs(p.grad).max() > 0 for p in model.parameters())  # every weight is on the path


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_backward_without_teacher_forcing_feeds_argmaxes_and_still_checks(attention):
    src, tgt, lengths = _batch(np.random.default_rng(1))
    model = _model(attention, hidden=6)
    gradcheck(model, (src, tgt, lengths), dict(teacher_forcing=0.0), eps=1e-6, rtol=1e-6)


def test_gradients_accumulate_and_backward_needs_a_forward():
    src, tgt, lengths = _batch(np.random.default_rng(2))
    model = _model("bahdanau")
    model.zero_grad()
    dlogits = np.random.default_rng(3).standard_normal((3, 2, 8))
    model(src, tgt, lengths)
    model.backward(dlogits)
    once = {n: p.grad.copy() for n, p in model.named_parameters()}
    model(src, tgt, lengths)
    model.backward(dlogits)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        model.backward(dlogits)


# ----- masks and teacher forcing ------------------------------------------------------------------

@pytest.mark.parametrize("attention", ["bahdanau", "luong", "none"])
def test_padded_source_positions_change_nothing(attention):
    rng = np.random.default_rng(4)
    src, tgt, lengths = _batch(rng, S=5, T=4, B=3)
    other = src.copy()
    padded = np.arange(5)[:, None] >= lengths
    other[padded] = rng.integers(4, 9, padded.sum())          # real words where the padding was
    model = _model(attention, cell="lstm")
    dlogits = rng.standard_normal((4, 3, 8))
    results = []
    for ids in (src, other):
        model.zero_grad()
        logits, weights = model(ids, tgt, lengths, return_attention=True)
        model.backward(dlogits)
        results.append((logits, weights, {n: p.grad.copy() for n, p in model.named_parameters()}))
    (l1, w1, g1), (l2, w2, g2) = results
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(w1, w2)
    for name in g1:
        np.testing.assert_array_equal(g1[name], g2[name], err_msg=name)
    if attention != "none":
        assert (w1[:, padded.T] == 0).all()                     # (T, B, S): no weight on padding
        np.testing.assert_allclose(w1.sum(axis=2), 1.0, rtol=1e-12)


def test_teacher_forcing_zero_feeds_the_models_own_argmax():
    src, tgt, lengths = _batch(np.random.default_rng(5), T=5)
    model = _model("luong").eval()
    free = model(src, tgt, lengths, teacher_forcing=0.0)
    fed = np.vstack([tgt[:1], free.argmax(axis=2)[:-1]])         # <bos>, then each step's argmax
    np.testing.assert_allclose(model(src, fed, lengths), free, rtol=1e-12)
    forced = model(src, tgt, lengths)
    assert not np.allclose(forced[1:], free[1:])
    half = model(src, tgt, lengths, teacher_forcing=0.5, rng=7)
    np.testing.assert_array_equal(half, model(src, tgt, lengths, teacher_forcing=0.5, rng=7))
    np.testing.assert_array_equal(half[0], forced[0])           # the first step always reads <bos>


# ----- decoding -----------------------------------------------------------------------------------

def _trained_looking(attention, seed=0, eos_bias=0.0):
    """A float32 model with distributions sharp enough, and <eos> likely enough, for decoding to be interesting."""
    model = Seq2Seq(12, 10, embed=8, hidden=8, cell="gru", attention=attention, dropout=0.0, seed=seed).eval()
    model.out.weight.data *= 6
    model.out.bias.data[EOS] += eos_bias
    return model


def _sources(rng, B=4, S=5):
    lengths = np.array([5, 3, 4, 1][:B])
    src = rng.integers(4, 12, (S, B))
    src[np.arange(S)[:, None] >= lengths] = PAD
    return src, lengths


@pytest.mark.parametrize("attention, eos_bias", [("bahdanau", 1.0), ("luong", 1.0), ("none", 0.0)])
def test_beam_width_one_equals_greedy(attention, eos_bias):
    model = _trained_looking(attention, seed=2, eos_bias=eos_bias)
    src, lengths = _sources(np.random.default_rng(6))
    greedy = translate_greedy(model, src, lengths, 12, bos_id=BOS, eos_id=EOS)
    assert any(0 < len(ids) < 12 for ids in greedy)              # some sentences end before max_len
    for b, ids in enumerate(greedy):
        [(beam_ids, logprob)] = translate_beam(model, src[:lengths[b], b], 12, bos_id=BOS, eos_id=EOS, beam_width=1)
        np.testing.assert_array_equal(beam_ids, ids)
        if len(ids) < 12:
            assert logprob == pytest.approx(sequence_logprob(model, src[:lengths[b], b], ids, bos_id=BOS, eos_id=EOS),
                                            rel=1e-5)


def test_greedy_of_a_batch_equals_each_sentence_alone():
    model = _trained_looking("bahdanau", seed=2, eos_bias=1.0)
    src, lengths = _sources(np.random.default_rng(6))
    batch = translate_greedy(model, src, lengths, 10, bos_id=BOS, eos_id=EOS)
    assert len({len(ids) for ids in batch}) > 1                   # sentences end at different steps
    for b in range(len(lengths)):
        [alone] = translate_greedy(model, src[:lengths[b], b:b + 1], lengths[b:b + 1], 10, bos_id=BOS, eos_id=EOS)
        np.testing.assert_array_equal(alone, batch[b])


def test_sampling_is_seeded_and_cold_sampling_is_greedy():
    model = _trained_looking("luong", seed=3)
    src, lengths = _sources(np.random.default_rng(8))
    a = translate_greedy(model, src, lengths, 10, bos_id=BOS, eos_id=EOS, temperature=1.0, rng=5)
    b = translate_greedy(model, src, lengths, 10, bos_id=BOS, eos_id=EOS, temperature=1.0, rng=5)
    c = translate_greedy(model, src, lengths, 10, bos_id=BOS, eos_id=EOS, temperature=1.0, rng=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    cold = translate_greedy(model, src, lengths, 10, bos_id=BOS, eos_id=EOS, temperature=1e-4, rng=5)
    greedy = translate_greedy(model, src, lengths, 10, bos_id=BOS, eos_id=EOS)
    assert all(np.array_equal(x, y) for x, y in zip(cold, greedy))


def _exhaustive(model, src_ids, max_len, V, alpha=0.0):
    """Every complete translation (ended by <eos>, or max_len tokens long) with its log-probability,
    ranked by GNMT's normalisation logprob / ((5 + n) / 6) ** alpha, n counting the <eos>."""
    hyps = []
    for n in range(0, max_len + 1):
        for ids in itertools.product(range(V), repeat=n):
            if EOS in ids:
                continue
            state = model.start(np.asarray(src_ids)[:, None], np.array([len(src_ids)]))
            total, ended = 0.0, n < max_len                      # cut at max_len: no <eos> scored
            for prev, token in zip([BOS, *ids], [*ids, EOS] if ended else ids):
                logits, state = model.step(np.array([prev]), state)
                total += float(log_softmax(logits[0].astype(np.float64))[token])
            hyps.append((list(ids), total, n + ended))
    hyps.sort(key=lambda h: -h[1] / ((5 + h[2]) / 6) ** alpha)
    return [(ids, total) for ids, total, _ in hyps]


@pytest.mark.parametrize("attention, alpha", [("bahdanau", 0.0), ("luong", 0.0), ("bahdanau", 0.6)])
def test_beam_search_returns_the_exhaustive_best_on_a_tiny_vocabulary(attention, alpha):
    V, max_len = 6, 3                                            # 4 specials and 2 words
    model = Seq2Seq(7, V, embed=5, hidden=6, attention=attention, dropout=0.0, seed=11).double().eval()
    model.out.weight.data *= 3
    src_ids = np.array([4, 6, 5, 5])
    expected = _exhaustive(model, src_ids, max_len, V, alpha)
    wide = translate_beam(model, src_ids, max_len, bos_id=BOS, eos_id=EOS, beam_width=V ** 2, length_penalty=alpha)
    assert [ids.tolist() for ids, _ in wide] == [ids for ids, _ in expected[:V ** 2]]
    np.testing.assert_allclose([lp for _, lp in wide], [lp for _, lp in expected[:V ** 2]], rtol=1e-10)
    exact = {tuple(ids): lp for ids, lp in expected}
    narrow = translate_beam(model, src_ids, max_len, bos_id=BOS, eos_id=EOS, beam_width=3, length_penalty=alpha)
    assert len(narrow) == 3
    for ids, lp in narrow:                                       # what a narrow beam keeps, it scores exactly
        assert lp == pytest.approx(exact[tuple(ids.tolist())], rel=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_stops_once_the_best_have_ended(alpha):
    """With <eos> likely, the search ends long before max_len, and a longer max_len changes nothing."""
    model = _trained_looking("bahdanau", seed=2, eos_bias=2.0)
    calls = []
    step = model.step

    def counting_step(tokens, state):
        calls.append(len(tokens))
        return step(tokens, state)

    model.step = counting_step
    src_ids = np.array([5, 7, 4])
    short = translate_beam(model, src_ids, 40, bos_id=BOS, eos_id=EOS, beam_width=3, length_penalty=alpha)
    assert len(calls) < 15
    long = translate_beam(model, src_ids, 400, bos_id=BOS, eos_id=EOS, beam_width=3, length_penalty=alpha)
    assert [ids.tolist() for ids, _ in long] == [ids.tolist() for ids, _ in short]
    assert [lp for _, lp in long] == [lp for _, lp in short]


def test_decoding_serves_the_transformer_too():
    model = Seq2SeqTransformer(12, 10, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                               dropout=0.0, seed=0).eval()
    model.generator.weight.data *= 6
    src, lengths = _sources(np.random.default_rng(9))
    greedy = translate_greedy(model, src, lengths, 8, bos_id=BOS, eos_id=EOS)
    for b, ids in enumerate(greedy):
        [(beam_ids, _)] = translate_beam(model, src[:lengths[b], b], 8, bos_id=BOS, eos_id=EOS, beam_width=1)
        np.testing.assert_array_equal(beam_ids, ids)


def test_attention_maps_of_a_whole_target():
    model = _trained_looking("bahdanau", seed=4)
    src, lengths = _sources(np.random.default_rng(10))
    tgt = np.full((3, 4), BOS)
    [weights] = model.attention_maps(src, tgt, lengths)
    assert weights.shape == (4, 3, 5)                             # (B, T, S)
    np.testing.assert_allclose(weights.sum(axis=2), 1.0, rtol=1e-5)
    assert (weights[3, :, 1:] == 0).all()                          # the one-token source


# ----- construction and errors --------------------------------------------------------------------

def test_parameter_names():
    names = set(Seq2Seq(9, 8, embed=4, hidden=4, cell="lstm", attention="luong", seed=0).state_dict())
    assert {"src_embed.weight", "encoder.weight_ih_l0", "encoder.weight_hh_l0_reverse", "bridge.0.weight",
            "bridge.1.bias", "tgt_embed.weight", "decoder.0.weight_ih", "decoder.0.bias_hh",
            "attention.query_proj.weight", "combine.weight", "out.weight", "out.bias"} <= names
    plain = set(Seq2Seq(9, 8, embed=4, hidden=4, bidirectional=False, attention="none", seed=0).state_dict())
    assert not any(n.startswith(("bridge", "attention", "combine")) for n in plain)


@pytest.mark.parametrize("kwargs, message", [
    (dict(attention="additive"), "attention must be one of bahdanau, luong, none"),
    (dict(cell="rnn"), "cell must be one of gru, lstm"),
    (dict(hidden=0), "hidden must be a positive integer"),
    (dict(dropout=1.0), r"dropout must lie in \[0, 1\)"),
    (dict(eos_id=20), "eos_id must be an id in both vocabularies"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Seq2Seq(9, 8, **kwargs)


def test_call_errors():
    model = _model("bahdanau")
    src, tgt, lengths = _batch(np.random.default_rng(11))
    with pytest.raises(ValueError, match=r"tgt must lie in 0..7"):
        model(src, tgt + 8, lengths)
    with pytest.raises(ValueError, match=r"teacher_forcing must be a probability in \[0, 1\]"):
        model(src, tgt, lengths, teacher_forcing=1.5)
    with pytest.raises(ValueError, match="tgt must hold the source's 2 sequences"):
        model(src, tgt[:, :1], lengths)
    with pytest.raises(ValueError, match="lengths must lie in 1..4"):
        model(src, tgt, np.array([5, 2]))
    with pytest.raises(ValueError, match="src_ids must be one non-empty sentence"):
        translate_beam(model, np.array([], dtype=np.int64), 5, bos_id=BOS, eos_id=EOS)
