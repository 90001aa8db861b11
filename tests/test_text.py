import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from unrolled.data.text import (
    CharTokenizer,
    StreamBatcher,
    Vocab,
    WordTokenizer,
    bundled_path,
    get_tokenizer,
    read_text,
    split,
)
from unrolled.tasks.lm import encode_prompt

FIXTURES = Path(__file__).parent / "fixtures"
SHAKESPEARE = FIXTURES / "tinyshakespeare_4k.txt"
ANNA = FIXTURES / "anna_karenina_crlf.txt"
SCRIPT = FIXTURES / "tv_script.txt"  # made-up lines in the Seinfeld transcripts' format


def _normalise_spaces(text):
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


# ----- read_text ----------------------------------------------------------------------------


def test_read_text_turns_crlf_and_cr_into_lf(tmp_path):
    text = read_text(ANNA)
    assert "\r" not in text
    assert text.count("\n") == ANNA.read_bytes().count(b"\r\n")
    assert text.startswith("Chapter 1\n\n\nHappy families are all alike;")
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\n")  # with a byte-order mark
    assert read_text(mixed) == "one\ntwo\nthree\n"


@pytest.mark.parametrize("level", ["char", "word"])
def test_a_prompt_is_read_as_the_training_text_was(level):
    """A prompt pasted from the CRLF or BOM file the model was trained on encodes as that file's
    text does: its line ends and byte-order mark are not tokens the model was refused."""
    text = read_text(ANNA)[:300]
    vocab = Vocab(sorted(set(get_tokenizer(level).tokenize(text))))
    raw = "\ufeff" + text.replace("\n", "\r\n")
    np.testing.assert_array_equal(encode_prompt(level, vocab, raw), encode_prompt(level, vocab, text))
    with pytest.raises(ValueError, match="at least one token, but was given none"):
        encode_prompt(level, vocab, "")


def test_read_text_keeps_utf8_text_as_is():
    raw = SCRIPT.read_bytes().decode("utf-8")
    assert "\x92" in raw  # the stray Windows-1252 quote, decoded as a C1 character
    assert read_text(SCRIPT) == raw


def test_read_text_rejects_latin1_naming_byte_and_offset(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"data\.txt is not UTF-8 text \(byte 0xe9 at offset 3\); convert it to UTF-8 first\."):
        read_text(path)


def test_read_text_rejects_binary_empty_missing_and_folder(tmp_path):
    binary = tmp_path / "weights.npz"
    binary.write_bytes(b"PK\x03\x04\x00\x00 abc")
    with pytest.raises(ValueError, match=r"weights\.npz is a binary file \(a NUL byte at offset 4\)"):
        read_text(binary)
    for content in (b"", b" \n\r\n"):
        empty = tmp_path / "empty.txt"
        empty.write_bytes(content)
        with pytest.raises(ValueError, match=r"empty\.txt is empty"):
            read_text(empty)
    with pytest.raises(ValueError, match=r"nothere\.txt does not exist"):
        read_text(tmp_path / "nothere.txt")
    with pytest.raises(ValueError, match="is a folder"):
        read_text(tmp_path)


def test_bundled_tinyshakespeare_is_the_real_file():
    path = bundled_path()
    assert path.name == "tinyshakespeare.txt" and bundled_path("tinyshakespeare") == path
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    with pytest.raises(ValueError, match=r"No bundled text is called 'imdb'; the package ships \[.*'tinyshakespeare'\]\."):
        bundled_path("imdb")


# ----- tokenisers ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SHAKESPEARE, ANNA, SCRIPT])
def test_char_tokenizer_round_trip_is_exact(path):
    text = read_text(path)
    tokens = CharTokenizer().tokenize(text)
    assert len(tokens) == len(text)
    assert CharTokenizer().detokenize(tokens) == text


def test_word_tokenizer_splits_words_punctuation_and_newlines():
    tokens = WordTokenizer().tokenize("First Citizen:\nWe know't, we know't.\n\nO' the self-will... 'Tis--\"no\"!")
    assert tokens == [
        "First", "Citizen", ":", "\n",
        "We", "know't", ",", "we", "know't", ".", "\n", "\n",
        "O'", "the", "self-will", ".", ".", ".", "'Tis", "--", '"', "no", '"', "!",
    ]  # fmt: skip
    assert WordTokenizer(lower=True).tokenize("Jerry: HELLO") == ["jerry", ":", "hello"]


