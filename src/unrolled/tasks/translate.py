"""Translation: train an encoder-decoder on sentence pairs, translate with it, score it with BLEU.

    config = config_from("tutorial", arch="rnn", attention="bahdanau", minutes=15)
    run, state, interrupted = train(config, "runs/translate")
    print(translate_text("runs/translate", "I am cold.", beam=5).text)
    scores = evaluate_run("runs/translate")           # {"test_bleu_greedy": ..., "test_bleu_beam": ...}

Data: a tab-separated file of pairs (the bundled tutorial subset of the Tatoeba English-French
file by default), normalised and filtered by a preset (see unrolled.data.pairs). A fixed 10% of
the distinct source sentences, drawn with `split_seed`, is the held-out test set; a further
`val_fraction` of the rest is the validation set that picks the best checkpoint; vocabularies come
from the training pairs alone.

Models: `arch="rnn"` is `Seq2Seq` (a (bi)GRU/LSTM encoder and an attention decoder, teacher forcing
with a ratio); `arch="transformer"` is `Seq2SeqTransformer` (`hidden` is d_model, `layers` the
depth of encoder and decoder each). Training minimises cross-entropy with label smoothing over
the real target tokens (padding ignored) with Adam, warm-up and a cosine schedule; the validation
loss is the plain cross-entropy in nats per target token. When training ends within its budget,
the best weights translate the test sources by greedy decoding and by beam search, and corpus
BLEU (sacrebleu, all of a sentence's translations as references, on normalised tokens) closes
metrics.jsonl as `test_bleu_greedy` and `test_bleu_beam`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..attention import Seq2SeqTransformer
from ..checkpoint import load_checkpoint, load_weights
from ..core.functional import cross_entropy
from ..core.module import no_grad
from ..data.pairs import (BOS, EOS, PAD, PRESETS, SPECIALS, PairBatcher, build_vocab, check_vocab, decode, encode,
                          load_pairs, make_batch, normalize, references, split_pairs, tokenize)
from ..data.text import bundled_path
from ..data.vocab import Vocab
from ..decoding import NonFiniteLogits
from ..layers import CrossEntropyLoss
from ..models.seq2seq import ATTENTIONS, CELLS, Seq2Seq, translate_beam, translate_greedy
from ..runs import append_metrics, atomic_write_text, create_run, finished, load_config, read_metrics, write_json
from ..train import LOWER_LR, RunConfig, TrainingDiverged, TrainState, budget_given, fit, resume, save_training_state
from .lm import make_optimizer

TASK = "translate"
SRC_VOCAB, TGT_VOCAB = "src_vocab.json", "tgt_vocab.json"
SAMPLES, TRANSLATIONS, RESULTS = "samples.txt", "translations.txt", "results.json"
BUNDLED = "eng_fra_tutorial"
ARCHS = ("rnn", "transformer")
PAD_ID, BOS_ID, EOS_ID = (SPECIALS.index(t) for t in (PAD, BOS, EOS))
DECODE_BATCH = 128


@dataclass
class Config(RunConfig):
    """Everything a translation run depends on (saved as the run's config.json)."""

    TASK, KIND = TASK, "a translation"  # config.json's "task"; messages

    data: str | None = None            # tab-separated pairs; None: the bundled tutorial subset of fra.txt
    preset: str = "tutorial"           # "tutorial" (the PyTorch tutorial's filter) or "full"
    test_fraction: float = 0.1         # of the distinct source sentences, held out
    split_seed: int = 0                # fixes the test split (and the validation split) for every run
    val_fraction: float = 0.05         # of the remaining source sentences, for checkpoint selection
    min_freq: int = 2                  # rarer training words are <unk>
    arch: str = "rnn"                  # "rnn" or "transformer"
    cell: str = "gru"                  # rnn: "gru" or "lstm"
    attention: str = "bahdanau"        # rnn: "bahdanau", "luong" or "none"
    bidirectional: bool = True         # rnn: encoder reads both ways
    layers: int = 1                    # rnn: stacked layers; transformer: encoder and decoder layers each
    embed: int = 256                   # rnn: embedding size
    hidden: int = 256                  # rnn: units per layer; transformer: d_model
    heads: int = 4                     # transformer: attention heads
    ff: int = 512                      # transformer: feed-forward width
    dropout: float = 0.1
    teacher_forcing: float = 1.0       # rnn: probability of feeding each reference token
    label_smoothing: float = 0.1
    batch: int = 64
    lr: float = 2e-3
    warmup: float = 0.02               # fraction of the budget spent warming up
    min_lr_ratio: float = 0.1          # the cosine ends at lr * min_lr_ratio
    clip: float = 1.0
    epochs: int | None = None
    minutes: float | None = 15.0       # training-time budget (excludes evaluation)
    eval_every: int = 200
    max_len: int = 30                  # decoding: tokens at most per translation
    beam: int = 5                      # beam width for the test score
    length_penalty: float = 0.6        # GNMT's alpha for beam ranking (0.6: best on the validation split)
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, but was given {self.preset!r}.")
        if self.preset == "full" and self.data is None:
            raise ValueError("the full preset needs --data (e.g. ../shared/data/eng_fra/fra.txt): the bundled pairs "
                             "are only the tutorial subset.")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, but was given {self.arch!r}.")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, but was given {self.cell!r}.")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, but was given {self.attention!r}.")
        if self.arch == "transformer" and self.hidden % self.heads:
            raise ValueError(f"the transformer's hidden size (d_model) must be a multiple of heads, "
                             f"but was given hidden={self.hidden} and heads={self.heads}.")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must lie in [0, 1], but was given {self.teacher_forcing!r}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), but was given {self.label_smoothing!r}.")



