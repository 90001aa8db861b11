"""Language modelling: train a recurrent model on a text file, sample from it, look inside it.

    config = config_from(level="char", cell="lstm", layers=2, hidden=256, minutes=5)
    run, state, interrupted = train(config, "runs/shakespeare")
    generate_from_run("runs/shakespeare", prompt="ROMEO:", length=400)

Training reads one text file (the bundled tiny Shakespeare by default), tokenises it into
characters or words, keeps the last `val_fraction` as validation, and runs truncated BPTT over B
contiguous streams: each chunk starts from the previous chunk's final state (whose gradient goes
no further) and the state is reset at each epoch. Adam with gradient-norm clipping; the learning
rate warms up linearly, then follows a cosine over the planned steps (or over the minutes of a
time budget). Losses are in nats per token.
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import decoding
from ..core.functional import cross_entropy, log_softmax
from ..core.module import no_grad
from ..checkpoint import load_checkpoint, load_weights
from ..data.text import StreamBatcher, Vocab, bundled_path, get_tokenizer, plain_newlines, read_text, split
from ..models import LanguageModel
from ..optim import Adam
from ..runs import atomic_write_text, create_run, load_config, read_metrics
from ..train import RunConfig, TrainState, budget_given, fit, resume, save_training_state, warmup_cosine

TASK = "lm"
LOSS_PLOT = "plots/loss.png"
VOCAB = "vocab.json"
SAMPLES = "samples.txt"


@dataclass
class Config(RunConfig):
    """Everything a language-model run depends on (saved as the run's config.json)."""

    TASK, KIND = TASK, "a language-model"  # config.json's "task"; messages

    data: str | None = None          # a UTF-8 text file; None: the bundled tiny Shakespeare
    level: str = "char"              # "char" or "word"
    max_vocab: int | None = 5_000    # word level: the most frequent tokens kept, the rest are <unk>
    val_fraction: float = 0.1        # the last part of the text, held out
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 128
    embed: int = 64
    dropout: float = 0.0
    tie_weights: bool = False
    seq_len: int = 64
    batch: int = 32
    lr: float = 2e-3
    warmup: float = 0.02             # fraction of the budget spent warming up
    min_lr_ratio: float = 0.1        # the cosine ends at lr * min_lr_ratio
    clip: float = 1.0                # gradient-norm clipping
    epochs: int | None = 1
    minutes: float | None = None     # a training-time budget instead of epochs
    eval_every: int = 200            # steps between evaluations (and checkpoints)
    sample_length: int = 200         # tokens written to samples.txt at each evaluation
    seed: int = 0



PRESETS = {
    # measured on the 2-core machine: see README "Language models"
    "quick": dict(cell="lstm", layers=1, hidden=256, embed=64, dropout=0.0, seq_len=100, batch=16, lr=3e-3,
                  epochs=None, minutes=5.0, eval_every=200),
    "full": dict(cell="lstm", layers=2, hidden=256, embed=64, dropout=0.1, seq_len=100, batch=16, lr=3e-3,
                 epochs=None, minutes=30.0, eval_every=200),
}


def config_from(preset: str | None = None, **overrides) -> Config:
    """Config defaults, then the preset's values, then `overrides` (a budget override replaces the preset's)."""
    values = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, but was given {preset!r}.")
        values.update(PRESETS[preset])
    values.update(budget_given(overrides))
    return Config(**values)


# ----- data ----------------------------------------------------------------------------------------

@dataclass
class Corpus:
    vocab: Vocab
    train: np.ndarray      # int64 (N_train,)
    val: np.ndarray        # int64 (N_val,)
    sha256: str            # of the text, so a resumed run can tell that its data changed


def load_corpus(config: Config, vocab: Vocab | None = None) -> Corpus:
    """Read, tokenise, encode and split the text; builds the vocabulary unless one is given."""
    if config.level == "word" and config.max_vocab is not None and config.max_vocab < 2:
        raise ValueError(f"--max-vocab must be at least 2 (one id is <unk>), but was given {config.max_vocab}.")
    path = Path(config.data) if config.data is not None else bundled_path("tinyshakespeare")
    text = read_text(path)
    tokens = get_tokenizer(config.level).tokenize(text)
    if vocab is None:
        vocab = Vocab(tokens, max_size=config.max_vocab if config.level == "word" else None)
    train_ids, val_ids = split(vocab.encode(tokens), config.val_fraction)
    return Corpus(vocab, train_ids, val_ids, hashlib.sha256(text.encode("utf-8")).hexdigest())


# ----- the model and its loss ------------------------------------------------------------------

def build(config: Config, vocab_size: int) -> LanguageModel:
    return LanguageModel(vocab_size, embed=config.embed, hidden=config.hidden, layers=config.layers,
                         cell=config.cell, dropout=config.dropout, tie_weights=config.tie_weights, seed=config.seed)


def evaluate_loss(model: LanguageModel, ids: np.ndarray, batch: int, seq_len: int) -> float:
    """Mean negative log-likelihood (nats/token) of `ids` in B contiguous streams, state carried.

    B and T shrink when the text is too short for them. Uses the model in whatever mode it is in.
    """
    batch = max(1, min(batch, (len(ids) - 1) // (seq_len + 1)))
    seq_len = max(1, min(seq_len, (len(ids) - 1) // batch - 1))
    total, count, state = 0.0, 0, None
    with no_grad():
        for x, y in StreamBatcher(ids, batch, seq_len):
            logits, state = model(x, state)                                    # (T, B, V)
            logp = log_softmax(logits.astype(np.float64), axis=-1)             # (T, B, V)
            total -= np.take_along_axis(logp, y[..., None], axis=-1).sum()
            count += y.size
    return total / count


class LanguageModelTask:
    """The `unrolled.train.Task` of a language model: TBPTT chunks with the hidden state carried."""

    def __init__(self, model: LanguageModel, corpus: Corpus, config: Config, run: Path | None = None):
        self.model, self.corpus, self.config, self.run = model, corpus, config, run
        needed = config.batch * (config.seq_len + 1)
        if len(corpus.train) < needed:  # StreamBatcher says so too, in its own argument names
            raise ValueError(f"the training text has {len(corpus.train):,} tokens, too few for one chunk of "
                             f"{config.batch} streams x {config.seq_len} steps ({needed:,} tokens); lower --batch or "
                             "--seq-len, or give more text.")
        self.batches = StreamBatcher(corpus.train, config.batch, config.seq_len)
        self.carried = None

    def batches_per_epoch(self) -> int:
        return len(self.batches)

    def start_epoch(self, epoch: int) -> None:
        self.carried = None  # each epoch starts from the zero state

    def train_batch(self, epoch: int, index: int) -> tuple[float, int]:
        x, y = self.batches[index]                                      # (T, B) each
        logits, self.carried = self.model(x, self.carried)              # (T, B, V)
        loss, dlogits = cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        self.model.backward(dlogits.reshape(logits.shape))              # the carried state's gradient stops here
        return float(loss), int(y.size)

    def evaluate(self) -> float:
        return evaluate_loss(self.model, self.corpus.val, self.config.batch, self.config.seq_len)

    def after_eval(self, step: int, val_loss: float) -> None:
        if self.run is None:
            return
        rng = np.random.default_rng([self.config.seed, step])  # its own stream: training RNGs untouched
        prompt = default_prompt(self.corpus.vocab)
        ids = decoding.sample(known_tokens_only(self.model.step), prompt, self.config.sample_length, temperature=0.8, rng=rng)
        text = detokenize(self.config.level, self.corpus.vocab, list(prompt) + list(ids))
        path = self.run / SAMPLES
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        atomic_write_text(path, f"{before}=== step {step}, val loss {val_loss:.4f} ===\n{text}\n\n")

    def state_arrays(self) -> dict[str, np.ndarray]:
        if self.carried is None:
            return {}
        if isinstance(self.carried, tuple):
            return {"h": self.carried[0], "c": self.carried[1]}
        return {"h": self.carried}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if not arrays:
            self.carried = None
        elif "c" in arrays:
            self.carried = (arrays["h"].copy(), arrays["c"].copy())
        else:
            self.carried = arrays["h"].copy()


def make_optimizer(model: LanguageModel, config: Config, steps_per_epoch: int):
    """Adam, its schedule for an epoch budget (None for a time budget) and the time budget's lr setter."""
    optimizer = Adam(model.parameters(), lr=config.lr)
    return (optimizer, *warmup_cosine(optimizer, config, steps_per_epoch))


# ----- text in and out ----------------------------------------------------------------------------

def detokenize(level: str, vocab: Vocab, ids) -> str:
    return get_tokenizer(level).detokenize(vocab.decode(np.asarray(ids, dtype=np.int64)))


def known_tokens_only(step):
    """A decoding step function that never proposes `<unk>` (id 0): generated text has real words."""
    def wrapped(tokens, state):
        logits, state = step(tokens, state)
        logits = logits.copy()
        logits[:, 0] = -np.inf
        return logits, state
    return wrapped


def default_prompt(vocab: Vocab) -> np.ndarray:
    """A newline when the vocabulary has one (a fresh line, a fresh speaker), else the commonest token."""
    return np.array([vocab.stoi["\n"] if "\n" in vocab else min(1, len(vocab) - 1)], dtype=np.int64)


def encode_prompt(level: str, vocab: Vocab, prompt: str) -> np.ndarray:
    tokens = get_tokenizer(level).tokenize(plain_newlines(prompt))   # as the training text was read
    if not tokens:
        raise ValueError(f"the prompt must hold at least one token, but was given {'only whitespace' if prompt else 'none'}.")
    return vocab.encode(tokens, strict=True)


# ----- training ----------------------------------------------------------------------------------

def train(config: Config | None, out=None, resume_from=None, progress: bool = True) -> tuple[Path, TrainState, bool]:
    """Train a new run into `out`, or continue the run in `resume_from`; returns (run, state, interrupted).

    Everything is checked (data, vocabulary, sizes, budget) before the run folder is touched.
    """
    if resume_from is not None:
        run = Path(resume_from)
        config = load_config(run, TASK, Config)
        _, meta = load_checkpoint(run)  # a damaged checkpoint is reported before anything runs
        corpus = load_corpus(config, Vocab.load(run / VOCAB))
        if corpus.sha256 != meta.get("data_sha256"):
            raise ValueError(f"the text file {config.data or 'tiny Shakespeare'} has changed since the run in {run} "
                             "started, so it cannot continue exactly; start a new run.")
    else:
        if config.data is not None:  # an absolute path, so the run resumes from any folder
            config = dataclasses.replace(config, data=str(Path(config.data).resolve()))
        corpus = load_corpus(config)
    budget = config.budget  # a contradictory budget fails here, before the folder is touched
    model = build(config, len(corpus.vocab))
    task = LanguageModelTask(model, corpus, config)
    optimizer, schedule, set_progress = make_optimizer(model, config, task.batches_per_epoch())
    meta = {"config": "config.json", "vocab": VOCAB, "data_sha256": corpus.sha256}
    if resume_from is not None:
        state, task_arrays = resume(run, task, optimizer, schedule)
        if config.budget.spent(state) and (run / LOSS_PLOT).exists():  # without it: stopped while drawing it
            raise ValueError(f"the run in {run} has already spent its budget; start a new run to train longer.")
    else:
        if out is None:
            raise ValueError("give --out DIR (a new run folder) or --resume DIR.")
        run = create_run(out, config.to_dict())
        corpus.vocab.save(run / VOCAB)
        state, task_arrays = TrainState(), None
        save_training_state(run, task, optimizer, schedule, state, meta)  # resumable from the first step
    task.run = run
    state, interrupted = fit(task, optimizer, schedule, run, budget, eval_every=config.eval_every,
                             clip=config.clip, state=state, task_arrays=task_arrays, meta=meta,
                             progress=progress, set_progress=set_progress)
    interrupted = interrupted and not budget.spent(state)  # Ctrl-C in the last step: the run is complete
    metrics = read_metrics(run)
    if metrics:
        from ..viz import plot_losses
        try:
            plot_losses(metrics, run / LOSS_PLOT, title=f"{config.level}-level {config.cell.upper()} language model",
                        unit=f"nats/{config.level}")
        except KeyboardInterrupt:  # the checkpoint is saved; resuming draws the plot
            return run, state, True
    return run, state, interrupted


# ----- generation --------------------------------------------------------------------------------

def load_run(run) -> tuple[Config, Vocab, LanguageModel, dict]:
    """The config, vocabulary and model (best weights when kept, else the latest) of a run, in eval mode."""
    run = Path(run)
    config = load_config(run, TASK, Config)
    vocab = Vocab.load(run / VOCAB)
    model = build(config, len(vocab))
    meta = load_weights(model, run)
    return config, vocab, model.eval(), meta


class TextStream:
    """Decoded text written to `out` as token ids arrive, each piece as soon as it is known.

    Word-level spacing depends on the neighbouring tokens, so each token re-decodes its paragraph
    (a blank line resets the spacing state) and writes what the text gained: the same text as
    decoding every id at once, in time that grows with the paragraph, not the whole text (a
    vocabulary without a newline is one paragraph). With `show=False` the starting ids (a start
    token, not the user's prompt) are read but not written, nor the space that follows them.
    """

    def __init__(self, level: str, vocab: Vocab, ids, out, show: bool = True):
        self.level, self.vocab, self.out = level, vocab, out
        self.newline = vocab.stoi.get("\n")
        self.ids = [int(i) for i in ids]                   # the current paragraph
        self.shown = detokenize(level, vocab, self.ids)
        self.hidden = 0 if show else len(self.shown)       # leading characters not written
        self.started = show or level != "word"             # written after the start ids (words: spaced)
        self.before: list[str] = []                        # the text of finished paragraphs
        self._write(self.shown[self.hidden:])

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def add(self, token: int) -> None:
        self.ids.append(int(token))
        text = detokenize(self.level, self.vocab, self.ids)
        piece = text[len(self.shown):]
        if not self.started and piece.startswith(" "):    # the space that joins the first word
            piece, self.hidden = piece[1:], self.hidden + 1
        self.started = self.started or bool(piece)
        self._write(piece)
        self.shown = text
        if self.newline is not None and self.ids[-2:] == [self.newline, self.newline]:
            self.before.append(self.shown)
            self.ids, self.shown = [], ""

    @property
    def text(self) -> str:
        return ("".join(self.before) + self.shown)[self.hidden:]


def generate_from_run(run, prompt: str | None = None, length: int = 400, temperature: float = 1.0,
                      top_k: int | None = None, top_p: float | None = None, beam: int | None = None,
                      seed: int | None = None, out=None) -> str:
    """Continue `prompt` by `length` tokens with the run's model, writing text to `out` (stdout) as it is made."""
    out = out if out is not None else sys.stdout
    config, vocab, model, _ = load_run(run)
    prompt_ids = encode_prompt(config.level, vocab, prompt) if prompt is not None else default_prompt(vocab)
    stream = TextStream(config.level, vocab, prompt_ids, out, show=prompt is not None)
    if beam is not None:
        best, _ = decoding.beam_search(known_tokens_only(model.step), prompt_ids, length, beam_width=beam)[0]
        for token in best:
            stream.add(token)
    else:
        decoding.sample(known_tokens_only(model.step), prompt_ids, length, temperature=temperature, top_k=top_k, top_p=top_p,
                        rng=np.random.default_rng(seed), on_token=stream.add)
    out.write("\n")
    return stream.text