@pytest.mark.parametrize(
    "text",
    [
        "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
        '"Yes, yes, how was it now?" he thought, going over his dream. "Now, how\nwas it?"',
        "jerry: (pointing at georges shirt) see, to me, that button is in the worst spot.",
        "my fault--all my fault, though I'm not to blame; 'tis o' the Oblonskys' house.",
        "'True is it, my good friends,' quoth he, \"that I receive the food [at first].\"",
    ],
)
def test_word_detokenize_restores_ordinary_prose(text):
    tok = WordTokenizer()
    assert tok.detokenize(tok.tokenize(text)) == text


@pytest.mark.parametrize("path", [SHAKESPEARE, ANNA, SCRIPT])
def test_word_round_trip_on_fixture_text(path):
    text = read_text(path)
    tok = WordTokenizer()
    tokens = tok.tokenize(text)
    back = tok.detokenize(tokens)
    assert tok.tokenize(back) == tokens  # the tokens survive a round trip through text exactly
    assert back.count("\n") == text.count("\n")  # line structure kept
    lines, back_lines = _normalise_spaces(text).split("\n"), back.split("\n")
    same = sum(a == b for a, b in zip(lines, back_lines))
    assert same >= 0.95 * len(lines), [(a, b) for a, b in zip(lines, back_lines) if a != b][:3]


def test_shakespeare_fixture_word_round_trip_is_exact_up_to_spacing():
    text = read_text(SHAKESPEARE)
    tok = WordTokenizer()
    assert tok.detokenize(tok.tokenize(text)) == _normalise_spaces(text)


@pytest.mark.parametrize("tokens", [["--", "-"], ["-", "-"], ["-", "--"], ["x", "--", "-", "y"]])
def test_word_detokenize_keeps_adjacent_dashes_apart(tokens):
    """Glued together they would read as one longer run of dashes."""
    tok = WordTokenizer()
    assert tok.tokenize(tok.detokenize(tokens)) == tokens


def test_word_detokenize_takes_any_model_output():
    tok = WordTokenizer()
    assert tok.detokenize(["\n", ",", '"', '"', "(", ")", "--", "'", "word"]) == '\n, "" ()--\' word'
    assert tok.detokenize([]) == ""


def test_get_tokenizer_by_level():
    assert isinstance(get_tokenizer("char"), CharTokenizer)
    word = get_tokenizer("word", lower=True)
    assert isinstance(word, WordTokenizer) and word.lower
    with pytest.raises(ValueError, match="level must be 'char' or 'word', but was given 'bpe'"):
        get_tokenizer("bpe")


# ----- Vocab --------------------------------------------------------------------------------


def test_vocab_orders_by_frequency_then_token_after_specials():
    vocab = Vocab(list("abracadabra"))
    assert vocab.itos == ["<unk>", "a", "b", "r", "c", "d"]
    assert len(vocab) == 6 and vocab.unk_id == 0 and vocab.stoi["r"] == 3
    assert "c" in vocab and "z" not in vocab


def test_vocab_min_freq_and_max_size():
    tokens = list("aaaabbbccd")
    assert Vocab(tokens, min_freq=2).itos == ["<unk>", "a", "b", "c"]
    assert Vocab(tokens, max_size=3).itos == ["<unk>", "a", "b"]  # specials count towards max_size
    assert Vocab(tokens, min_freq=3, max_size=10).itos == ["<unk>", "a", "b"]
    specials = ("<unk>", "<pad>", "<bos>", "<eos>")
    vocab = Vocab(tokens, max_size=6, specials=specials)
    assert vocab.itos == [*specials, "a", "b"]
    assert [vocab.stoi[s] for s in specials] == [0, 1, 2, 3]


def test_vocab_specials_in_the_text_are_not_listed_twice():
    vocab = Vocab(["<eos>", "x", "<eos>"], specials=("<unk>", "<eos>"))
    assert vocab.itos == ["<unk>", "<eos>", "x"]


