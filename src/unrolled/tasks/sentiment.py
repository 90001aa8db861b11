"""Sentiment classification: train a recurrent classifier on labelled texts, predict, explain.

    config = config_from(data="aclImdb_v1.tar.gz", cell="gru", minutes=20)
    run, state, interrupted = train(config, "runs/imdb")
    predict_texts("runs/imdb", ["A wonderful, moving film.", "Dull and far too long."])

Training reads the data (IMDB tarball or folder, CSV/TSV, VADER ratings), tokenises each review
(lower case, `<br />` and punctuation removed but `!` and `?`), builds the vocabulary on the
training texts only, truncates each review to `max_len` tokens (keeping its head, tail or both)
and holds out `val_fraction` of the training texts for validation; a source without a test split
gives `test_fraction` of its texts to the test set. Batches are drawn in length buckets, padded,
and the recurrence runs with exact `lengths`. Adam with gradient-norm clipping, a short warm-up
and a cosine decay. Every evaluation logs `val_loss` and `val_accuracy`; at the end the best
checkpoint (lowest validation loss) is scored on the test set: `test_accuracy` in
metrics.jsonl and everything else in results.json.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import fit_weights, has_checkpoint, load_checkpoint, load_weights
from ..core.module import no_grad
from ..data.classification import PAD, TRUNCATIONS, ReviewTokenizer, bucket_batches, build_vocab, pad_batch, truncate
from ..data.sentiment_sources import Examples, LabelledData, load_labelled
from ..data.vocab import Vocab
from ..models.classifier import POOLINGS, TextClassifier, load_word_vectors
from ..optim import Adam, AdamW
from ..runs import append_metrics, create_run, finished, load_config, outside_runs, read_metrics, write_json
from ..train import RunConfig, TrainState, budget_given, fit, resume, save_training_state, warmup_cosine

TASK = "sentiment"
VOCAB = "vocab.json"
RESULTS = "results.json"
DEFAULT_DATA = "../shared/data/imdb/aclImdb_labelled.tar.gz"
LENGTH_BUCKETS = (0, 100, 200, 400, 800)       # review length in tokens, before truncation


@dataclass
class Config(RunConfig):
    """Everything a sentiment run depends on (saved as the run's config.json); defaults: the best found."""

    TASK, KIND = TASK, "a sentiment"  # config.json's "task"; messages

    data: str = DEFAULT_DATA
    text_column: str = "text"        # CSV/TSV only
    label_column: str = "label"
    cell: str = "gru"
    bidirectional: bool = True
    layers: int = 1
    embed: int = 256
    hidden: int = 128
    pooling: str = "max"
    dropout: float = 0.5             # on the pooled features
    embed_dropout: float = 0.0       # whole words dropped while training
    recurrent_dropout: float = 0.0   # on the state in every recurrent product, one mask per review
    vectors: str | None = None       # word2vec/GloVe text file of `embed`-dimensional vectors
    max_len: int = 800               # tokens kept per review
    truncation: str = "both"         # keep the "head", the "tail" or "both" ends of a long review
    min_freq: int = 2
    max_vocab: int = 30_000
    val_fraction: float = 0.04       # of the training texts
    test_fraction: float = 0.2       # of all texts, for sources without a test split
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0        # AdamW's decoupled decay when > 0
    warmup: float = 0.02
    min_lr_ratio: float = 0.05
    clip: float = 5.0
    epochs: int | None = 3
    minutes: float | None = None
    eval_every: int = 100
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        checks = (("cell", self.cell in ("rnn", "lstm", "gru"), "rnn, lstm or gru"),
                  ("pooling", self.pooling in POOLINGS, " or ".join(POOLINGS)),
                  ("truncation", self.truncation in TRUNCATIONS, " or ".join(TRUNCATIONS)),
                  ("val_fraction", 0 < self.val_fraction < 1, "a fraction in (0, 1)"),
                  ("test_fraction", 0 < self.test_fraction < 1, "a fraction in (0, 1)"))
        for name, ok, wanted in checks:
            if not ok:
                raise ValueError(f"{name} must be {wanted}, but was given {getattr(self, name)!r}.")
        if self.max_vocab is not None and self.max_vocab < 3:
            raise ValueError(f"--max-vocab must be at least 3 (two ids are <unk> and <pad>), but was given "
                             f"{self.max_vocab!r}.")
        self.budget  # a contradictory budget fails here


def config_from(**overrides) -> Config:
    """Config defaults, then `overrides` (a budget, epochs or minutes, replaces the default one)."""
    return Config(**budget_given(overrides))


# ----- data ----------------------------------------------------------------------------------------

@dataclass
class Encoded:
    ids: list[np.ndarray]        # truncated id sequences, each of at least one id
    labels: np.ndarray           # int64 (N,)
    tokens: np.ndarray           # int64 (N,) length in tokens before truncation

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Prepared:
    vocab: Vocab
    classes: list[str]
    train: Encoded
    val: Encoded
    test: Encoded
    source: str


def encode(texts, labels, vocab: Vocab, config: Config, tokenizer=ReviewTokenizer()) -> Encoded:
    """Tokenise, encode and truncate; a text without a single token becomes one <unk>."""
    ids, lengths = [], []
    for text in texts:
        tokens = tokenizer.tokenize(text)
        lengths.append(len(tokens))
        seq = vocab.encode(tokens) if tokens else np.zeros(1, dtype=np.int64)
        ids.append(truncate(seq, config.max_len, config.truncation))
    return Encoded(ids, np.asarray(labels, dtype=np.int64), np.array(lengths, dtype=np.int64))


def _held(n: int, fraction: float) -> int:
    """How many of n texts a split holds out (at least one)."""
    return max(1, int(round(fraction * n)))


def _split(examples: Examples, fraction: float, rng: np.random.Generator) -> tuple[Examples, Examples]:
    order = rng.permutation(len(examples))
    n_held = _held(len(examples), fraction)
    held, kept = np.sort(order[:n_held]), np.sort(order[n_held:])
    return tuple(Examples([examples.texts[i] for i in rows], examples.labels[rows]) for rows in (kept, held))


def _fewest_texts(config: Config, own_test: bool) -> int:
    """The fewest training texts (all texts, without a test split of the source's own) that leave at
    least one text for training after the test and validation texts are held out."""
    n = 1
    while True:
        n += 1
        kept = n if own_test else n - _held(n, config.test_fraction)
        if kept - _held(kept, config.val_fraction) >= 1:
            return n


def _check_data(data: LabelledData, config: Config) -> None:
    """Enough texts to split, and more than one label among them."""
    fewest = _fewest_texts(config, data.test is not None)
    if len(data.train) < fewest:
        what = "training texts" if data.test is not None else "texts"
        raise ValueError(f"expected at least {fewest} labelled {what} in {config.data} (some are held out for "
                         f"validation{'' if data.test is not None else ' and testing'}), but it has {len(data.train)}.")
    present = np.unique(np.concatenate([data.train.labels] + ([data.test.labels] if data.test is not None else [])))
    if len(present) < 2:
        raise ValueError(f"the data in {config.data} has only one label ({data.classes[present[0]]!r}); "
                         "a classifier needs at least two.")


def load(config: Config) -> LabelledData:
    """The labelled texts of --data; without it, the IMDB tarball at DEFAULT_DATA, a path relative to
    the current folder (the repository's root, with the shared data beside it)."""
    if config.data == DEFAULT_DATA and not Path(DEFAULT_DATA).exists():
        raise ValueError(f"without --data the IMDB reviews are read from {DEFAULT_DATA}, relative to the current "
                         f"folder ({Path.cwd()}), and they are not there; run from the repository's root (beside "
                         "../shared) or give --data PATH (an IMDB tarball or folder, a .csv/.tsv file or VADER "
                         "files).")
    return load_labelled(config.data, config.text_column, config.label_column)


def prepare(config: Config, vocab: Vocab | None = None, data: LabelledData | None = None) -> Prepared:
    """Load, split, build the vocabulary (unless given) and encode every split."""
    data = data or load(config)
    _check_data(data, config)
    rng = np.random.default_rng([config.seed, 7])
    train, test = data.train, data.test
    if test is None:
        train, test = _split(train, config.test_fraction, rng)
    train, val = _split(train, config.val_fraction, rng)
    tokenizer = ReviewTokenizer()
    if vocab is None:
        vocab = build_vocab((tokenizer.tokenize(t) for t in train.texts), config.min_freq, config.max_vocab)
    return Prepared(vocab, data.classes, *(encode(s.texts, s.labels, vocab, config, tokenizer)
                                           for s in (train, val, test)), data.source)


def data_digest(prepared: Prepared) -> str:
    """SHA-256 of the encoded training texts and labels: a resumed run checks its data did not change."""
    h = hashlib.sha256()
    for ids in prepared.train.ids:
        h.update(ids.tobytes())
    h.update(prepared.train.labels.tobytes())
    return h.hexdigest()


# ----- the model ---------------------------------------------------------------------------------

def build(config: Config, vocab: Vocab, num_classes: int) -> TextClassifier:
    model = TextClassifier(len(vocab), num_classes, embed=config.embed, hidden=config.hidden, layers=config.layers,
                           cell=config.cell, bidirectional=config.bidirectional, pooling=config.pooling,
                           dropout=config.dropout, embed_dropout=config.embed_dropout, padding_idx=vocab.stoi[PAD],
                           seed=config.seed, recurrent_dropout=config.recurrent_dropout)
    if config.vectors is not None:
        found, _ = load_word_vectors(config.vectors, vocab, config.embed)
        for row, vector in found.items():
            model.embedding.weight.data[row] = vector
    return model


def evaluate(model: TextClassifier, data: Encoded, batch: int = 256) -> dict:
    """Loss, accuracy and every prediction over `data` (in length buckets, each text scored once)."""
    probs = np.zeros((len(data), model.num_classes))
    total = 0.0
    with no_grad():
        for rows in bucket_batches([len(s) for s in data.ids], batch):
            ids, lengths = pad_batch([data.ids[i] for i in rows], pad_id=model.embedding.padding_idx)
            logits = model(ids, lengths)
            total += model.loss(logits.astype(np.float64), data.labels[rows])[0] * len(rows)
            probs[rows] = model.probabilities(logits)
    predicted = probs.argmax(1)
    return {"loss": total / len(data), "accuracy": float((predicted == data.labels).mean()),
            "predicted": predicted, "probs": probs}


class SentimentTask:
    """The `unrolled.train.Task` of a classifier: length-bucketed batches, one review per row."""

    def __init__(self, model: TextClassifier, prepared: Prepared, config: Config):
        self.model, self.prepared, self.config = model, prepared, config
        self.lengths = np.array([len(s) for s in prepared.train.ids])
        self.pad_id = prepared.vocab.stoi[PAD]
        self.batches: list[np.ndarray] = []
        self.last_eval: dict = {}

    def batches_per_epoch(self) -> int:
        return len(bucket_batches(self.lengths, self.config.batch, np.random.default_rng(0)))

    def start_epoch(self, epoch: int) -> None:
        self.batches = bucket_batches(self.lengths, self.config.batch, np.random.default_rng([self.config.seed, epoch]))

    def train_batch(self, epoch: int, index: int) -> tuple[float, int]:
        rows = self.batches[index]
        ids, lengths = pad_batch([self.prepared.train.ids[i] for i in rows], self.pad_id)   # (B, T)
        logits = self.model(ids, lengths)
        loss, dlogits = self.model.loss(logits, self.prepared.train.labels[rows])
        self.model.backward(dlogits)
        return loss, int(lengths.sum())

    def evaluate(self) -> float:
        result = evaluate(self.model, self.prepared.val)
        self.last_eval = {"val_accuracy": result["accuracy"], "load_1min": round(os.getloadavg()[0], 2)}
        return result["loss"]

    def eval_metrics(self) -> dict:
        """Extra fields of the evaluation record just made (see unrolled.train.fit)."""
        return self.last_eval

    def after_eval(self, step: int, val_loss: float) -> None:
        pass

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        pass


def make_optimizer(model: TextClassifier, config: Config, steps_per_epoch: int):
    """Adam (AdamW with weight decay), its schedule for an epoch budget (None for a time budget) and the
    time budget's lr setter."""
    optimizer = (AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay) if config.weight_decay
                 else Adam(model.parameters(), lr=config.lr))
    return (optimizer, *warmup_cosine(optimizer, config, steps_per_epoch))


