"""A recurrent text classifier: Embedding -> (bi)directional RNN/LSTM/GRU -> pooling -> Dropout -> Linear.

    model = TextClassifier(vocab_size=30_000, num_classes=2, cell="gru", bidirectional=True, pooling="max",
                           embed_dropout=0.25, dropout=0.5)
    logits = model(ids, lengths)         # ids (B, T) int64 padded, lengths (B,) -> (B,) binary, (B, C) else
    loss, dlogits = model.loss(logits, labels)
    model.backward(dlogits)              # gradients of every weight, through the whole model
    probs = model.predict_proba(ids, lengths)   # (B, C), keeps no cache

Pooling reads only each review's valid steps, so padding never changes a prediction:
- "last": the final state of each direction (the forward one after the review's last word, the
  reverse one after its first), taken from the layer's h_n;
- "mean": the average of the top layer's outputs over the valid steps;
- "max": the largest value of each feature over the valid steps (its gradient goes to that step).

While training, `embed_dropout` drops whole words (every component of a word's vector at once,
the rest scaled by 1/(1-p)), so the model cannot lean on a few telltale words; `recurrent_dropout`
masks the state in the recurrent layer's recurrent products (one mask per review, see
unrolled.rnn.kernels); `dropout` acts on the pooled features.

Two classes use one logit and the binary cross-entropy (probability of class 1 = sigmoid); more
use one logit per class and the softmax cross-entropy. Layer names: `embedding`, `rnn` (PyTorch's
recurrent names inside), `fc`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core import init
from ..core.checks import as_array, check_lengths, check_sizes, counted
from ..core.functional import bce_with_logits, cross_entropy, sigmoid, softmax
from ..core.module import Module, no_grad
from ..layers import Dropout, Embedding, Linear
from ..rnn import GRU, LSTM, RNN

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
POOLINGS = ("last", "mean", "max")


class TextClassifier(Module):
    """Classifies padded id sequences into `num_classes` classes (see the module docstring)."""

    def __init__(self, vocab_size: int, num_classes: int = 2, embed: int = 128, hidden: int = 64, layers: int = 1,
                 cell: str = "gru", bidirectional: bool = True, pooling: str = "max", dropout: float = 0.0,
                 embed_dropout: float = 0.0, padding_idx: int | None = None, dtype=np.float32, seed=None,
                 recurrent_dropout: float = 0.0):
        super().__init__()
        check_sizes(vocab_size=vocab_size, embed=embed, hidden=hidden, layers=layers)
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, but was given {num_classes!r}.")
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, but was given {cell!r}.")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, but was given {pooling!r}.")
        for name, p in (("dropout", dropout), ("embed_dropout", embed_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), but was given {p}.")
        rng = init.as_generator(seed)
        self.rng = rng                                              # word dropout's masks
        self.vocab_size, self.num_classes = int(vocab_size), int(num_classes)
        self.embed, self.hidden, self.layers = int(embed), int(hidden), int(layers)
        self.cell, self.bidirectional, self.pooling = cell, bool(bidirectional), pooling
        self.directions = 2 if bidirectional else 1
        self.embed_dropout = float(embed_dropout)
        self.dtype = np.dtype(dtype)
        self.embedding = Embedding(vocab_size, embed, padding_idx=padding_idx, dtype=dtype, seed=rng)
        self.rnn = CELLS[cell](embed, hidden, num_layers=layers, bidirectional=bidirectional,
                               dropout=dropout if layers > 1 else 0.0, dtype=dtype, seed=rng,
                               recurrent_dropout=recurrent_dropout)
        self.drop = Dropout(dropout, seed=rng)
        self.fc = Linear(self.directions * hidden, 1 if num_classes == 2 else num_classes, dtype=dtype, seed=rng)

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, num_classes={self.num_classes}, embed={self.embed}, "
                f"hidden={self.hidden}, layers={self.layers}, cell={self.cell!r}, "
                f"bidirectional={self.bidirectional}, pooling={self.pooling!r}")

    # ----- forward and backward -------------------------------------------------------------

    def _check(self, ids, lengths) -> tuple[np.ndarray, np.ndarray]:
        ids = as_array(ids, "ids", 2)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must hold integer token ids, but was given dtype {ids.dtype}.")
        B, T = ids.shape
        if B == 0 or T == 0:
            raise ValueError(f"ids must hold at least one token of one text, but was given shape {ids.shape}.")
        lengths = np.full(B, T, dtype=np.int64) if lengths is None else check_lengths(lengths, B, T)
        return ids, lengths

    def features(self, ids, lengths=None) -> np.ndarray:
        """ids (B, T), lengths (B,) -> pooled features (B, D*H), before dropout and the head."""
        ids, lengths = self._check(ids, lengths)
        x = self.embedding(ids.T)                                   # (T, B, E)
        words = None
        if self.training and self.embed_dropout > 0:
            keep = 1.0 - self.embed_dropout
            words = (self.rng.random(x.shape[:2] + (1,)) < keep).astype(self.dtype)   # (T, B, 1): 0 drops a word
            words /= self.dtype.type(keep)
            x = x * words
        out, state = self.rnn(x, lengths=lengths)                   # (T, B, D*H)
        h_n = state[0] if self.cell == "lstm" else state            # (L*D, B, H)
        T, B, F = out.shape
        if self.pooling == "last":
            top = h_n[-self.directions:]                            # (D, B, H)
            pooled = np.concatenate(list(top), axis=1)              # (B, D*H)
            self._save(("last", None, words, (T, B, F)))
        elif self.pooling == "mean":
            pooled = out.sum(axis=0) / lengths[:, None].astype(self.dtype)   # (B, D*H); padding is zero
            self._save(("mean", lengths, words, (T, B, F)))
        else:
            valid = np.arange(T)[:, None] < lengths                 # (T, B)
            masked = np.where(valid[..., None], out, -np.inf)       # (T, B, D*H)
            where = masked.argmax(axis=0)                           # (B, D*H)
            pooled = np.take_along_axis(out, where[None], axis=0)[0]   # (B, D*H)
            self._save(("max", where, words, (T, B, F)))
        return pooled

    def forward(self, ids, lengths=None) -> np.ndarray:
        """ids (B, T) padded, lengths (B,) or None (all T) -> logits (B,) for two classes, else (B, C)."""
        logits = self.fc(self.drop(self.features(ids, lengths)))   # (B, 1 or C)
        return logits[:, 0] if self.num_classes == 2 else logits

    def backward(self, dlogits) -> None:
        """Back-propagate dlogits (shaped like the logits) into every weight; ids have no gradient."""
        dlogits = np.asarray(dlogits, dtype=self.dtype)
        d_pooled = self.drop.backward(self.fc.backward(dlogits[:, None] if self.num_classes == 2 else dlogits))
        kind, saved, words, (T, B, F) = self._restore()
        H, D = self.hidden, self.directions
        if kind == "last":
            d_h_n = np.zeros((self.layers * D, B, H), self.dtype)  # (L*D, B, H)
            d_h_n[-D:] = d_pooled.reshape(B, D, H).transpose(1, 0, 2)
            d_state = (d_h_n, None) if self.cell == "lstm" else d_h_n
            dx, _ = self.rnn.backward(None, d_state)
        else:
            d_out = np.zeros((T, B, F), self.dtype)                 # (T, B, D*H)
            if kind == "mean":
                lengths = saved
                d_out[...] = d_pooled / lengths[:, None].astype(self.dtype)
                d_out[np.arange(T)[:, None] >= lengths] = 0         # padded steps have no output
            else:
                np.put_along_axis(d_out, saved[None], d_pooled[None], axis=0)
            dx, _ = self.rnn.backward(d_out)
        self.embedding.backward(dx if words is None else dx * words)   # (T, B, E)

    # ----- loss and prediction --------------------------------------------------------------

    def loss(self, logits: np.ndarray, labels) -> tuple[float, np.ndarray]:
        """Mean cross-entropy of the logits against integer labels (B,), and its gradient."""
        labels = np.asarray(labels)
        if self.num_classes == 2:
            loss, grad = bce_with_logits(logits, labels.astype(logits.dtype))
        else:
            loss, grad = cross_entropy(logits, labels)
        return float(loss), grad

    def predict_proba(self, ids, lengths=None) -> np.ndarray:
        """Class probabilities (B, C) in eval mode; keeps no cache and leaves the mode as it was."""
        training = self.training
        self.eval()
        try:
            with no_grad():
                logits = self.forward(ids, lengths)
        finally:
            self.train(training)
        return self.probabilities(logits)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Logits (B,) or (B, C) -> class probabilities (B, C) in float64."""
        if self.num_classes == 2:
            p = sigmoid(logits.astype(np.float64))                  # (B,)
            return np.stack([1 - p, p], axis=1)
        return softmax(logits.astype(np.float64), axis=-1)


