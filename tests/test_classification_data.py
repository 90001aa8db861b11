"""Text classification data: tokeniser, vocabulary, truncation, padding, buckets, and every loader format."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from unrolled.data.classification import (PAD, ReviewTokenizer, bucket_batches, build_vocab, pad_batch,
                                          truncate)
from unrolled.data.sentiment_sources import load_imdb, load_labelled, load_table, load_vader

FIXTURES = Path(__file__).parent / "fixtures" / "sentiment"
TARBALL = FIXTURES / "aclImdb_tiny.tar.gz"
FOLDER = FIXTURES / "aclImdb"
CSV = FIXTURES / "imdb_reviews.csv"
VADER = FIXTURES / "movieReviewSnippets_GroundTruth.txt"


# ----- tokeniser, vocabulary, truncation, padding, buckets ---------------------------------------

def test_tokenizer_lowercases_drops_breaks_and_punctuation_but_keeps_exclamations():
    text = "Yes its an ART... to make a slow-paced thriller.<br /><br />Don't miss it!! Why? <i>Really</i>"
    assert ReviewTokenizer().tokenize(text) == [
        "yes", "its", "an", "art", "to", "make", "a", "slow", "paced", "thriller", "don't", "miss", "it",
        "!", "!", "why", "?", "really"]


def test_tokenizer_keeps_accented_words_whole():
    assert ReviewTokenizer().tokenize("Jirí Hubac\u2019s script") == ["jirí", "hubac\u2019s", "script"]


def test_vocab_min_freq_and_max_size_with_unk_and_pad_first():
    docs = [["good", "good", "bad"], ["good", "bad", "odd"]]
    vocab = build_vocab(docs, min_freq=2)
    assert vocab.itos == ["<unk>", PAD, "good", "bad"]
    assert build_vocab(docs, max_size=3).itos == ["<unk>", PAD, "good"]
    assert vocab.encode(["odd", "good"]).tolist() == [0, 2]


@pytest.mark.parametrize("keep, expected", [("head", [0, 1, 2, 3]), ("tail", [6, 7, 8, 9]), ("both", [0, 1, 8, 9])])
def test_truncation_keeps_head_tail_or_both(keep, expected):
    ids = np.arange(10)
    assert truncate(ids, 4, keep).tolist() == expected
    assert truncate(ids, 5, "both").tolist() == [0, 1, 2, 8, 9]
    assert truncate(ids, 20, keep).tolist() == list(range(10))


def test_truncation_rejects_an_unknown_policy():
    with pytest.raises(ValueError, match="keep must be one of head, tail, both, but was given 'middle'"):
        truncate(np.arange(3), 2, "middle")


def test_pad_batch_pads_right_and_reports_lengths():
    ids, lengths = pad_batch([np.array([5, 6, 7]), np.array([8])], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]] and lengths.tolist() == [3, 1]
    with pytest.raises(ValueError, match="at least one id each"):
        pad_batch([np.array([5]), np.array([], dtype=np.int64)], pad_id=1)


def test_buckets_cover_every_example_once_and_keep_lengths_close():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, 1000)
    batches = bucket_batches(lengths, 32, np.random.default_rng(1), pool=10)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), len(batches)))
    assert padded < 0.6 * shuffled  # bucketing removes most of the padding
    again = bucket_batches(lengths, 32, np.random.default_rng(1), pool=10)
    assert all((a == b).all() for a, b in zip(batches, again))
    ordered = bucket_batches(lengths, 32)
    assert lengths[ordered[0][0]] == lengths.max()


# ----- loaders ---------------------------------------------------------------------------------

def _check_imdb(data):
    assert data.classes == ["neg", "pos"]
    assert len(data.train) == 6 and len(data.test) == 4
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.train.texts[0].startswith("Story of a man who has unnatural feelings for a pig.")
    assert data.test.texts[-1].startswith("My wife is a mental health therapist")


def test_imdb_tarball_is_read_in_place_and_skips_unlabelled_reviews(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = load_imdb(TARBALL)
    _check_imdb(data)
    assert not any("unlabelled" in t for t in data.train.texts)
    assert list(tmp_path.iterdir()) == []  # nothing unpacked


def test_imdb_folder_gives_the_same_reviews_as_the_tarball(tmp_path):
    folder, tarball = load_labelled(FOLDER), load_labelled(TARBALL)
    _check_imdb(folder)
    assert folder.train.texts == tarball.train.texts and folder.test.texts == tarball.test.texts
    shutil.copytree(FOLDER, tmp_path / "aclImdb")
    assert load_labelled(tmp_path).train.texts == folder.train.texts  # the folder above aclImdb/ works too


def test_imdb_folder_without_reviews_is_one_sentence(tmp_path):
    with pytest.raises(ValueError, match=r"expected IMDB reviews as aclImdb/train/\{pos,neg\}/<id>_<stars>.txt"):
        load_labelled(tmp_path)


def test_a_damaged_tarball_is_one_sentence(tmp_path):
    bad = tmp_path / "aclImdb_v1.tar.gz"
    bad.write_bytes(TARBALL.read_bytes()[:500])
    with pytest.raises(ValueError, match="expected a readable tar archive"):
        load_labelled(bad)


def test_csv_with_named_columns():
    data = load_labelled(CSV, text_column="review", label_column="sentiment")
    assert data.classes == ["negative", "positive"] and data.test is None
    assert len(data.train) == 10 and data.train.labels.sum() == 5
    assert "<br /><br />" in " ".join(data.train.texts)  # commas and quotes inside the text survive


def test_tsv_by_suffix_and_multiclass_labels(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("stars\tbody\n5\tloved it, truly\n1\thated it\n3\tit was fine\n", encoding="utf-8")
    data = load_table(path, text_column="body", label_column="stars")
    assert data.classes == ["1", "3", "5"] and data.train.labels.tolist() == [2, 0, 1]
    assert data.train.texts[0] == "loved it, truly"


def test_missing_label_column_names_the_columns_there():
    with pytest.raises(ValueError, match=r"expected a column named 'label' in .*imdb_reviews.csv, but its header "
                                         r"has \['review', 'sentiment'\]; choose one with --label-column\."):
        load_labelled(CSV, text_column="review")


def test_header_only_csv_and_non_utf8_csv_are_one_sentence(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at least one row of data"):
        load_labelled(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 cr\xe8me,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match="expected UTF-8 text in .*latin.csv, but byte 14 is not valid UTF-8"):
        load_labelled(latin)


def test_vader_mean_rating_to_label_dropping_near_neutral():
    data = load_labelled(VADER)
    assert data.classes == ["negative", "positive"]
    assert len(data.train) == 6  # ratings 0.125 and -0.25 are dropped
    assert data.train.labels.tolist() == [1, 1, 0, 1, 1, 1]
    assert data.train.texts[2] == "Effective but too tepid biopic"  # CRLF gone
    assert data.train.texts[5].startswith("Jirí Hubac's script is a gem.")
    assert len(load_vader(VADER, neutral=2.0).train) == 3


def test_vader_folder_reads_every_ground_truth_file(tmp_path):
    for name in ("movieReviewSnippets_GroundTruth.txt", "tweets_GroundTruth.txt"):
        (tmp_path / name).write_bytes(VADER.read_bytes())
    (tmp_path / "_README_.txt").write_bytes("caf\xe9".encode("cp1252"))  # Windows-1252, never read
    assert len(load_labelled(tmp_path).train) == 12


def test_a_folder_with_both_vader_files_and_imdb_reviews_is_refused(tmp_path):
    (tmp_path / VADER.name).write_bytes(VADER.read_bytes())
    shutil.copytree(FOLDER, tmp_path / "downloads" / "aclImdb")                  # at any depth, as load_imdb reads it
    with pytest.raises(ValueError, match=r"holds both VADER \*_GroundTruth.txt files and IMDB reviews; give the one"):
        load_labelled(tmp_path)
    assert len(load_labelled(tmp_path / "downloads").train) == len(load_labelled(FOLDER).train)
    assert len(load_labelled(tmp_path / VADER.name).train) == len(load_labelled(VADER).train)


def test_vader_line_without_rating_is_one_sentence(tmp_path):
    bad = tmp_path / "x_GroundTruth.txt"
    bad.write_text("1\tgreat\tA film.\r\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected 'id <TAB> mean rating <TAB> text' on line 1"):
        load_labelled(bad)


@pytest.mark.parametrize("name", ["reviews.json", "reviews.parquet", "notes.txt"])
def test_unknown_file_format_is_one_sentence(tmp_path, name):
    path = tmp_path / name
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=f"but was given {name}, whose format is unknown"):
        load_labelled(path)


def test_missing_path_is_one_sentence(tmp_path):
    with pytest.raises(ValueError, match="expected a data file or folder at .*nowhere.csv, but there is none"):
        load_labelled(tmp_path / "nowhere.csv")
