"""`unrolled sentiment train | compare | predict | explain`: the sentiment sub-commands (see unrolled.cli)."""
from __future__ import annotations

import argparse
import sys

from .cli import (dropout_rate, nonnegative_float, nonnegative_int, path_name, png_path, positive_float, positive_int,
                  refuse_flags_with_resume, report_interrupted, utf8_text)
from .core.checks import counted
from .data.sentiment_sources import is_table
from .data.text import text_lines
from .runs import read_json
from .tasks import sentiment

DEFAULT_OUT = "runs/sentiment"
DEFAULT_COMPARE_OUT = "runs/sentiment-compare"
COMPARE_MINUTES = 15.0
# train flags that set a Config field of the same name (dashes become underscores)
CONFIG_FLAGS = ("data", "text_column", "label_column", "cell", "bidirectional", "layers", "embed", "hidden", "pooling",
                "dropout", "embed_dropout", "recurrent_dropout", "vectors", "max_len", "truncation", "min_freq",
                "max_vocab", "batch", "lr", "weight_decay", "epochs", "minutes", "seed", "eval_every")


def _model_flags(parser, cell: bool = True) -> None:
    """The flags of a Config; each defaults to None, meaning "the Config's default" (shown in --help)."""
    d = sentiment.Config()
    parser.add_argument("--data", type=path_name, metavar="PATH",
                        help=f"IMDB tarball or aclImdb folder, .csv/.tsv, or VADER file/folder (default {d.data})")
    parser.add_argument("--text-column", metavar="NAME", help=f"CSV/TSV text column (default {d.text_column})")
    parser.add_argument("--label-column", metavar="NAME", help=f"CSV/TSV label column (default {d.label_column})")
    if cell:
        parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), help=f"recurrent cell (default {d.cell})")
    parser.add_argument("--bidirectional", action=argparse.BooleanOptionalAction,
                        help=f"read each review both ways (default {d.bidirectional})")
    parser.add_argument("--layers", type=positive_int, metavar="N", help=f"stacked layers (default {d.layers})")
    parser.add_argument("--embed", type=positive_int, metavar="N", help=f"embedding size (default {d.embed})")
    parser.add_argument("--hidden", type=positive_int, metavar="N", help=f"units per direction (default {d.hidden})")
    parser.add_argument("--pooling", choices=("last", "mean", "max"), help=f"over the valid steps (default {d.pooling})")
    parser.add_argument("--dropout", type=dropout_rate, metavar="P", help=f"before the head (default {d.dropout})")
    parser.add_argument("--embed-dropout", type=dropout_rate, metavar="P",
                        help=f"whole words dropped while training (default {d.embed_dropout})")
    parser.add_argument("--recurrent-dropout", type=dropout_rate, metavar="P",
                        help=f"on the state in every recurrent product, one mask per review (default "
                             f"{d.recurrent_dropout})")
    parser.add_argument("--vectors", type=path_name, metavar="PATH", help="pretrained word vectors, word2vec/GloVe text format")
    parser.add_argument("--max-len", type=positive_int, metavar="N", help=f"tokens kept per review (default {d.max_len})")
    parser.add_argument("--truncation", choices=("head", "tail", "both"),
                        help=f"which end of a long review to keep (default {d.truncation})")
    parser.add_argument("--min-freq", type=positive_int, metavar="N", help=f"rarer words are <unk> (default {d.min_freq})")
    parser.add_argument("--max-vocab", type=positive_int, metavar="N", help=f"vocabulary size cap (default {d.max_vocab})")
    parser.add_argument("--batch", type=positive_int, metavar="N", help=f"reviews per step (default {d.batch})")
    parser.add_argument("--lr", type=positive_float, metavar="X", help=f"peak learning rate of Adam (default {d.lr})")
    parser.add_argument("--weight-decay", type=nonnegative_float, metavar="X",
                        help=f"AdamW's decoupled weight decay, 0 for Adam (default {d.weight_decay})")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, metavar="N",
                        help=f"epochs per model (train's default {d.epochs}, a cosine over them)")
    budget.add_argument("--minutes", type=positive_float, metavar="M",
                        help=f"minutes of training time per model instead (compare's default {COMPARE_MINUTES:g})")
    parser.add_argument("--seed", type=nonnegative_int, metavar="S")
    parser.add_argument("--eval-every", type=positive_int, metavar="N", help=f"steps between evaluations (default {d.eval_every})")