# the transformer's own defaults, unless given: a smaller, deeper model at a lower peak rate
ARCH_DEFAULTS = {"rnn": {}, "transformer": dict(layers=3, hidden=128, lr=1e-3, warmup=0.05)}


def config_from(preset: str = "tutorial", **overrides) -> Config:
    """Config defaults, then the architecture's defaults, then `overrides` (a budget replaces the default one)."""
    values = dict(ARCH_DEFAULTS.get(overrides.get("arch", "rnn"), {}))
    if preset == "full":
        values.update(min_freq=3, max_len=60)
    values.update(budget_given(overrides))
    return Config(preset=preset, **values)


# ----- data ----------------------------------------------------------------------------------------

@dataclass
class Corpus:
    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    src_vocab: Vocab
    tgt_vocab: Vocab
    sha256: str                        # of the data file, so a resumed run can tell that it changed


def data_path(config: Config) -> Path:
    return Path(config.data) if config.data is not None else bundled_path(BUNDLED)


def load_corpus(config: Config, vocabs: tuple[Vocab, Vocab] | None = None) -> Corpus:
    """Read, normalise, filter and split the pairs; builds the vocabularies unless given."""
    path = data_path(config)
    pairs = load_pairs(path, config.preset)
    rest, test = split_pairs(pairs, config.test_fraction, seed=config.split_seed)
    train, val = split_pairs(rest, config.val_fraction, seed=config.split_seed + 1)
    if vocabs is None:
        vocabs = (build_vocab((s for s, _ in train), min_freq=config.min_freq),
                  build_vocab((t for _, t in train), min_freq=config.min_freq))
    src_vocab, tgt_vocab = check_vocab(vocabs[0], "source"), check_vocab(vocabs[1], "target")
    return Corpus(train, val, test, src_vocab, tgt_vocab, hashlib.sha256(path.read_bytes()).hexdigest())


# ----- the model -----------------------------------------------------------------------------------