# ----- scoring -------------------------------------------------------------------------------------

def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def f1_scores(matrix: np.ndarray) -> np.ndarray:
    """Per-class F1 from a confusion matrix (0 where a class is never predicted nor present)."""
    tp = np.diag(matrix).astype(np.float64)
    denominator = matrix.sum(0) + matrix.sum(1)
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def accuracy_by_length(data: Encoded, predicted: np.ndarray, edges=LENGTH_BUCKETS) -> list[dict]:
    """Accuracy per bucket of review length (tokens before truncation)."""
    rows = []
    bounds = list(edges) + [None]
    for low, high in zip(bounds[:-1], bounds[1:]):
        inside = (data.tokens >= low) & (True if high is None else data.tokens < high)
        if inside.any():
            rows.append({"tokens": f"{low}+" if high is None else f"{low}-{high - 1}", "reviews": int(inside.sum()),
                         "accuracy": float((predicted[inside] == data.labels[inside]).mean())})
    return rows


def score(model: TextClassifier, data: Encoded, classes: list[str]) -> dict:
    """Test metrics: loss, accuracy, F1 (positive class when binary, else macro), confusion, by length."""
    result = evaluate(model, data)
    matrix = confusion_matrix(data.labels, result["predicted"], len(classes))
    f1 = f1_scores(matrix)
    return {"loss": result["loss"], "accuracy": result["accuracy"],
            "f1": float(f1[1] if len(classes) == 2 else f1.mean()),
            "f1_per_class": dict(zip(classes, map(float, f1))), "confusion": matrix.tolist(),
            "by_length": accuracy_by_length(data, result["predicted"])}