def test_vocab_encode_decode_and_unknowns():
    vocab = Vocab(list("hello world"))
    ids = vocab.encode(list("hold"))
    assert ids.dtype == np.int64 and ids.shape == (4,)
    assert vocab.decode(ids) == list("hold")
    assert vocab.decode(vocab.encode(list("hazy"))) == ["h", "<unk>", "<unk>", "<unk>"]
    assert vocab.encode([]).shape == (0,)
    assert vocab.decode(np.array([[1, 2]])) == [vocab.itos[1], vocab.itos[2]]


def test_vocab_strict_encode_names_the_first_unknown_token():
    vocab = Vocab(list("hello world"))
    with pytest.raises(ValueError, match=r"The token 'a' is not in the vocabulary of 9 tokens"):
        vocab.encode(list("hazy"), strict=True)
    np.testing.assert_array_equal(vocab.encode(list("lol"), strict=True), vocab.encode(list("lol")))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(specials=("<pad>", "<unk>")), "specials must be distinct tokens starting with '<unk>'"),
        (dict(specials=("<unk>", "<unk>")), "specials must be distinct"),
        (dict(min_freq=0), "min_freq must be an integer >= 1, but was given 0"),
        (dict(max_size=1), "max_size must be an integer above the 1 special tokens, but was given 1"),
    ],
)
def test_vocab_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Vocab(list("abc"), **kwargs)


def test_vocab_decode_rejects_ids_out_of_range():
    vocab = Vocab(list("abc"))
    with pytest.raises(ValueError, match=r"ids must be integers in 0\.\.3, but were given int64 values from 0 to 4"):
        vocab.decode(np.array([0, 4]))


def test_vocab_json_round_trip(tmp_path):
    tokens = WordTokenizer().tokenize(read_text(SCRIPT))
    vocab = Vocab(tokens, min_freq=2, specials=("<unk>", "<pad>", "<eos>"))
    again = Vocab.from_json(vocab.to_json())
    assert again.itos == vocab.itos and again.specials == vocab.specials
    assert Vocab.from_json(json.loads(vocab.to_json())).itos == vocab.itos
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocab.load(path)
    assert loaded.itos == vocab.itos and loaded.stoi == vocab.stoi
    np.testing.assert_array_equal(loaded.encode(tokens), vocab.encode(tokens))
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary file left behind
    vocab.save(path)  # overwriting works too
    assert Vocab.load(path).itos == vocab.itos


def test_vocab_json_keeps_unicode_tokens():
    vocab = Vocab(["\x92", "\u00e9", "\n"])
    assert Vocab.from_json(vocab.to_json()).itos == vocab.itos