def build(config: Config, src_vocab_size: int, tgt_vocab_size: int):
    if config.arch == "transformer":
        return Seq2SeqTransformer(src_vocab_size, tgt_vocab_size, d_model=config.hidden, nhead=config.heads,
                                  num_encoder_layers=config.layers, num_decoder_layers=config.layers,
                                  dim_feedforward=config.ff, dropout=config.dropout, seed=config.seed)
    return Seq2Seq(src_vocab_size, tgt_vocab_size, embed=config.embed, hidden=config.hidden, layers=config.layers,
                   cell=config.cell, bidirectional=config.bidirectional, attention=config.attention,
                   dropout=config.dropout, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, seed=config.seed)


def forward(model, batch, teacher_forcing: float = 1.0, rng=None) -> np.ndarray:
    """Logits (T, B, V) of a batch; teacher forcing below 1 applies to the recurrent model only."""
    if isinstance(model, Seq2Seq):
        return model(batch.src, batch.tgt_in, batch.src_lengths, teacher_forcing=teacher_forcing, rng=rng)
    return model(batch.src, batch.tgt_in, batch.src_lengths)


def evaluate_loss(model, pairs, src_vocab: Vocab, tgt_vocab: Vocab, batch: int = DECODE_BATCH) -> float:
    """Mean cross-entropy (nats per target token, <eos> included) with the reference fed at every step."""
    total, count = 0.0, 0
    with no_grad():
        for start in range(0, len(pairs), batch):
            b = make_batch(pairs[start:start + batch], src_vocab, tgt_vocab)
            logits = forward(model, b)                                          # (T, B, V)
            loss, _ = cross_entropy(logits.reshape(-1, logits.shape[-1]).astype(np.float64),
                                    b.tgt_out.reshape(-1), ignore_index=PAD_ID, reduction="sum")
            total += float(loss)
            count += b.n_tokens
    return total / count


class TranslationTask:
    """The `unrolled.train.Task` of a translation model: shuffled batches of pairs, nothing carried."""

    def __init__(self, model, corpus: Corpus, config: Config, run: Path | None = None):
        self.model, self.corpus, self.config, self.run = model, corpus, config, run
        self.batcher = PairBatcher(corpus.train, corpus.src_vocab, corpus.tgt_vocab, config.batch, seed=config.seed)
        self.loss = CrossEntropyLoss(ignore_index=PAD_ID, label_smoothing=config.label_smoothing)
        self.order = None

    def batches_per_epoch(self) -> int:
        return len(self.batcher)

    def start_epoch(self, epoch: int) -> None:
        self.order = self.batcher.order(epoch)

    def train_batch(self, epoch: int, index: int) -> tuple[float, int]:
        batch = self.batcher.batch(self.order[index])
        rng = np.random.default_rng([self.config.seed, epoch, index])  # teacher-forcing draws, resumable
        logits = forward(self.model, batch, self.config.teacher_forcing, rng)      # (T, B, V)
        loss = self.loss(logits.reshape(-1, logits.shape[-1]), batch.tgt_out.reshape(-1))
        self.model.backward(self.loss.backward().reshape(logits.shape))
        return float(loss), batch.n_tokens

    def evaluate(self) -> float:
        return evaluate_loss(self.model, self.corpus.val, self.corpus.src_vocab, self.corpus.tgt_vocab)

    def after_eval(self, step: int, val_loss: float) -> None:
        if self.run is None:
            return
        sources, refs = references(self.corpus.val[:40])
        sources, refs = sources[:5], refs[:5]
        outputs = translate(self.model, sources, self.corpus.src_vocab, self.corpus.tgt_vocab, self.config.max_len)
        lines = [f"{s}\n  -> {o}\n  ref {r[0]}" for s, o, r in zip(sources, outputs, refs)]
        path = self.run / SAMPLES
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        atomic_write_text(path, before + f"=== step {step}, val loss {val_loss:.4f} ===\n" + "\n".join(lines) + "\n\n")

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        pass


# ----- translating and scoring ---------------------------------------------------------------------

