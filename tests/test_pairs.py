"""Translation data: normalisation, the tutorial filter, the held-out split, vocabularies and batches."""
from pathlib import Path

import numpy as np
import pytest

from unrolled.data.pairs import (ENGLISH_PREFIXES, SPECIALS, PairBatcher, build_vocab, check_vocab, decode,
                                 is_tutorial_pair, load_pairs, make_batch, normalize, read_pairs, references,
                                 split_pairs)
from unrolled.data.vocab import Vocab

FIXTURE = Path(__file__).parent / "fixtures" / "eng_fra_pairs.txt"  # 386 lines cut from shared/data/eng_fra/fra.txt


# ----- normalisation ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("Cours\u202f!", "cours !"),                 # narrow no-break space before the mark
    ("Au feu\u00a0!", "au feu !"),               # no-break space
    ("À l'aide !", "a l aide !"),                # accent stripped, apostrophe a space
    ("I'm 19.", "i m ."),                        # digits dropped, as in the tutorial
    ("She's hot.", "she s hot ."),
    ("Arrête-toi !", "arrete toi !"),
    ("Il a le cœur brisé.", "il a le coeur brise ."),
    ("  Wait...  what?! ", "wait . . . what ? !"),
])
def test_normalize_follows_the_tutorial(raw, expected):
    assert normalize(raw) == expected


def test_fixture_lines_normalise_to_ascii_tokens_with_single_spaces():
    raw = read_pairs(FIXTURE)
    assert len(raw) == 386 and raw[0] == ("Go.", "Va !") and raw[1] == ("Run!", "Cours\u202f!")
    assert sum("\u202f" in t or "\u00a0" in t for _, t in raw) >= 20
    for s, t in raw:
        for text in (normalize(s), normalize(t)):
            assert text == " ".join(text.split())
            assert set(text) <= set("abcdefghijklmnopqrstuvwxyz.!? ")


# ----- reading ------------------------------------------------------------------------------------