def register(tasks) -> None:
    parser = tasks.add_parser("sentiment", help="sentiment classification: train, compare cells, predict, explain",
                              description="Recurrent sentiment classifiers (IMDB, CSV/TSV, VADER).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train a classifier (defaults: the best configuration found)",
                               description="Train a sentiment classifier; its defaults are the best configuration found.")
    _model_flags(train)
    train.add_argument("--out", type=path_name, metavar="DIR", help=f"a new run folder (default {DEFAULT_OUT})")
    train.add_argument("--resume", type=path_name, metavar="DIR", help="continue the run in DIR exactly where it stopped")
    train.set_defaults(func=run_train)

    compare = actions.add_parser("compare", help="train several cells with the same budget and write a report",
                                 description="Train each cell with the same settings and budget; write report.md, "
                                             "results.json and plots.")
    compare.add_argument("--cells", default="rnn,lstm,gru", metavar="LIST", help="comma-separated (default rnn,lstm,gru)")
    _model_flags(compare, cell=False)
    compare.add_argument("--out", type=path_name, metavar="DIR", help=f"the report folder (default {DEFAULT_COMPARE_OUT})")
    compare.set_defaults(func=run_compare)

    predict = actions.add_parser("predict", help="label and probability of texts (arguments, or one per stdin line)")
    predict.add_argument("run", type=path_name, metavar="DIR")
    predict.add_argument("texts", nargs="*", type=utf8_text, metavar="TEXT", help="texts to classify (default: read lines from stdin, blank ones skipped)")
    predict.set_defaults(func=run_predict)

    explain = actions.add_parser("explain", help="plot the prediction after each word of a text")
    explain.add_argument("run", type=path_name, metavar="DIR")
    explain.add_argument("text", type=utf8_text, metavar="TEXT")
    explain.add_argument("--out", type=png_path, metavar="PNG", help="where to write the plot (default DIR/plots/explain.png)")
    explain.set_defaults(func=run_explain)


def _given(args) -> dict:
    return {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name, None) is not None}


def _config(given: dict) -> sentiment.Config:
    columns = [f"--{name.replace('_', '-')}" for name in ("text_column", "label_column") if name in given]
    data = given.get("data", sentiment.Config.data)
    if columns and not is_table(data):
        raise ValueError(f"{' and '.join(columns)} {'apply' if len(columns) == 2 else 'applies'} only to .csv/.tsv "
                         f"data, but --data {data} is not a table.")
    return sentiment.config_from(**given)


def run_train(args: argparse.Namespace) -> int:
    given = _given(args)
    refuse_flags_with_resume(args, given)
    config = None if args.resume is not None else _config(given)
    run, state, interrupted = sentiment.train(config, out=args.out or DEFAULT_OUT, resume_from=args.resume)
    if interrupted:
        return report_interrupted("sentiment", state.step, run)
    results = read_json(run / sentiment.RESULTS, "the run's results")
    print(f"done: {counted(state.step, 'step')}, {state.elapsed_s / 60:.1f} min of training, "
          f"test accuracy {100 * results['test']['accuracy']:.2f}%; run in {run}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from .tasks.sentiment_report import compare

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = [c for c in cells if c not in ("rnn", "lstm", "gru")]
    if not cells or unknown or len(set(cells)) != len(cells):
        raise ValueError(f"--cells must list distinct cells among rnn, lstm, gru, but was given {args.cells!r}.")
    given = _given(args)
    if "epochs" not in given and "minutes" not in given:
        given["minutes"] = COMPARE_MINUTES
    config = _config(given)
    report = compare(config, cells, args.out or DEFAULT_COMPARE_OUT)
    if report is None:
        print("interrupted; run the same command again to continue.", file=sys.stderr)
        return 130
    print(f"report: {report}")
    return 0


def _stdin_lines() -> list[str]:
    """stdin's lines, decoded strictly as UTF-8 (a stream that is already text is taken as it is)."""
    if not hasattr(sys.stdin, "buffer"):
        return text_lines(sys.stdin.read())
    lines = []
    for number, raw in enumerate(sys.stdin.buffer.read().splitlines(), 1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            line = None
        if line is None or "\0" in line:  # a NUL: binary data or UTF-16
            raise ValueError(f"stdin line {number} is not UTF-8 text.")
        lines.append(line)
    return lines


def _stdin_texts() -> list[str]:
    texts = [t for t in (line.strip() for line in _stdin_lines()) if t]
    if not texts:
        raise ValueError("expected texts to classify as arguments or as lines on stdin, but was given none.")
    return texts


def run_predict(args: argparse.Namespace) -> int:
    loaded = sentiment.load_run(args.run)  # a bad run folder is reported before stdin is read
    texts = args.texts or _stdin_texts()
    for text, (label, probability) in zip(texts, sentiment.classify(loaded, texts)):
        shown = " ".join(text.split())                  # one line: its tabs and line breaks as spaces
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        print(f"{label}\t{probability:.4f}\t{shown}")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    path, tokens, probs = sentiment.explain_text(args.run, args.text, out=args.out)
    moves = sorted(zip(probs - [0.5, *probs[:-1]], tokens), key=lambda m: -abs(m[0]))[:5]
    print(f"p(last class) {probs[-1]:.4f} after {len(tokens)} words; biggest moves: "
          + ", ".join(f"{t} {d:+.3f}" for d, t in moves))
    print(f"plot: {path}")
    return 0