# ----- training ----------------------------------------------------------------------------------

def train(config: Config, out=None, resume_from=None, progress: bool = True,
          data: LabelledData | None = None) -> tuple[Path, TrainState, bool]:
    """Train a new run into `out`, or continue the run in `resume_from`; returns (run, state, interrupted).

    Everything is checked (data, vocabulary, sizes, budget) before the run folder is touched. When
    training ends within its budget the best weights are scored on the test set (results.json).
    """
    if resume_from is not None:
        run = Path(resume_from)
        config = load_config(run, TASK, Config)
        _, meta = load_checkpoint(run)  # a damaged checkpoint is reported before anything runs
        prepared = prepare(config, Vocab.load(run / VOCAB), data)
        if data_digest(prepared) != meta.get("data_sha256"):
            raise ValueError(f"the data {config.data} has changed since the run in {run} started, "
                             "so it cannot continue exactly; start a new run.")
    else:
        if out is None:
            raise ValueError("give --out DIR (a new run folder) or --resume DIR.")
        prepared = prepare(config, data=data)
    model = build(config, prepared.vocab, len(prepared.classes))
    task = SentimentTask(model, prepared, config)
    optimizer, schedule, set_progress = make_optimizer(model, config, task.batches_per_epoch())
    meta = {"config": "config.json", "vocab": VOCAB, "classes": prepared.classes, "data_sha256": data_digest(prepared)}
    if resume_from is not None:
        state, _ = resume(run, task, optimizer, schedule)
        if finished(run, "test_accuracy"):
            raise ValueError(f"the run in {run} has already spent its budget; start a new run to train longer.")
    else:
        run = create_run(out, config.to_dict())
        prepared.vocab.save(run / VOCAB)
        state = TrainState()
        save_training_state(run, task, optimizer, schedule, state, meta)  # resumable from the first step
    state, interrupted = fit(task, optimizer, schedule, run, config.budget, eval_every=config.eval_every,
                             clip=config.clip, state=state, meta=meta, progress=progress, set_progress=set_progress)
    if not interrupted:
        try:
            finish(run, config, prepared, model, state, task.batches_per_epoch())
        except KeyboardInterrupt:  # stopped while scoring: resuming scores again
            interrupted = True
    return run, state, interrupted


