"""TextClassifier: gradient checks for every pooling and layout, padding invariance, errors, word vectors."""
import numpy as np
import pytest

from unrolled.core.module import Module
from unrolled.data.classification import build_vocab
from unrolled.models.classifier import TextClassifier, load_word_vectors
from unrolled.testing import gradcheck


def _batch(rng, vocab=11, B=3, T=5):
    ids = rng.integers(0, vocab, size=(B, T))
    lengths = np.array([T, 2, 4][:B])
    return ids, lengths


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_gradcheck_bidirectional_every_pooling(cell, pooling):
    rng = np.random.default_rng(0)
    model = TextClassifier(11, num_classes=2, embed=4, hidden=3, cell=cell, bidirectional=True,
                           pooling=pooling, seed=1).double()
    for p in model.parameters():  # random non-zero biases and padding row
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    ids, lengths = _batch(rng)
    gradcheck(model, (ids,), dict(lengths=lengths), rtol=1e-6)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_gradcheck_stacked_multiclass_with_dropout(pooling):
    rng = np.random.default_rng(2)
    model = TextClassifier(9, num_classes=3, embed=3, hidden=3, layers=2, cell="lstm", bidirectional=True,
                           pooling=pooling, dropout=0.0, seed=3).double()
    ids, lengths = _batch(rng, vocab=9)
    gradcheck(model, (ids,), dict(lengths=lengths), rtol=1e-6)


class _SameMasks(Module):
    """The classifier with its word-dropout generator rewound before every forward: the same masks each time."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self._state = model.rng.bit_generator.state

    def forward(self, ids, lengths=None):
        self.model.rng.bit_generator.state = self._state
        return self.model(ids, lengths)

    def backward(self, dlogits):
        return self.model.backward(dlogits)


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_gradcheck_through_word_and_recurrent_dropout(pooling):
    rng = np.random.default_rng(11)
    model = TextClassifier(9, embed=3, hidden=3, cell="gru", pooling=pooling, embed_dropout=0.4, seed=12,
                           recurrent_dropout=0.5).double()
    ids, lengths = _batch(rng, vocab=9)
    gradcheck(_SameMasks(model), (ids,), dict(lengths=lengths), rtol=1e-6)


def test_word_dropout_drops_whole_words_while_training_only():
    model = TextClassifier(50, embed=8, hidden=3, embed_dropout=0.5, seed=0)
    ids = np.arange(2, 42).reshape(2, 20)
    model(ids)
    model.backward(np.ones(2, dtype=np.float32))
    rows = np.abs(model.embedding.weight.grad[2:42]).sum(1)        # one row per word read once
    dropped = rows == 0
    assert 5 < dropped.sum() < 35                                  # about half the words, each entirely
    eval_probs = model.predict_proba(ids)
    np.testing.assert_array_equal(eval_probs, model.predict_proba(ids))  # eval: no masks


def test_gradcheck_unidirectional_gru_without_lengths():
    rng = np.random.default_rng(4)
    model = TextClassifier(7, embed=3, hidden=4, cell="gru", bidirectional=False, pooling="last", seed=5).double()
    gradcheck(model, (rng.integers(0, 7, (2, 4)),), {}, rtol=1e-6)


def test_loss_gradient_matches_finite_differences_through_the_model():
    rng = np.random.default_rng(6)
    model = TextClassifier(8, num_classes=2, embed=3, hidden=3, cell="gru", pooling="max", seed=7).double()
    ids, lengths = _batch(rng, vocab=8)
    labels = np.array([1, 0, 1])
    model.zero_grad()
    loss, dlogits = model.loss(model(ids, lengths), labels)
    model.backward(dlogits)
    w = model.rnn.weight_hh_l0
    analytic = w.grad[1, 2]
    eps, old = 1e-6, w.data[1, 2]
    w.data[1, 2] = old + eps
    up = model.loss(model.eval()(ids, lengths), labels)[0]
    w.data[1, 2] = old - eps
    down = model.loss(model(ids, lengths), labels)[0]
    w.data[1, 2] = old
    assert abs(analytic - (up - down) / (2 * eps)) < 1e-7


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_never_changes_a_prediction(cell, pooling):
    rng = np.random.default_rng(8)
    model = TextClassifier(20, embed=6, hidden=5, layers=2, cell=cell, bidirectional=True, pooling=pooling,
                           padding_idx=1, seed=9)
    reviews = [rng.integers(2, 20, n) for n in (3, 9, 1, 6)]
    T = 12
    batch = np.ones((len(reviews), T), dtype=np.int64)
    for row, r in enumerate(reviews):
        batch[row, :len(r)] = r
    lengths = np.array([len(r) for r in reviews])
    together = model.predict_proba(batch, lengths)
    for row, r in enumerate(reviews):
        alone = model.predict_proba(r[None, :])
        np.testing.assert_allclose(together[row], alone[0], rtol=1e-6, atol=1e-7)


def test_multiclass_probabilities_sum_to_one_and_binary_has_two_columns():
    rng = np.random.default_rng(10)
    ids = rng.integers(0, 10, (4, 6))
    multi = TextClassifier(10, num_classes=5, embed=4, hidden=3, seed=0)
    binary = TextClassifier(10, num_classes=2, embed=4, hidden=3, seed=0)
    assert multi(ids).shape == (4, 5) and binary(ids).shape == (4,)
    np.testing.assert_allclose(multi.predict_proba(ids).sum(1), 1, rtol=1e-6)
    assert binary.predict_proba(ids).shape == (4, 2)


def test_predict_proba_keeps_no_cache_and_keeps_the_mode():
    model = TextClassifier(10, embed=4, hidden=3, seed=0)
    model.predict_proba(np.zeros((2, 3), dtype=np.int64))
    assert model.training and all(not m._cache for m in model.modules())


@pytest.mark.parametrize("kwargs, message", [
    (dict(cell="elman"), "cell must be one of"),
    (dict(pooling="attention"), "pooling must be one of"),
    (dict(num_classes=1), "num_classes must be an integer >= 2"),
    (dict(dropout=1.0), "dropout must lie in"),
    (dict(embed_dropout=-0.1), "embed_dropout must lie in"),
])
def test_bad_arguments_are_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TextClassifier(10, **kwargs)


def test_bad_inputs_are_one_sentence():
    model = TextClassifier(10, embed=4, hidden=3, seed=0)
    with pytest.raises(ValueError, match="integer token ids"):
        model(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="lengths must lie in 1..3"):
        model(np.zeros((2, 3), dtype=np.int64), np.array([0, 3]))
    with pytest.raises(ValueError, match="no forward pass is waiting"):
        model.backward(np.zeros(2))


def test_word_vectors_from_word2vec_and_glove_text(tmp_path):
    vocab = build_vocab([["good", "bad", "film"]])
    w2v = tmp_path / "vectors.w2v.txt"
    w2v.write_text("3 2\ngood 0.5 1.5\nunseen 9 9\nfilm -1 2\n", encoding="utf-8")
    found, read = load_word_vectors(w2v, vocab, 2)
    assert read == 3 and sorted(found) == sorted([vocab.stoi["good"], vocab.stoi["film"]])
    np.testing.assert_array_equal(found[vocab.stoi["film"]], [-1, 2])
    glove = tmp_path / "glove.txt"
    glove.write_text("bad 1 2 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a word and 2 numbers on line 1"):
        load_word_vectors(glove, vocab, 2)
