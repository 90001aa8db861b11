"""Sentence pairs for translation: reading, normalising, filtering, splitting, vocabularies, batches.

    pairs = load_pairs("fra.txt", preset="tutorial")       # [("i am cold .", "j ai froid ."), ...]
    train, test = split_pairs(pairs, test_fraction=0.1)    # by distinct source sentence, seeded
    src_vocab, tgt_vocab = build_vocab(s for s, _ in train), build_vocab(t for _, t in train)
    for batch in PairBatcher(train, src_vocab, tgt_vocab, batch_size=64, seed=0).epoch(0):
        batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out      # time-major (S, B), (B,), (T, B), (T, B)

The file is tab-separated, `source <TAB> target` per line (the Tatoeba/Anki format; a third
attribution column, as newer files have, is ignored). Text is normalised as the PyTorch seq2seq
tutorial does: the no-break spaces French puts before punctuation (U+202F, U+00A0) become spaces,
accents are stripped (NFD, combining marks dropped; the ligatures oe and ae are spelt out), letters
are lower-cased, `. ! ?` become tokens of their own and everything else but ASCII letters becomes
a space, so "I'm" is "i m". Tokens are what lies between spaces.

Presets: "tutorial" keeps the tutorial's subset (both sides under 10 tokens, the English starting
with "i am", "he is", "she is", "you are", "we are", "they are" or their contractions); "full"
keeps every pair.

The test split is drawn over distinct source sentences, so every translation of a sentence lands
on the same side and the held-out sentences are ones the model never saw; all of a test
sentence's translations are its references.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .text import text_lines
from .vocab import UNK, Vocab

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (UNK, PAD, BOS, EOS)
PRESETS = ("tutorial", "full")
MAX_TOKENS = 10  # the tutorial's MAX_LENGTH: both sides strictly shorter
ENGLISH_PREFIXES = ("i am ", "i m ", "he is", "he s ", "she is", "she s ", "you are", "you re ",
                    "we are", "we re ", "they are", "they re ")

_FOLDED = str.maketrans({"\u202f": " ", "\u00a0": " ", "\u0153": "oe", "\u00e6": "ae"})
_PUNCTUATION = re.compile(r"([.!?])")
_NOT_KEPT = re.compile(r"[^a-z.!?]+")


# ----- text ----------------------------------------------------------------------------------------

def normalize(text: str) -> str:
    """The tutorial's normalisation: ASCII letters and `. ! ?`, lower case, single spaces."""
    text = unicodedata.normalize("NFD", text.lower().translate(_FOLDED))
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")  # accents off: e + ´ -> e
    text = _PUNCTUATION.sub(r" \1", text)
    return _NOT_KEPT.sub(" ", text).strip()


def tokenize(sentence: str) -> list[str]:
    """A normalised sentence's tokens."""
    return sentence.split()


def read_pairs(path) -> list[tuple[str, str]]:
    """The raw (source, target) columns of a tab-separated file, in file order, blank lines skipped.

    A missing, empty, binary or non-UTF-8 file, or a line without a tab, is a ValueError naming
    the file (and the line).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"{path} {what}; give a tab-separated file of sentence pairs (source<TAB>target).")
    data = path.read_bytes()
    if b"\0" in data:
        raise ValueError(f"{path} is a binary file, not tab-separated sentence pairs.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         "convert it to UTF-8 first.") from None
    pairs = []
    for number, line in enumerate(text_lines(text), 1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) < 2:
            raise ValueError(f"{path} line {number} must hold two tab-separated sentences (source<TAB>target), "
                             f"but holds {line[:60]!r}.")
        pairs.append((columns[0], columns[1]))
    if not pairs:
        raise ValueError(f"{path} holds no sentence pairs; expected lines of source<TAB>target.")
    return pairs


def is_tutorial_pair(source: str, target: str, max_tokens: int = MAX_TOKENS) -> bool:
    """The tutorial's filter on a normalised pair (English source): short, and a "we are ..." sentence."""
    return (len(source.split(" ")) < max_tokens and len(target.split(" ")) < max_tokens
            and source.startswith(ENGLISH_PREFIXES))


def load_pairs(path, preset: str = "tutorial") -> list[tuple[str, str]]:
    """Normalised (source, target) pairs of the file under a preset; pairs with an empty side are dropped."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, but was given {preset!r}.")
    pairs = [(normalize(s), normalize(t)) for s, t in read_pairs(path)]
    pairs = [(s, t) for s, t in pairs if s and t]
    if preset == "tutorial":
        pairs = [(s, t) for s, t in pairs if is_tutorial_pair(s, t)]
    if not pairs:
        raise ValueError(f"{path} has no sentence pairs left under the {preset!r} preset; "
                         "the tutorial preset keeps English sources such as 'I am ...' or 'They're ...'.")
    return pairs


# ----- splits --------------------------------------------------------------------------------------

def split_pairs(pairs, test_fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """(train, test): a seeded `test_fraction` of the distinct source sentences, with all their pairs.

    Both lists keep file order. The same pairs, fraction and seed always give the same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, but was given {test_fraction!r}.")
    sources = sorted({s for s, _ in pairs})
    n_test = int(round(len(sources) * test_fraction))
    if n_test == 0 or n_test == len(sources):
        raise ValueError(f"splitting {len(sources)} distinct source sentences at test_fraction={test_fraction} "
                         "leaves one side empty; give more pairs.")
    order = np.random.default_rng(seed).permutation(len(sources))
    held_out = {sources[i] for i in order[:n_test]}
    train = [p for p in pairs if p[0] not in held_out]
    test = [p for p in pairs if p[0] in held_out]
    return train, test


