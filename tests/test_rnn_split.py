"""The forward recurrence with the batch split between two threads (large layers only).

The other recurrent tests use layers too small to split, so here the split is forced for every
batch of two or more sequences, and the PyTorch parity grid, finite-difference checks, dropout
references and equivalences run again.
"""
import numpy as np
import pytest

import test_rnn_equivalence
import test_rnn_gradcheck
import test_rnn_torch
import unrolled
from unrolled.rnn import recurrent


@pytest.fixture(autouse=True)
def always_split(monkeypatch):
    monkeypatch.setattr(recurrent, "MIN_SPLIT_WORK", 0)
    monkeypatch.setattr(recurrent, "MIN_SPLIT_ROWS", 1)


def test_the_split_is_in_force(monkeypatch):
    assert recurrent._batch_split(5, 3, 4) == 2
    assert recurrent._batch_split(1, 3, 4) is None       # one sequence: nothing to split
    monkeypatch.undo()
    assert recurrent._batch_split(64, 256, 4) == 32        # the benchmark's large layers split...
    assert recurrent._batch_split(64, 128, 4) is None      # ...small ones do not
    assert recurrent._batch_split(128, 32, 3) is None


@pytest.mark.parametrize("kind,num_layers,bidirectional,batch_first,lengths,with_h0", test_rnn_torch.GRID)
def test_matches_torch(kind, num_layers, bidirectional, batch_first, lengths, with_h0):
    test_rnn_torch.test_matches_torch(kind, num_layers, bidirectional, batch_first, lengths, with_h0)


@pytest.mark.parametrize("kind", test_rnn_torch.KINDS)
def test_float32_and_recurrent_dropout_match_torch(kind):
    test_rnn_torch.test_float32_matches_torch(kind)
    test_rnn_torch.test_recurrent_dropout_matches_a_torch_reference(kind)
    test_rnn_torch.test_recurrent_dropout_with_lengths_and_both_directions_matches_the_torch_reference(kind)
    test_rnn_torch.test_recurrent_dropout_in_stacked_layers_matches_the_torch_reference(kind)


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,lengths,with_h0",
                         [case for case in test_rnn_gradcheck._grid() if case[0] <= 2])
@pytest.mark.parametrize("kind", test_rnn_gradcheck.KINDS)
def test_gradients_match_finite_differences(kind, num_layers, bidirectional, batch_first, lengths, with_h0):
    test_rnn_gradcheck.test_layer_gradients_match_finite_differences(
        kind, num_layers, bidirectional, batch_first, lengths, with_h0)


@pytest.mark.parametrize("kind", test_rnn_equivalence.LAYERS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_masked_batch_equals_each_sequence_alone(kind, num_layers, bidirectional):
    test_rnn_equivalence.test_masked_batch_equals_each_sequence_alone(kind, num_layers, bidirectional)


@pytest.mark.parametrize("kind,extra", [("RNN", {}), ("LSTM", {}), ("LSTM", {"proj_size": 5}), ("GRU", {})])
def test_split_repeats_bit_for_bit_and_agrees_with_unsplit(kind, extra, monkeypatch):
    """The split is decided by the shapes alone, so a run repeats to the bit. Against the unsplit
    layer only the GEMMs' row counts differ (BLAS may round a row differently in a smaller
    GEMM): agreement to float32 precision, in training (with internals) and in inference."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 7, 6)).astype(np.float32)
    lengths = [9, 3, 7, 1, 9, 5, 2]
    d_out = rng.standard_normal((9, 7, 10)).astype(np.float32)
    results = []
    for work in (0, 0, 2**62):
        monkeypatch.setattr(recurrent, "MIN_SPLIT_WORK", work)
        layer = getattr(unrolled, kind)(6, 5 + 2 * len(extra), num_layers=2, bidirectional=True, seed=0, **extra)
        out, _, internals = layer(x, lengths=lengths, return_internals=True)
        dx, _ = layer.backward(d_out)
        layer.eval()
        with unrolled.no_grad():
            inference = layer(x, lengths=lengths)[0]
        results.append([out, dx, inference, *(a for d in internals for a in d.values()),
                        *(p.grad for p in layer.parameters())])
    for split, again, unsplit in zip(*results):
        assert np.array_equal(split, again)
        np.testing.assert_allclose(split, unsplit, rtol=1e-5, atol=1e-6)