def translate(model, sources: list[str], src_vocab: Vocab, tgt_vocab: Vocab, max_len: int,
              beam: int | None = None, length_penalty: float = 0.0) -> list[str]:
    """Normalised source sentences -> translations: batched greedy decoding, or beam search of width `beam`."""
    ids = [encode(src_vocab, s) for s in sources]
    if any(len(x) == 0 for x in ids):
        raise ValueError("every sentence to translate must hold at least one word (letters), but one is empty.")
    out: list = [None] * len(ids)
    if beam is None:
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths together: less padding
        for start in range(0, len(order), DECODE_BATCH):
            chunk = order[start:start + DECODE_BATCH]
            lengths = np.array([len(ids[i]) for i in chunk])
            src = np.full((lengths.max(), len(chunk)), PAD_ID, dtype=np.int64)  # (S, B)
            for b, i in enumerate(chunk):
                src[:lengths[b], b] = ids[i]
            for i, hyp in zip(chunk, translate_greedy(model, src, lengths, max_len, bos_id=BOS_ID, eos_id=EOS_ID)):
                out[i] = hyp
    else:
        for i, x in enumerate(ids):
            out[i] = translate_beam(model, x, max_len, bos_id=BOS_ID, eos_id=EOS_ID, beam_width=beam,
                                    length_penalty=length_penalty)[0][0]
    return [decode(tgt_vocab, hyp) for hyp in out]


def bleu(hypotheses: list[str], refs: list[list[str]]) -> tuple[float, str]:
    """Corpus BLEU (sacrebleu) with a varying number of references per sentence.

    The sentences are normalised text whose tokens are already space-separated, so sacrebleu
    splits on spaces only (`tokenize="none"`). Returns (score, sacrebleu's signature).
    """
    import sacrebleu

    n = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(n)]  # None: no k-th reference
    metric = sacrebleu.metrics.BLEU(tokenize="none", force=True)
    return float(metric.corpus_score(hypotheses, streams).score), str(metric.get_signature())


def score_test(model, corpus: Corpus, config: Config, beam: int | None = None,
               length_penalty: float | None = None) -> dict:
    """BLEU of greedy decoding and of beam search on the held-out sources, with the translations."""
    sources, refs = references(corpus.test)
    beam = config.beam if beam is None else beam
    length_penalty = config.length_penalty if length_penalty is None else length_penalty
    t0 = time.perf_counter()
    greedy = translate(model, sources, corpus.src_vocab, corpus.tgt_vocab, config.max_len)
    t1 = time.perf_counter()
    beamed = translate(model, sources, corpus.src_vocab, corpus.tgt_vocab, config.max_len, beam=beam,
                       length_penalty=length_penalty)
    t2 = time.perf_counter()
    greedy_bleu, signature = bleu(greedy, refs)
    beam_bleu, _ = bleu(beamed, refs)
    return {"test_bleu_greedy": greedy_bleu, "test_bleu_beam": beam_bleu, "beam": beam,
            "length_penalty": length_penalty, "signature": signature,
            "sentences": len(sources), "references": sum(len(r) for r in refs),
            "greedy_s": round(t1 - t0, 1), "beam_s": round(t2 - t1, 1),
            "translations": [{"source": s, "greedy": g, "beam": b, "references": r}
                             for s, g, b, r in zip(sources, greedy, beamed, refs)]}


# ----- training ------------------------------------------------------------------------------------