def test_read_pairs_takes_two_columns_and_skips_blank_lines(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_bytes("\ufeffHi.\tSalut.\tCC-BY 2.0 (France) Attribution: tatoeba.org\r\n\r\nGo.\tVa !\n".encode())
    assert read_pairs(path) == [("Hi.", "Salut."), ("Go.", "Va !")]


@pytest.mark.parametrize("content, message", [
    (b"", "no sentence pairs"),
    (b"Hi.\tSalut.\nno tab here\n", "line 2 must hold two tab-separated sentences"),
    (b"Hi.\tCaf\xe9\n", "not UTF-8"),
    (b"Hi.\t\0\n", "binary"),
])
def test_read_pairs_rejects_bad_files_in_one_sentence(tmp_path, content, message):
    path = tmp_path / "pairs.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_pairs(path)


def test_read_pairs_rejects_missing_files_and_folders(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_pairs(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="is a folder"):
        read_pairs(tmp_path)


# ----- presets ------------------------------------------------------------------------------------

def test_tutorial_filter_on_fixture_lines():
    kept = load_pairs(FIXTURE, "tutorial")
    everything = load_pairs(FIXTURE, "full")
    assert len(everything) == 386  # no fixture line normalises to an empty side
    assert 200 <= len(kept) < len(everything)
    assert ("i m crazy .", "je suis fou .") in kept
    assert ("she s hot .", "elle est chaude .") in kept
    assert all(s.startswith(ENGLISH_PREFIXES) for s, _ in kept)
    assert all(len(s.split()) < 10 and len(t.split()) < 10 for s, t in kept)
    assert ("is that it ?", "est ce cela ?") in everything and ("is that it ?", "est ce cela ?") not in kept
    dropped = [p for p in everything if p not in kept]
    assert any(s.startswith(ENGLISH_PREFIXES) and len(s.split()) >= 10 for s, _ in dropped)  # too long
    assert any(s.startswith(ENGLISH_PREFIXES) and len(t.split()) >= 10 for s, t in dropped)  # target too long


def test_tutorial_filter_rules():
    assert is_tutorial_pair("i am here .", "je suis ici .")
    assert is_tutorial_pair("they re late .", "ils sont en retard .")
    assert is_tutorial_pair("he isn t here .", "il n est pas ici .")  # "he is" without a space, as in the tutorial
    assert not is_tutorial_pair("i made it .", "je l ai fait .")
    assert not is_tutorial_pair("i m a b c d e f g .", "je .")      # 10 tokens: not under 10
    assert is_tutorial_pair("i m a b c d e f .", "je .")            # 9 tokens


def test_full_preset_drops_only_pairs_with_an_empty_side(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("I'm 19.\tJ'ai 19 ans.\n42\t42\nGo.\tVa !\n", encoding="utf-8")
    assert load_pairs(path, "full") == [("i m .", "j ai ans ."), ("go .", "va !")]
    assert load_pairs(path, "tutorial") == [("i m .", "j ai ans .")]


def test_load_pairs_errors(tmp_path):
    with pytest.raises(ValueError, match="preset must be one of tutorial, full"):
        load_pairs(FIXTURE, "tiny")
    path = tmp_path / "pairs.txt"
    path.write_text("Go.\tVa !\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no sentence pairs left under the 'tutorial' preset"):
        load_pairs(path, "tutorial")


# ----- the held-out split -------------------------------------------------------------------------

def test_split_is_seeded_by_distinct_source_and_covers_everything():
    pairs = load_pairs(FIXTURE, "tutorial")
    train, test = split_pairs(pairs, 0.1, seed=0)
    assert split_pairs(pairs, 0.1, seed=0) == (train, test)
    assert split_pairs(pairs, 0.1, seed=1) != (train, test)
    assert sorted(train + test) == sorted(pairs)
    train_sources, test_sources = {s for s, _ in train}, {s for s, _ in test}
    assert not train_sources & test_sources
    n_sources = len(train_sources | test_sources)
    assert len(test_sources) == round(0.1 * n_sources)
    assert [p for p in pairs if p in test] == test  # file order kept


def test_split_errors():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_pairs([("a", "b")], 1.0)
    with pytest.raises(ValueError, match="leaves one side empty"):
        split_pairs([("a", "b"), ("c", "d")], 0.1)


def test_references_group_every_translation_of_a_source():
    sources, refs = references([("a .", "x ."), ("b .", "y ."), ("a .", "z .")])
    assert sources == ["a .", "b ."] and refs == [["x .", "z ."], ["y ."]]


# ----- vocabularies and batches -------------------------------------------------------------------

def test_vocab_specials_and_batches():
    pairs = [("i am cold .", "j ai froid ."), ("he is here .", "il est ici ."), ("we are .", "nous sommes .")]
    src_vocab, tgt_vocab = build_vocab(s for s, _ in pairs), build_vocab(t for _, t in pairs)
    assert tuple(src_vocab.itos[:4]) == SPECIALS == ("<unk>", "<pad>", "<bos>", "<eos>")
    batch = make_batch(pairs + [("you are a unicorn .", "tu es une licorne .")], src_vocab, tgt_vocab)
    assert batch.src.shape == (5, 4) and batch.src.dtype == np.int64
    np.testing.assert_array_equal(batch.src_lengths, [4, 4, 3, 5])
    assert (batch.src[3:, 2] == 1).all() and batch.src[2, 2] == src_vocab.stoi["."]
    assert (batch.src[:, 3] == [0, src_vocab.stoi["are"], 0, 0, src_vocab.stoi["."]]).all()  # unknown -> <unk>
    assert batch.tgt_in.shape == batch.tgt_out.shape == (6, 4)
    assert (batch.tgt_in[0] == 2).all()                                   # <bos>
    np.testing.assert_array_equal(batch.tgt_out[:, 0], tgt_vocab.encode("j ai froid .".split() + ["<eos>"]).tolist() + [1])
    np.testing.assert_array_equal(batch.tgt_in[1:5, 0], batch.tgt_out[:4, 0])
    assert batch.n_tokens == 5 + 5 + 4 + 6  # each target and its <eos>
    assert decode(tgt_vocab, batch.tgt_out[:, 2]) == "nous sommes ."
    assert decode(tgt_vocab, batch.tgt_in[:, 2]) == "nous sommes ."   # <bos> and <pad> left out


def test_check_vocab_wants_the_specials_first():
    with pytest.raises(ValueError, match="must start with the specials"):
        check_vocab(Vocab(["a", "b"]), "source")


def test_batcher_serves_every_pair_once_per_epoch_in_a_seeded_order():
    pairs = load_pairs(FIXTURE, "full")
    src_vocab, tgt_vocab = build_vocab(s for s, _ in pairs), build_vocab(t for _, t in pairs)
    batcher = PairBatcher(pairs, src_vocab, tgt_vocab, batch_size=16, seed=3)
    assert len(batcher) == -(-len(pairs) // 16)
    order = batcher.order(0)
    assert sorted(np.concatenate(order).tolist()) == list(range(len(pairs)))
    assert all(np.array_equal(a, b) for a, b in zip(order, PairBatcher(pairs, src_vocab, tgt_vocab, 16, seed=3).order(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(order, batcher.order(1)))
    batches = list(batcher.epoch(0))
    assert len(batches) == len(batcher)
    assert sum(b.src.shape[1] for b in batches) == len(pairs)
    padded = sum(b.src.size for b in batches)
    assert padded < 1.3 * sum(b.src_lengths.sum() for b in batches)  # length pools keep padding low
