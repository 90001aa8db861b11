"""Property-based tests: tokenisers and vocabularies round-trip, batches and windows keep their
invariants, and the checkpoint loader survives any damage without loading wrong data."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from unrolled.checkpoint import (CheckpointError, generator_states, load_checkpoint, prefixed,
                                 save_checkpoint)
from unrolled.data.text import CharTokenizer, StreamBatcher, Vocab, WordTokenizer
from unrolled.data.windows import Windows, chronological_split

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# text like the files people train on: letters (accented too), digits, punctuation, quotes, dashes, newlines
PROSE = st.text(st.sampled_from(list("abcXYZ\u00e9\u00df019 \n\t.,;:!?'\"-_()[]{}%\u2026\u201c\u201d\u2018\u2019")),
                max_size=80)


# ----- tokenisers and vocabularies -------------------------------------------------------------------

@FAST
@given(st.text(max_size=200))
def test_characters_round_trip_exactly(text):
    tokenizer = CharTokenizer()
    assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


@FAST
@given(st.one_of(PROSE, st.text(max_size=60)), st.booleans())
def test_words_round_trip_through_their_text(text, lower):
    """Any token list the tokeniser produces comes back from its own detokenised text."""
    tokenizer = WordTokenizer(lower=lower)
    tokens = tokenizer.tokenize(text)
    assert tokenizer.tokenize(tokenizer.detokenize(tokens)) == tokens


@FAST
@given(st.lists(st.text(min_size=1, max_size=4), max_size=60), st.integers(1, 3))
def test_vocab_encodes_and_decodes_every_kept_token(tokens, min_freq):
    vocab = Vocab(tokens, min_freq=min_freq)
    ids = vocab.encode(tokens)
    assert ids.dtype == np.int64 and ids.shape == (len(tokens),)
    kept = [t if t in vocab else "<unk>" for t in tokens]
    assert vocab.decode(ids) == kept
    assert all(tokens.count(t) >= min_freq for t in kept if t != "<unk>")
    again = Vocab.from_json(vocab.to_json())
    assert again.itos == vocab.itos and np.array_equal(again.encode(tokens), ids)


@FAST
@given(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=80), st.integers(2, 6))
def test_vocab_cap_keeps_the_most_frequent(tokens, max_size):
    vocab = Vocab(tokens, max_size=max_size)
    assert len(vocab) <= max_size and vocab.itos[0] == "<unk>"
    counts = {t: tokens.count(t) for t in set(tokens)}
    kept = [counts[t] for t in vocab.itos[1:]]
    assert kept == sorted(kept, reverse=True)
    dropped = [counts[t] for t in counts if t not in vocab]
    assert not dropped or not kept or max(dropped) <= min(kept)


# ----- batching and windowing ------------------------------------------------------------------------

@FAST
@given(st.integers(1, 6), st.integers(1, 9), st.integers(0, 60), st.integers(0, 2**31))
def test_stream_batches_tile_the_text_with_targets_shifted_by_one(batch, seq_len, extra, seed):
    n = batch * (seq_len + 1) + extra
    ids = np.random.default_rng(seed).integers(0, 50, size=n)
    batcher = StreamBatcher(ids, batch, seq_len)
    steps = n // batch
    xs, ys = zip(*batcher)
    assert len(xs) == len(batcher) == -(-(steps - 1) // seq_len)
    for x, y in zip(xs, ys):
        assert x.shape == y.shape and x.shape[1] == batch and 1 <= x.shape[0] <= seq_len
        assert np.array_equal(x[1:], y[:-1])                     # y is x shifted by one step
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)          # (steps - 1, B)
    for b in range(batch):                                         # column b is the b-th contiguous piece
        piece = ids[b * steps:(b + 1) * steps]
        assert np.array_equal(x_all[:, b], piece[:-1]) and np.array_equal(y_all[:, b], piece[1:])
    assert batcher.tokens_per_epoch == y_all.size


@FAST
@given(st.integers(8, 80), st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(0, 3),
       st.integers(1, 3), st.integers(0, 2**31))
def test_windows_read_the_past_forecast_the_future_and_never_cross_a_split(n, features, lookback, horizon, gap,
                                                                            stride, seed):
    values = np.random.default_rng(seed).standard_normal((n, features))
    assume(n >= lookback + gap + horizon + 2)
    try:
        split = chronological_split(n, (0.6, 0.2, 0.2))
    except ValueError:
        assume(False)
    assert sum(split.sizes) == n and min(split.sizes) >= 1
    windows = Windows(values, lookback, horizon, gap)
    periods = [(0, split.train_end, stride), (split.train_end, split.val_end, 1), (split.val_end, n, 1)]
    for start, stop, step in periods:
        origins = windows.origins(start, stop, step)
        if not len(origins):
            continue
        assert np.all(np.diff(origins) == step)
        rows = windows.target_rows(origins)                                    # (B, H)
        assert rows.min() >= start and rows.max() < stop                       # targets inside the period
        assert origins.min() - lookback + 1 >= 0                               # inputs start at row 0 or later
        if start == 0:
            assert rows.max() < split.train_end                                # training never reads ahead
        x, y = windows.inputs(origins), windows.targets(origins)
        assert x.shape == (lookback, len(origins), features) and y.shape == (len(origins), horizon)
        for k, t in enumerate(origins):
            assert np.array_equal(x[:, k], values[t - lookback + 1:t + 1])      # the window ends at its origin
            assert np.array_equal(y[k], values[t + gap + 1:t + gap + 1 + horizon, 0])
        if start > 0:
            assert windows.origins(start, stop)[0] >= start - gap - 1          # no target before the period


# ----- the checkpoint loader under fire --------------------------------------------------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    """A real-looking checkpoint: float32 weights, int and float optimiser state, RNG states, metadata."""
    folder = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(5)
    arrays = {**prefixed("model", {"rnn.weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32),
                                   "decoder.bias": rng.standard_normal(5).astype(np.float32)}),
              **prefixed("optim", {"state.0.step": np.array(12), "state.0.exp_avg": rng.standard_normal(4)})}
    meta = {"step": 40, "epoch": 1, "best_val": 2.3456789, "train": {"step": 40, "loss_sum": 1.25},
            "rng": generator_states({"dropout": np.random.default_rng(9)}), "vocab": "vocab.json"}
    save_checkpoint(folder, arrays, meta)
    return folder


MUTATIONS = st.tuples(st.sampled_from(["checkpoint.npz", "checkpoint.json"]),
                      st.sampled_from(["flip", "set", "truncate", "insert", "delete"]),
                      st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.integers(1, 40))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MUTATIONS)
def test_damaged_checkpoints_raise_a_checkpoint_error_or_load_exactly(pair, tmp_path_factory, mutation):
    name, kind, where, value, length = mutation
    expected_arrays, expected_meta = load_checkpoint(pair)
    folder = tmp_path_factory.mktemp("fuzz")
    for path in pair.iterdir():
        shutil.copy(path, folder / path.name)
    data = bytearray((folder / name).read_bytes())
    i = int(where * len(data))
    if kind == "flip":
        data[i] ^= 1 << (value % 8)
    elif kind == "set":
        data[i] = value
    elif kind == "truncate":
        del data[i:]
    elif kind == "insert":
        data[i:i] = bytes([value]) * length
    else:
        del data[i:i + length]
    (folder / name).write_bytes(bytes(data))
    try:
        arrays, meta = load_checkpoint(folder)
    except CheckpointError as e:  # a ValueError with one sentence
        assert "\n" not in str(e) and str(e).endswith(".")
        return
    # it loaded: then it is exactly what was saved (only JSON whitespace can change harmlessly)
    assert meta == expected_meta and sorted(arrays) == sorted(expected_arrays)
    for key, array in arrays.items():
        assert array.dtype == expected_arrays[key].dtype and np.array_equal(array, expected_arrays[key]), key
    assert json.loads((folder / "checkpoint.json").read_bytes()) == json.loads((pair / "checkpoint.json").read_bytes())