def finish(run: Path, config: Config, prepared: Prepared, model: TextClassifier, state: TrainState,
           steps_per_epoch: int) -> dict:
    """Score the best weights on the test set: results.json, plots, then a test record in metrics.jsonl
    (last, as the mark of a finished run)."""
    from .sentiment_plots import plot_accuracy

    load_weights(model, run)  # the best, else the latest (the weights the model holds already)
    model.eval()
    t0 = time.perf_counter()
    test = score(model, prepared.test, prepared.classes)
    test_s = time.perf_counter() - t0
    val = evaluate(model, prepared.val)
    results = {"cell": config.cell, "bidirectional": config.bidirectional, "pooling": config.pooling,
               "source": prepared.source, "classes": prepared.classes,
               "sizes": {"train": len(prepared.train), "val": len(prepared.val), "test": len(prepared.test),
                         "vocab": len(prepared.vocab)},
               "parameters": model.num_parameters(), "steps": state.step,
               "epochs": round(state.step / steps_per_epoch, 3),
               "train_s": round(state.elapsed_s, 1), "tokens": state.tokens,
               "tokens_per_s": round(state.tokens / state.elapsed_s, 1) if state.elapsed_s else None,
               "test_s": round(test_s, 1), "val_accuracy": val["accuracy"], "test": test}
    metrics = read_metrics(run)
    loads = [m["load_1min"] for m in metrics if m.get("load_1min") is not None]
    results["load_1min"] = round(sum(loads) / len(loads), 2) if loads else None  # the machine's, while training
    write_json(run / RESULTS, results)
    from ..viz import plot_losses
    plot_losses([m for m in metrics if "val_loss" in m], run / "plots" / "loss.png",
                title=f"{config.cell.upper()} sentiment classifier", unit="nats/review")
    plot_accuracy({config.cell.upper(): metrics}, run / "plots" / "accuracy.png")
    append_metrics(run, {"step": state.step, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
                         "test_f1": test["f1"], "val_accuracy_best": val["accuracy"]})
    return results


