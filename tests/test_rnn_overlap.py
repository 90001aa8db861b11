"""The overlapped path of the recurrent layers: GEMMs cut into time chunks on the helper thread.

The other recurrent tests use shapes too small to be cut into chunks, so they exercise the
layers without the helper thread. Here every time chunk is one or two steps long, and the PyTorch
parity grid, finite-difference checks (up to 2 layers) and the equivalences run again; plus the
OpenBLAS thread control and the job group themselves.
"""
import multiprocessing
import sys
import threading
import time

import numpy as np
import pytest

import test_rnn_equivalence
import test_rnn_gradcheck
import test_rnn_torch
import unrolled
from unrolled.rnn import recurrent, threads


@pytest.fixture(autouse=True)
def tiny_chunks(monkeypatch):
    monkeypatch.setattr(recurrent, "MIN_CHUNK_ROWS", 1)
    monkeypatch.setattr(recurrent, "MAX_CHUNKS", 3)  # T = 5 -> chunks of 2, 2 and 1 steps


def test_tiny_chunks_are_in_force():
    assert recurrent._time_chunks(5, 4) == {0: 2, 2: 4, 4: 5}


def test_default_chunks_keep_gemms_large(monkeypatch):
    monkeypatch.undo()
    assert recurrent._time_chunks(100, 64) == {t: t + 13 for t in range(0, 91, 13)} | {91: 100}
    assert recurrent._time_chunks(5, 4) == {0: 5}  # too small to cut: no helper thread at all
    assert recurrent._time_chunks(1, 1) == {0: 1}


@pytest.mark.parametrize("kind,num_layers,bidirectional,batch_first,lengths,with_h0", test_rnn_torch.GRID)
def test_matches_torch(kind, num_layers, bidirectional, batch_first, lengths, with_h0):
    test_rnn_torch.test_matches_torch(kind, num_layers, bidirectional, batch_first, lengths, with_h0)


@pytest.mark.parametrize("kind", test_rnn_torch.KINDS)
def test_float32_matches_torch(kind):
    test_rnn_torch.test_float32_matches_torch(kind)


@pytest.mark.parametrize("kind", test_rnn_torch.KINDS)
def test_recurrent_dropout_matches_the_torch_references(kind):
    test_rnn_torch.test_recurrent_dropout_matches_a_torch_reference(kind)
    test_rnn_torch.test_recurrent_dropout_with_lengths_and_both_directions_matches_the_torch_reference(kind)
    test_rnn_torch.test_recurrent_dropout_in_stacked_layers_matches_the_torch_reference(kind)


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,lengths,with_h0",
                         [case for case in test_rnn_gradcheck._grid() if case[0] <= 2])  # PyTorch checks all