def references(pairs) -> tuple[list[str], list[list[str]]]:
    """(distinct sources in first-seen order, for each the list of its targets)."""
    grouped: dict[str, list[str]] = {}
    for s, t in pairs:
        grouped.setdefault(s, []).append(t)
    return list(grouped), list(grouped.values())


# ----- vocabularies and ids --------------------------------------------------------------------------

def build_vocab(sentences, min_freq: int = 1, max_size: int | None = None) -> Vocab:
    """A Vocab over the sentences' tokens with the specials <unk>, <pad>, <bos>, <eos> (ids 0..3)."""
    return Vocab((tok for s in sentences for tok in tokenize(s)), min_freq=min_freq, max_size=max_size,
                 specials=SPECIALS)


def check_vocab(vocab: Vocab, name: str) -> Vocab:
    """`vocab` if it has the translation specials at ids 0..3."""
    if tuple(vocab.itos[:len(SPECIALS)]) != SPECIALS:
        raise ValueError(f"the {name} vocabulary must start with the specials {SPECIALS}, "
                         f"but starts with {tuple(vocab.itos[:len(SPECIALS)])}.")
    return vocab


def encode(vocab: Vocab, sentence: str) -> np.ndarray:
    """int64 ids of a normalised sentence's tokens (unknown words -> <unk>), no <bos>/<eos>."""
    return vocab.encode(tokenize(sentence))


def decode(vocab: Vocab, ids) -> str:
    """A sentence from ids, stopping before the first <eos> and leaving out <pad> and <bos>."""
    tokens = []
    for tok in vocab.decode(np.asarray(ids, dtype=np.int64)):
        if tok == EOS:
            break
        if tok not in (PAD, BOS):
            tokens.append(tok)
    return " ".join(tokens)


def pad_batch(sequences, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged id sequences -> (ids (T, B) time-major, padded with `pad_id`; lengths (B,))."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    out = np.full((int(lengths.max()), len(sequences)), pad_id, dtype=np.int64)  # (T, B)
    for b, s in enumerate(sequences):
        out[:len(s), b] = s
    return out, lengths


@dataclass
class Batch:
    """One batch of pairs, time-major. tgt_in is <bos> + target, tgt_out is target + <eos>."""

    src: np.ndarray           # int64 (S, B), <pad> after each source's length
    src_lengths: np.ndarray   # int64 (B,), each >= 1
    tgt_in: np.ndarray        # int64 (T, B)
    tgt_out: np.ndarray       # int64 (T, B), <pad> where there is nothing to predict

    @property
    def n_tokens(self) -> int:
        """Target tokens to predict (eos included, padding not)."""
        return int((self.tgt_out != SPECIALS.index(PAD)).sum())


def make_batch(pairs, src_vocab: Vocab, tgt_vocab: Vocab) -> Batch:
    """A Batch of normalised (source, target) pairs."""
    pad, bos, eos = (SPECIALS.index(t) for t in (PAD, BOS, EOS))
    src, src_lengths = pad_batch([encode(src_vocab, s) for s, _ in pairs], pad)
    if src_lengths.min() < 1:
        raise ValueError("every source sentence must hold at least one token, but an empty one was given.")
    targets = [encode(tgt_vocab, t) for _, t in pairs]
    tgt_in, _ = pad_batch([np.r_[bos, t] for t in targets], pad)
    tgt_out, _ = pad_batch([np.r_[t, eos] for t in targets], pad)
    return Batch(src, src_lengths, tgt_in, tgt_out)


class PairBatcher:
    """Shuffled batches of similar source lengths, the same for the same (seed, epoch).

    Each epoch shuffles the pairs, sorts each pool of 50 batches' worth by source length (less
    padding), cuts the pools into batches and shuffles the batch order.
    """

    POOL = 50

    def __init__(self, pairs, src_vocab: Vocab, tgt_vocab: Vocab, batch_size: int, seed: int = 0):
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, but was given {batch_size!r}.")
        if not pairs:
            raise ValueError("PairBatcher needs at least one sentence pair, but was given none.")
        self.pairs = list(pairs)
        self.src_vocab, self.tgt_vocab = check_vocab(src_vocab, "source"), check_vocab(tgt_vocab, "target")
        self.batch_size, self.seed = int(batch_size), seed
        self.src_lengths = np.array([len(tokenize(s)) for s, _ in self.pairs])

    def __len__(self) -> int:
        return -(-len(self.pairs) // self.batch_size)

    def order(self, epoch: int) -> list[np.ndarray]:
        """The pair indices of every batch of `epoch`, in the order they are served."""
        rng = np.random.default_rng([self.seed, epoch])
        idx = rng.permutation(len(self.pairs))
        pool = self.POOL * self.batch_size
        batches = []
        for start in range(0, len(idx), pool):
            chunk = idx[start:start + pool]
            chunk = chunk[np.argsort(self.src_lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def batch(self, indices) -> Batch:
        return make_batch([self.pairs[i] for i in indices], self.src_vocab, self.tgt_vocab)

    def epoch(self, epoch: int):
        """Every batch of `epoch`, in order."""
        for indices in self.order(epoch):
            yield self.batch(indices)