def train(config: Config, out=None, resume_from=None, progress: bool = True) -> tuple[Path, TrainState, bool]:
    """Train a new run into `out`, or continue the run in `resume_from`; returns (run, state, interrupted).

    Everything is checked (data, vocabularies, sizes, budget) before the run folder is touched.
    When training ends within its budget, `finish` scores the best weights on the test set.
    """
    if resume_from is not None:
        run = Path(resume_from)
        config = load_config(run, TASK, Config)
        _, meta = load_checkpoint(run)  # a damaged checkpoint is reported before anything runs
        corpus = load_corpus(config, (Vocab.load(run / SRC_VOCAB), Vocab.load(run / TGT_VOCAB)))
        if corpus.sha256 != meta.get("data_sha256"):
            raise ValueError(f"the pairs file {data_path(config)} has changed since the run in {run} started, "
                             "so it cannot continue exactly; start a new run.")
    else:
        if out is None:
            raise ValueError("give --out DIR (a new run folder) or --resume DIR.")
        config.budget  # a contradictory budget fails here, before any work
        if config.data is not None:  # an absolute path, so the run resumes and evaluates from any folder
            config = dataclasses.replace(config, data=str(Path(config.data).resolve()))
        corpus = load_corpus(config)
    model = build(config, len(corpus.src_vocab), len(corpus.tgt_vocab))
    task = TranslationTask(model, corpus, config)
    optimizer, schedule, set_progress = make_optimizer(model, config, task.batches_per_epoch())
    meta = {"config": "config.json", "vocab": [SRC_VOCAB, TGT_VOCAB], "data_sha256": corpus.sha256}
    if resume_from is not None:
        state, _ = resume(run, task, optimizer, schedule)
        if finished(run, "test_bleu_greedy"):
            raise ValueError(f"the run in {run} has already spent its budget; start a new run to train longer.")
    else:
        run = create_run(out, config.to_dict())
        corpus.src_vocab.save(run / SRC_VOCAB)
        corpus.tgt_vocab.save(run / TGT_VOCAB)
        state = TrainState()
        save_training_state(run, task, optimizer, schedule, state, meta)  # resumable from the first step
    task.run = run
    state, interrupted = fit(task, optimizer, schedule, run, config.budget, eval_every=config.eval_every,
                             clip=config.clip, state=state, meta=meta, progress=progress, set_progress=set_progress)
    if not interrupted:
        try:
            finish(run, config, corpus, model, state)
        except KeyboardInterrupt:  # stopped while scoring: resuming scores again
            interrupted = True
    return run, state, interrupted


def _load_best(run: Path, model) -> None:
    load_weights(model, run)
    model.eval()