@pytest.mark.parametrize("kind", test_rnn_gradcheck.KINDS)
def test_gradients_match_finite_differences(kind, num_layers, bidirectional, batch_first, lengths, with_h0):
    test_rnn_gradcheck.test_layer_gradients_match_finite_differences(
        kind, num_layers, bidirectional, batch_first, lengths, with_h0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gradients_through_dropout(kind):
    test_rnn_gradcheck.test_gradients_through_dropout_between_layers(kind)


@pytest.mark.parametrize("kind", test_rnn_equivalence.LAYERS)
def test_layer_equals_a_loop_over_its_cell(kind):
    test_rnn_equivalence.test_layer_equals_a_loop_over_its_cell(kind)


@pytest.mark.parametrize("kind", test_rnn_equivalence.LAYERS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_masked_batch_equals_each_sequence_alone(kind, num_layers, bidirectional):
    test_rnn_equivalence.test_masked_batch_equals_each_sequence_alone(kind, num_layers, bidirectional)


def test_backward_pairs_with_forward_in_reverse_order_and_accumulates():
    test_rnn_equivalence.test_backward_pairs_with_forward_in_reverse_order_and_accumulates()


def test_overlapped_equals_serial_bit_for_bit(monkeypatch):
    """Chunking changes which thread computes a GEMM, not the rows it sums: same bits as unchunked,
    except the weight gradients, which add chunk by chunk."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 4)).astype(np.float32)
    d_out = rng.standard_normal((7, 3, 5)).astype(np.float32)
    results = []
    for min_rows in (1, 10**9):
        monkeypatch.setattr(recurrent, "MIN_CHUNK_ROWS", min_rows)
        layer = unrolled.LSTM(4, 5, num_layers=2, seed=0)
        out, (h_n, c_n) = layer(x)
        dx, _ = layer.backward(d_out)
        results.append((out, h_n, c_n, dx, layer.weight_hh_l0.grad.copy()))
    for a, b in zip(results[0][:4], results[1][:4]):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(results[0][4], results[1][4], rtol=1e-5, atol=1e-6)


def test_one_blas_thread_sets_and_restores():
    if threads._CONTROLS is None:
        pytest.skip("this NumPy is not built on OpenBLAS")
    set_threads, get_threads = threads._CONTROLS
    before = get_threads()
    set_threads(2)
    try:
        with threads.one_blas_thread():
            assert get_threads() == 1
            with threads.one_blas_thread():
                assert get_threads() == 1
            assert get_threads() == 1
        assert get_threads() == 2
    finally:
        set_threads(before)


def test_jobs_run_on_the_helper_thread_in_order():
    overlap, seen = threads.Overlap(), []
    gate = threading.Event()
    overlap.submit(gate.wait, 10)                  # a bounded wait: a regression fails, never hangs
    later = [overlap.submit(seen.append, k, shareable=k == 0) for k in range(4)]
    overlap.wait(later[:1])  # job 0 is shareable and not started (the helper waits at the gate): run here
    assert seen == [0]
    gate.set()
    overlap.finish()
    overlap.wait(later)  # joining twice runs nothing twice
    assert seen == [0, 1, 2, 3]


def test_finish_takes_unstarted_shareable_jobs_from_the_back():
    """While the helper works through the queue from the front, the caller runs the shareable jobs
    it has not reached, latest first; the others stay on the helper, in order."""
    overlap, seen = threads.Overlap(), []
    gate = threading.Event()
    overlap.submit(gate.wait, 10)

    def job(k):
        seen.append((k, threading.current_thread().name))
        if k == 0:
            gate.set()                          # the caller's last share frees the helper

    for k in range(4):
        overlap.submit(job, k, shareable=k != 3)
    overlap.finish()
    caller = threading.current_thread().name
    assert seen == [(2, caller), (1, caller), (0, caller), (3, seen[3][1])]
    assert seen[3][0] == 3 and seen[3][1].startswith("unrolled-overlap")


def test_finish_takes_the_unstarted_ordered_jobs_and_runs_them_after_the_earlier_ones():
    """Ordered jobs (gradients added into the same arrays) keep their order wherever they run: the
    caller claims those the helper has not reached and runs them once the helper's are done."""
    overlap, seen = threads.Overlap(), []
    started, release = threading.Event(), threading.Event()

    def record(name):
        seen.append((name, threading.current_thread().name))

    def first():
        started.set()
        release.wait(10)                        # a bounded wait: a regression fails, never hangs
        record("A")

    overlap.submit(first, ordered=True)
    overlap.submit(record, "B", ordered=True)
    overlap.submit(record, "C")                 # neither shareable nor ordered: the helper's
    overlap.submit(record, "D", ordered=True)
    overlap.submit(release.set, shareable=True)  # run by the caller after it has claimed B and D
    assert started.wait(10)                     # the helper is inside A
    overlap.finish()
    caller = threading.current_thread().name
    assert [name for name, _ in seen if name != "C"] == ["A", "B", "D"]
    where = dict(seen)
    assert where["A"] != caller and where["C"] != caller and where["B"] == where["D"] == caller


def test_a_job_is_shareable_or_ordered_not_both():
    with pytest.raises(ValueError, match="shareable .* or ordered, not both"):
        threads.Overlap().submit(print, shareable=True, ordered=True)


def test_jobs_use_the_callers_floating_point_error_callback():
    calls = []
    overlap = threads.Overlap()
    with np.errstate(over="call", call=lambda kind, flag: calls.append(kind)):
        overlap.submit(np.exp, np.array([1000.0]))
        overlap.finish()
    assert calls == ["overflow"]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_tied_weights_add_both_gradients_on_the_overlapped_path(kind):
    """With weight_hh tied to weight_ih every gradient job is ordered: no update is lost to two
    threads adding into one array, and repeated runs give the same bits."""
    rng = np.random.default_rng(4)
    x, d_out = rng.standard_normal((30, 32, 96)), rng.standard_normal((30, 32, 96))
    untied = getattr(unrolled, kind)(96, 96, dtype=np.float64, seed=0)
    untied.weight_hh_l0.data[...] = untied.weight_ih_l0.data   # the same values under two names
    untied(x)
    untied.backward(d_out)
    expected = untied.weight_ih_l0.grad + untied.weight_hh_l0.grad
    grads = []
    for _ in range(10):
        tied = getattr(unrolled, kind)(96, 96, dtype=np.float64, seed=0)
        tied.weight_hh_l0 = tied.weight_ih_l0                    # one array in both products
        tied(x)
        tied.backward(d_out)
        grads.append(tied.weight_ih_l0.grad.copy())
    for g in grads:
        assert np.array_equal(g, grads[0])
        np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-12)


def test_a_failing_job_raises_in_the_caller():
    overlap = threads.Overlap()
    overlap.submit(np.matmul, np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError):
        overlap.finish()


def test_an_error_in_the_block_cancels_what_the_helper_has_not_started():
    """After an error (or Ctrl-C) no job of the group is still running or waiting to run."""
    seen, started = [], threading.Event()

    def slow():
        started.set()
        time.sleep(0.2)
        seen.append("running")

    with pytest.raises(KeyboardInterrupt):
        with threads.Overlap() as overlap:
            overlap.submit(slow)
            later = overlap.submit(seen.append, "later")
            assert started.wait(10)
            raise KeyboardInterrupt
    assert seen == ["running"]                   # waited for, before the error left
    assert later.future.cancelled()


def test_an_error_in_backward_leaves_no_gradient_job_behind(monkeypatch):
    """A layer's backward stopped midway (here by Ctrl-C in the recurrence) returns only when the
    helper has no gradient job left: none adds into .grad after the caller has moved on."""
    counts, inside = {"started": 0, "finished": 0}, threading.Event()
    real = recurrent.input_side_grads

    def slow_input_side_grads(*args):
        counts["started"] += 1
        inside.set()
        time.sleep(0.05)
        real(*args)
        counts["finished"] += 1

    behind = recurrent._Recurrent._gradients_behind

    def interrupted_after_two_chunks(self, *args):
        done, calls = behind(self, *args), []

        def hook(t, d_x, d_hh):
            done(t, d_x, d_hh)
            if t in recurrent._time_chunks(5, 3):
                calls.append(t)
            if len(calls) == 2:
                assert inside.wait(10)           # the helper is inside a gradient job
                raise KeyboardInterrupt
        return hook

    monkeypatch.setattr(recurrent, "input_side_grads", slow_input_side_grads)
    monkeypatch.setattr(recurrent._Recurrent, "_gradients_behind", interrupted_after_two_chunks)
    layer = unrolled.LSTM(4, 5, seed=0)
    out, _ = layer(np.ones((5, 3, 4), np.float32))
    with pytest.raises(KeyboardInterrupt):
        layer.backward(np.ones_like(out))
    assert counts["started"] == counts["finished"] > 0
    time.sleep(0.2)
    assert counts["started"] == counts["finished"]   # and nothing starts later


def _chunked_lstm_step(queue):
    layer = unrolled.LSTM(4, 5, seed=0)
    out, _ = layer(np.ones((7, 3, 4), np.float32))
    layer.backward(np.ones_like(out))
    queue.put(float(layer.weight_hh_l0.grad.sum()))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_gets_its_own_helper_thread():
    _chunked_lstm_step(queue := multiprocessing.Queue())  # the parent's helper thread is running
    expected = queue.get()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_chunked_lstm_step, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == expected
