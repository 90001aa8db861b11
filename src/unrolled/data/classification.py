"""Text classification data: review tokens, a vocabulary, truncation, padding and length buckets.

    tokens = ReviewTokenizer().tokenize("Great film!<br /><br />I loved it.")
    # ['great', 'film', '!', 'i', 'loved', 'it']
    vocab = build_vocab(token_lists, min_freq=2, max_size=30_000)     # <unk> = 0, <pad> = 1
    ids = truncate(vocab.encode(tokens), 400, keep="both")
    batch, lengths = pad_batch([ids_a, ids_b], pad_id=vocab.stoi[PAD])  # (B, T) int64, (B,)
    for index in bucket_batches(seq_lengths, 64, rng): ...               # similar lengths together

Padding is exact: the recurrent layers take `lengths`, so a review gives the same prediction alone
or in a padded batch. Bucketing only decides which reviews share a batch, so that little of the
batch is padding and the recurrence runs few wasted steps.
"""
from __future__ import annotations

import re

import numpy as np

from .vocab import UNK, Vocab

PAD = "<pad>"
TRUNCATIONS = ("head", "tail", "both")

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-z][^>]{0,40}>", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*|[!?]")


class ReviewTokenizer:
    """Lower-cased words of a review, with `!` and `?` kept as tokens of their own.

    HTML line breaks (`<br />`) and other short tags become spaces. A word is a run of letters and
    digits with inner apostrophes (`don't`, `90's`); every other punctuation mark separates words
    and is dropped, except `!` and `?`, which carry sentiment ("worst film ever!!!").
    """

    def tokenize(self, text: str) -> list[str]:
        text = _TAG.sub(" ", _BREAK.sub(" ", text)).lower()
        return _WORD.findall(text)

    def __repr__(self) -> str:
        return "ReviewTokenizer()"


def build_vocab(token_lists, min_freq: int = 1, max_size: int | None = None) -> Vocab:
    """A Vocab over every token of `token_lists` (one list per text) with `<unk>` = 0 and `<pad>` = 1."""
    return Vocab((t for tokens in token_lists for t in tokens), min_freq=min_freq, max_size=max_size,
                 specials=(UNK, PAD))


def truncate(ids: np.ndarray, max_len: int | None, keep: str = "head") -> np.ndarray:
    """At most `max_len` ids: the first ones ("head"), the last ones ("tail"), or half of each ("both")."""
    if keep not in TRUNCATIONS:
        raise ValueError(f"keep must be one of {', '.join(TRUNCATIONS)}, but was given {keep!r}.")
    if max_len is None or len(ids) <= max_len:
        return ids
    if keep == "head":
        return ids[:max_len]
    if keep == "tail":
        return ids[len(ids) - max_len:]
    head = (max_len + 1) // 2
    return np.concatenate([ids[:head], ids[len(ids) - (max_len - head):]])


def pad_batch(sequences, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Id sequences -> ids (B, T) int64 padded with `pad_id` on the right, lengths (B,) int64.

    Every sequence must hold at least one id (the recurrent layers need lengths >= 1).
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError(f"pad_batch needs one or more sequences of at least one id each, "
                         f"but was given lengths {lengths.tolist()[:10]}.")
    ids = np.full((len(sequences), int(lengths.max())), pad_id, dtype=np.int64)  # (B, T)
    for row, s in enumerate(sequences):
        ids[row, :len(s)] = s
    return ids, lengths


def bucket_batches(lengths, batch_size: int, rng: np.random.Generator | None = None,
                   pool: int = 50) -> list[np.ndarray]:
    """Indices of examples grouped into batches of similar length.

    With `rng`: shuffle, then sort each pool of `pool * batch_size` examples by length, cut it into
    batches and shuffle the batch order, so epochs differ while padding stays small. Without `rng`
    (evaluation): every example sorted by length, longest first.
    """
    lengths = np.asarray(lengths)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, but was given {batch_size!r}.")
    if rng is None:
        order = np.argsort(-lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    order = rng.permutation(len(lengths))
    size = pool * batch_size
    batches = []
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
