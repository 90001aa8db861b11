"""Vocab: the token <-> id mapping of a language model, saved beside its checkpoint as JSON.

    vocab = Vocab(tokens, min_freq=2, max_size=10_000, specials=("<unk>", "<eos>"))
    ids = vocab.encode(tokens)                   # int64 (N,), unknown tokens -> <unk>
    vocab.encode(prompt_tokens, strict=True)     # ValueError naming the first unknown token
    vocab.save(run / "vocab.json"); Vocab.load(run / "vocab.json")

Ids: the special tokens first, in the order given (`<unk>` is always id 0), then every token seen
at least `min_freq` times, most frequent first, ties in code-point order, so the same text always
gives the same ids. `max_size` caps the total, specials included.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..runs import atomic_write_text

UNK = "<unk>"
_FORMAT = "unrolled.vocab"


class Vocab:
    """Token <-> id mapping. `itos[i]` is the token of id i; `stoi[token]` its id.

    tokens: the training token stream (any iterable of strings), counted once.
    min_freq: rarer tokens are left out and encode as `<unk>`.
    max_size: at most this many ids in all, specials included (None: no cap).
    specials: reserved tokens taking the first ids in the order given; the first must be `<unk>`
    (add "<pad>", "<bos>", "<eos>" where a task needs them: `vocab.stoi["<eos>"]`).
    """

    def __init__(self, tokens=(), min_freq: int = 1, max_size: int | None = None, specials=(UNK,)):
        specials = tuple(specials)
        if not specials or specials[0] != UNK or len(set(specials)) != len(specials):
            raise ValueError(f"specials must be distinct tokens starting with {UNK!r}, but was given {specials}.")
        if not isinstance(min_freq, (int, np.integer)) or min_freq < 1:
            raise ValueError(f"min_freq must be an integer >= 1, but was given {min_freq!r}.")
        if max_size is not None and (not isinstance(max_size, (int, np.integer)) or max_size <= len(specials)):
            raise ValueError(
                f"max_size must be an integer above the {len(specials)} special tokens, "
                f"but was given {max_size!r}."
            )
        counts = Counter(tokens)
        kept = [t for t, c in counts.items() if c >= min_freq and t not in specials]
        kept.sort(key=lambda t: (-counts[t], t))  # most frequent first, ties in code-point order
        if max_size is not None:
            kept = kept[: max_size - len(specials)]
        self._set(specials, list(specials) + kept)

    def _set(self, specials: tuple, itos: list) -> None:
        self.specials = specials
        self.itos = itos
        self.stoi = {t: i for i, t in enumerate(itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, specials={self.specials})"

    @property
    def unk_id(self) -> int:
        return 0

    def encode(self, tokens, strict: bool = False) -> np.ndarray:
        """Token ids as int64 (N,). Unknown tokens become `<unk>`, or with `strict` a ValueError."""
        stoi = self.stoi
        if strict:
            for t in tokens:
                if t not in stoi:
                    raise ValueError(
                        f"The token {t!r} is not in the vocabulary of {len(self)} tokens (those seen in "
                        "training, or the most frequent of them when the vocabulary was capped)."
                    )
        return np.fromiter((stoi.get(t, 0) for t in tokens), dtype=np.int64)

    def decode(self, ids) -> list[str]:
        """The tokens of `ids` (any integer sequence or array)."""
        ids = np.asarray(ids)
        if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(
                f"ids must be integers in 0..{len(self) - 1}, "
                f"but were given {ids.dtype} values from {ids.min()} to {ids.max()}."
            )
        itos = self.itos
        return [itos[i] for i in ids.ravel().tolist()]

    # ----- JSON -----------------------------------------------------------------------------

    def to_json(self) -> str:
        """The vocabulary as a JSON string (format name, specials, and every token in id order)."""
        data = {"format": _FORMAT, "version": 1, "specials": list(self.specials), "itos": self.itos}
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | dict) -> "Vocab":
        """The Vocab that `to_json` wrote (the JSON string, or the dict it decodes to)."""
        return cls._from_json(text, "The vocabulary JSON")

    @classmethod
    def _from_json(cls, text: str | dict, where: str) -> "Vocab":
        try:
            data = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} is not valid JSON ({e.msg} at line {e.lineno}).") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(
                f"{where} must be an object with format {_FORMAT!r}, but was given {str(text)[:60]!r}."
            )
        itos, specials = data.get("itos"), data.get("specials")
        if not (
            isinstance(itos, list) and isinstance(specials, list) and specials and specials[0] == UNK
            and all(isinstance(t, str) for t in itos) and len(set(itos)) == len(itos)
            and itos[: len(specials)] == specials
        ):
            raise ValueError(
                f"{where} must list distinct string tokens in 'itos', starting with its 'specials' "
                f"(first {UNK!r}), but does not."
            )
        vocab = cls.__new__(cls)
        vocab._set(tuple(specials), itos)
        return vocab

    def save(self, path) -> None:
        """Write the JSON atomically: a temporary file in the same folder, fsync, then rename."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path) -> "Vocab":
        """Read a vocabulary written by `save`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist; expected a vocabulary saved by Vocab.save.") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} cannot be read as a vocabulary ({e}).") from None
        return cls._from_json(text, str(path))