def load_word_vectors(path, vocab, embed: int) -> tuple[dict[int, np.ndarray], int]:
    """Vectors of the vocabulary's words from a word2vec/GloVe text file: ({id: vector}, rows read).

    One word per line followed by `embed` numbers; a word2vec header line "<count> <dim>" is
    skipped. Words outside the vocabulary are ignored; a missing, empty or non-UTF-8 file, a line
    with the wrong number of values and a vocabulary word's value that is not a finite number are
    errors naming the file (and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--vectors {path} " + ("is a folder, not a file of word vectors." if path.is_dir()
                                                 else "does not exist."))
    found, read = {}, 0
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            for number, line in enumerate(f, 1):
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue
                if not line.strip():
                    continue
                if len(parts) != embed + 1:
                    raise ValueError(f"expected a word and {embed} numbers on line {number} of {path}, "
                                     f"but found {counted(len(parts) - 1, 'value')}.")
                read += 1
                index = vocab.stoi.get(parts[0])
                if index is not None and index not in found:
                    found[index] = _finite_vector(parts[1:], f"line {number} of --vectors {path}")
    except UnicodeDecodeError:
        raise ValueError(f"--vectors {path} is not UTF-8 text (line {_first_bad_line(path)}).") from None
    if not read:
        raise ValueError(f"--vectors {path} holds no word vectors.")
    return found, read


def _first_bad_line(path: Path) -> int:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return raw.count(b"\n", 0, e.start) + 1
    return 1


def _finite_vector(values: list[str], where: str) -> np.ndarray:
    try:
        vector = np.array(values, dtype=np.float64)
    except ValueError:
        vector = np.array([np.nan])
    if not np.isfinite(vector.astype(np.float32)).all():                    # float32 is what the model holds
        raise ValueError(f"{where} holds a value that is not a finite number in float32.")
    return vector