def test_vocab_load_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ValueError, match=r"vocab\.json does not exist"):
        Vocab.load(tmp_path / "vocab.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "unrolled.vocab", "itos": ["a"')
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        Vocab.load(bad)
    bad.write_text('{"itos": ["<unk>"], "specials": ["<unk>"]}')
    with pytest.raises(ValueError, match=r"bad\.json must be an object with format 'unrolled.vocab'"):
        Vocab.load(bad)
    bad.write_text('{"format": "unrolled.vocab", "itos": ["<unk>", "a", "a"], "specials": ["<unk>"]}')
    with pytest.raises(ValueError, match=r"bad\.json must list distinct string tokens"):
        Vocab.load(bad)


# ----- split --------------------------------------------------------------------------------


def test_split_cuts_the_last_fraction_at_one_boundary():
    ids = np.arange(1000)
    train, val = split(ids, val_fraction=0.1)
    np.testing.assert_array_equal(train, np.arange(900))
    np.testing.assert_array_equal(val, np.arange(900, 1000))
    assert train.dtype == val.dtype == np.int64


def test_split_boundary_matches_nanogpt_on_tiny_shakespeare_length():
    n = 1_115_394  # characters in tiny Shakespeare
    train, val = split(np.zeros(n, dtype=np.int64), 0.1)
    assert (len(train), len(val)) == (int(n * 0.9), n - int(n * 0.9)) == (1_003_854, 111_540)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_fractions_outside_the_open_interval(fraction):
    with pytest.raises(ValueError, match="val_fraction must lie strictly between 0 and 1"):
        split(np.arange(100), fraction)


def test_split_rejects_a_side_left_empty_and_non_integer_ids():
    for ids in (np.arange(1), np.arange(0)):
        with pytest.raises(ValueError, match=f"Splitting {len(ids)} tokens at val_fraction=0.1 leaves one side empty"):
            split(ids, 0.1)
    with pytest.raises(ValueError, match="ids must be a 1-D sequence of integer token ids, but was given float64"):
        split(np.ones(10), 0.1)


# ----- StreamBatcher ------------------------------------------------------------------------


def test_stream_batcher_shapes_targets_and_last_chunk():
    ids = np.arange(103)  # 3 streams of 34 steps (1 token trimmed); 33 predicted steps per stream
    batcher = StreamBatcher(ids, batch_size=3, seq_len=10)
    chunks = list(batcher)
    assert len(batcher) == len(chunks) == 4
    assert [x.shape for x, _ in chunks] == [(10, 3), (10, 3), (10, 3), (3, 3)]
    for x, y in chunks:
        assert x.dtype == y.dtype == np.int64 and x.shape == y.shape
        np.testing.assert_array_equal(y, x + 1)  # y is the next token of the same stream
    np.testing.assert_array_equal(chunks[0][0][:, 1], np.arange(34, 44))  # stream b starts at b * N/B
    assert batcher.tokens_per_epoch == sum(x.size for x, _ in chunks) == 99


def test_stream_batcher_consecutive_chunks_of_a_stream_are_contiguous():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=1000)
    batcher = StreamBatcher(ids, batch_size=4, seq_len=7)
    x = np.concatenate([x for x, _ in batcher])  # (N/B - 1, B): the chunks one after another
    y = np.concatenate([y for _, y in batcher])
    for b in range(4):
        stream = ids[b * 250 : (b + 1) * 250]
        np.testing.assert_array_equal(x[:, b], stream[:-1])
        np.testing.assert_array_equal(y[:, b], stream[1:])


def test_stream_batcher_exact_division_has_no_short_chunk_and_indexing_matches_iteration():
    batcher = StreamBatcher(np.arange(2 * 21), batch_size=2, seq_len=5)  # 20 predicted steps = 4 chunks
    assert len(batcher) == 4 and all(x.shape == (5, 2) for x, _ in batcher)
    for j, (x, y) in enumerate(batcher):
        np.testing.assert_array_equal(batcher[j][0], x)
        np.testing.assert_array_equal(batcher[j][1], y)
    np.testing.assert_array_equal(batcher[-1][0], batcher[3][0])
    with pytest.raises(IndexError):
        batcher[4]


def test_stream_batcher_is_deterministic_and_read_only():
    ids = np.random.default_rng(1).integers(0, 9, size=500)
    a, b = list(StreamBatcher(ids, 5, 8)), list(StreamBatcher(ids, 5, 8))
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    with pytest.raises(ValueError):
        a[0][0][0, 0] = 1


def test_stream_batcher_needs_one_full_chunk():
    StreamBatcher(np.arange(4 * 11), batch_size=4, seq_len=10)  # exactly enough
    with pytest.raises(ValueError, match=r"needs at least 44 tokens \(batch_size \* \(seq_len \+ 1\)\), but was given 43"):
        StreamBatcher(np.arange(43), batch_size=4, seq_len=10)


@pytest.mark.parametrize("kwargs", [dict(batch_size=0, seq_len=4), dict(batch_size=2, seq_len=0), dict(batch_size=2.0, seq_len=4)])
def test_stream_batcher_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError, match="must be a positive integer"):
        StreamBatcher(np.arange(100), **kwargs)


def test_the_pipeline_end_to_end_on_word_level_text():
    tok = WordTokenizer(lower=True)
    tokens = tok.tokenize(read_text(SHAKESPEARE))
    vocab = Vocab(tokens, min_freq=2)
    ids = vocab.encode(tokens)
    assert (ids == 0).any() and ids.max() < len(vocab)  # rare words became <unk>
    train, val = split(ids, 0.2)
    x, y = next(iter(StreamBatcher(train, batch_size=4, seq_len=16)))
    assert x.shape == (16, 4)
    assert "\n" in vocab.decode(x.ravel())