# ----- using a trained run -----------------------------------------------------------------------

def load_run(run) -> tuple[Config, Vocab, list[str], TextClassifier]:
    """The config, vocabulary, class names and model (best weights when kept) of a run, in eval mode."""
    run = Path(run)
    config = load_config(run, TASK, Config)
    vocab = Vocab.load(run / VOCAB)
    name = "best" if has_checkpoint(run, "best") else "checkpoint"
    arrays, meta = load_checkpoint(run, name)
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise ValueError(f"expected the class names in the checkpoint of {run}, but found {classes!r}.")
    config = dataclasses.replace(config, vectors=None)  # the weights already hold them
    model = build(config, vocab, len(classes))
    fit_weights(model, arrays, run, name)
    return config, vocab, classes, model.eval()


def _ids(text: str, vocab: Vocab, config: Config) -> tuple[list[str], np.ndarray]:
    if not text.strip():
        raise ValueError("expected a text to classify, but was given an empty one.")
    tokens = ReviewTokenizer().tokenize(text)
    if not tokens:
        raise ValueError(f"expected a text with at least one word, but {text[:40]!r} has none.")
    ids = vocab.encode(tokens)
    return tokens, ids


def predict_texts(run, texts: list[str]) -> list[tuple[str, float]]:
    """(label, probability of that label) for each text, with the run's model."""
    return classify(load_run(run), texts)


def classify(loaded: tuple, texts: list[str]) -> list[tuple[str, float]]:
    """predict_texts with a run already loaded by `load_run`."""
    config, vocab, classes, model = loaded
    encoded = [truncate(_ids(t, vocab, config)[1], config.max_len, config.truncation) for t in texts]
    ids, lengths = pad_batch(encoded, pad_id=vocab.stoi[PAD])
    probs = model.predict_proba(ids, lengths)                          # (N, C)
    return [(classes[k], float(p[k])) for p, k in zip(probs, probs.argmax(1))]


def explain_text(run, text: str, out=None) -> tuple[Path, list[str], np.ndarray]:
    """Probability of the last class (positive) after each prefix of `text`, drawn as a plot.

    Returns (plot path, tokens, probabilities (T,)). The text is cut to the run's `max_len` tokens
    from its start, so every prefix is what the model would read.
    """
    from .sentiment_plots import plot_explanation

    path = Path(run) / "plots" / "explain.png" if out is None else outside_runs(out, "--out", run, "plots/explain.png")
    config, vocab, classes, model = load_run(run)
    tokens, ids = _ids(text, vocab, config)
    tokens, ids = tokens[:config.max_len], ids[:config.max_len]
    T = len(ids)
    prefixes, lengths = np.tile(ids, (T, 1)), np.arange(1, T + 1)      # (T, T): row t reads ids[:t+1]
    p = model.predict_proba(prefixes, lengths)[:, -1]                  # (T,)
    plot_explanation(tokens, p, path, positive=classes[-1])
    return path, tokens, p