def finish(run: Path, config: Config, corpus: Corpus, model, state: TrainState) -> dict:
    """Score the best weights on the test set: results.json, translations, plots, then the closing
    metrics record (last, as the mark of a finished run)."""
    from ..viz import plot_losses
    from .translate_plots import plot_attention

    _load_best(run, model)
    try:
        scores = score_test(model, corpus, config)
    except NonFiniteLogits:  # finite weights whose outputs overflow, seen only now (e.g. in beam search)
        raise TrainingDiverged(f"training diverged by step {state.step}: the best weights' next-token logits are "
                               f"no longer finite when translating the test set, so it cannot be scored; "
                               f"{LOWER_LR}.") from None
    test_loss = evaluate_loss(model, corpus.test, corpus.src_vocab, corpus.tgt_vocab)
    lines = [f"{t['source']}\n  greedy {t['greedy']}\n  beam   {t['beam']}\n" +
             "".join(f"  ref    {r}\n" for r in t["references"]) for t in scores["translations"]]
    atomic_write_text(run / TRANSLATIONS, "\n".join(lines))
    results = {k: v for k, v in scores.items() if k != "translations"}
    results.update(arch=config.arch, attention=config.attention if config.arch == "rnn" else "multi-head",
                   parameters=model.num_parameters(), steps=state.step, train_s=round(state.elapsed_s, 1),
                   epochs=round(state.step / -(-len(corpus.train) // config.batch), 2),
                   test_loss=test_loss, sizes={"train": len(corpus.train), "val": len(corpus.val),
                                               "test": len(corpus.test), "src_vocab": len(corpus.src_vocab),
                                               "tgt_vocab": len(corpus.tgt_vocab)})
    write_json(run / RESULTS, results)
    metrics = [m for m in read_metrics(run) if "val_loss" in m]
    if metrics:
        plot_losses(metrics, run / "plots" / "loss.png", title=f"{describe(config)} translation", unit="nats/token")
    longest = max(scores["translations"], key=lambda t: len(tokenize(t["source"])))  # the most to look at
    source, target, weights = attention_of(model, longest["source"], longest["beam"], corpus.src_vocab, corpus.tgt_vocab)
    if weights is not None:
        plot_attention(weights, source, target, run / "plots" / "attention.png", title=describe(config))
    append_metrics(run, {"step": state.step, "test_loss": test_loss, "test_bleu_greedy": scores["test_bleu_greedy"],
                         "test_bleu_beam": scores["test_bleu_beam"]})
    return results


def describe(config: Config) -> str:
    if config.arch == "transformer":
        return f"Transformer ({config.layers}+{config.layers} layers, d_model {config.hidden})"
    return f"{'bi' if config.bidirectional else ''}{config.cell.upper()} + {config.attention} attention"


# ----- using a trained run -----------------------------------------------------------------------

def load_run(run) -> tuple[Config, Vocab, Vocab, object]:
    """The config, source and target vocabularies and model (best weights when kept) of a run, in eval mode."""
    run = Path(run)
    config = load_config(run, TASK, Config)
    src_vocab = check_vocab(Vocab.load(run / SRC_VOCAB), "source")
    tgt_vocab = check_vocab(Vocab.load(run / TGT_VOCAB), "target")
    model = build(config, len(src_vocab), len(tgt_vocab))
    _load_best(run, model)
    return config, src_vocab, tgt_vocab, model


def attention_of(model, source: str, target: str, src_vocab: Vocab, tgt_vocab: Vocab):
    """(source tokens, target tokens + <eos>, weights (target, source)) of a translation; weights None
    for a recurrent model without attention. The Transformer's are its last layer's, averaged over heads."""
    src_tokens, tgt_tokens = tokenize(source), tokenize(target) + [EOS]
    src = encode(src_vocab, source)[:, None]                                   # (S, 1)
    tgt = np.r_[BOS_ID, tgt_vocab.encode(tokenize(target))][:, None]            # (T, 1)
    if isinstance(model, Seq2Seq) and model.attention_kind == "none":
        return src_tokens, tgt_tokens, None
    weights = model.attention_maps(src, tgt, np.array([src.shape[0]]))[-1][0]  # (T, S)
    return src_tokens, tgt_tokens, weights


@dataclass
class Translation:
    """What `translate_text` gives: the translation and what its attention heatmap needs."""

    text: str
    source: list[str]             # the normalised source tokens
    target: list[str]             # the translation's tokens and <eos>
    weights: np.ndarray | None    # (target, source) attention, None for a recurrent model without attention
    unknown: list[str]            # source words outside the vocabulary, read as <unk>


def translate_text(run, sentence: str, beam: int | None = None) -> Translation:
    """Normalise a raw sentence and translate it with the run's best weights (greedy, or beam of width `beam`)."""
    config, src_vocab, tgt_vocab, model = load_run(run)
    source = normalize(sentence)
    if not source:
        raise ValueError(f"the sentence must hold at least one word (letters), but was given {sentence!r}.")
    [target] = translate(model, [source], src_vocab, tgt_vocab, config.max_len, beam=beam,
                         length_penalty=config.length_penalty)
    unknown = [t for t in tokenize(source) if t not in src_vocab]
    return Translation(target, *attention_of(model, source, target, src_vocab, tgt_vocab), unknown)


def evaluate_run(run, beam: int | None = None, length_penalty: float | None = None) -> dict:
    """Greedy and beam BLEU of a run's best weights on its held-out test split (the data file must be there)."""
    config, src_vocab, tgt_vocab, model = load_run(run)
    corpus = load_corpus(config, (src_vocab, tgt_vocab))
    scores = score_test(model, corpus, config, beam, length_penalty)
    return {k: v for k, v in scores.items() if k != "translations"}
