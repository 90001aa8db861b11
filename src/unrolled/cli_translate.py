"""`unrolled translate train | run | eval`: the translation sub-commands (see unrolled.cli)."""
from __future__ import annotations

import argparse
import sys

from .cli import (beam_width, dropout_rate, nonnegative_int, _number, path_name, png_path, positive_float, positive_int,
                  refuse_flags_with_resume, report_interrupted, utf8_text)
from .core.checks import counted
from .runs import outside_runs, read_json
from .tasks import translate

DEFAULT_OUT = "runs/translate"
# train flags that set a Config field of the same name (dashes become underscores)
CONFIG_FLAGS = ("data", "arch", "cell", "attention", "bidirectional", "layers", "embed", "hidden", "heads", "ff",
                "dropout", "teacher_forcing", "label_smoothing", "min_freq", "batch", "lr", "epochs", "minutes",
                "max_len", "beam", "length_penalty", "seed", "eval_every")
# flags of one architecture that the other has no use for
ARCH_ONLY = {"rnn": ("attention", "cell", "bidirectional", "embed", "teacher_forcing"), "transformer": ("heads", "ff")}


def _fraction(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def _alpha(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v <= 5, "a number in [0, 5]")


MAX_LEN = 10_000  # tokens of one translation: far past a sentence, and decoding holds (batch, max_len) ids


def _max_len(text: str) -> int:
    return _number(int, text, lambda v: 1 <= v <= MAX_LEN, f"an integer from 1 to {MAX_LEN}")


def register(tasks) -> None:
    parser = tasks.add_parser("translate", help="translation: train on sentence pairs, translate, score with BLEU",
                              description="Sequence-to-sequence translation: attention RNN or Transformer.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    d = translate.Config()
    t = translate.ARCH_DEFAULTS["transformer"]
    train = actions.add_parser("train", help="train a translation model (or continue one with --resume)",
                               description="Train on tab-separated sentence pairs; the best weights are scored "
                                           "with BLEU on the held-out 10% when training ends.")
    train.add_argument("--data", type=path_name, metavar="PATH",
                       help="source<TAB>target pairs (default: the bundled English-French tutorial subset)")
    train.add_argument("--preset", choices=translate.PRESETS,
                       help="tutorial (default): short 'i am / he is ...' pairs as the PyTorch tutorial; full: every pair")
    train.add_argument("--arch", choices=translate.ARCHS, help=f"model (default {d.arch})")
    train.add_argument("--attention", choices=translate.ATTENTIONS, help=f"rnn decoder attention (default {d.attention})")
    train.add_argument("--cell", choices=tuple(translate.CELLS), help=f"rnn cell (default {d.cell})")
    train.add_argument("--bidirectional", action=argparse.BooleanOptionalAction,
                       help=f"rnn encoder reads both ways (default {d.bidirectional})")
    train.add_argument("--layers", type=positive_int, metavar="N",
                       help=f"rnn layers (default {d.layers}); transformer encoder and decoder layers (default {t['layers']})")
    train.add_argument("--embed", type=positive_int, metavar="N", help=f"rnn embedding size (default {d.embed})")
    train.add_argument("--hidden", type=positive_int, metavar="N",
                       help=f"rnn units (default {d.hidden}); transformer d_model (default {t['hidden']})")
    train.add_argument("--heads", type=positive_int, metavar="N", help=f"transformer heads (default {d.heads})")
    train.add_argument("--ff", type=positive_int, metavar="N", help=f"transformer feed-forward width (default {d.ff})")
    train.add_argument("--dropout", type=dropout_rate, metavar="P", help=f"(default {d.dropout})")
    train.add_argument("--teacher-forcing", type=_fraction, metavar="R",
                       help=f"rnn: probability of feeding each reference token (default {d.teacher_forcing})")
    train.add_argument("--label-smoothing", type=dropout_rate, metavar="E", help=f"(default {d.label_smoothing})")
    train.add_argument("--min-freq", type=positive_int, metavar="N", help="rarer training words are <unk> (default 2; full: 3)")
    train.add_argument("--batch", type=positive_int, metavar="N", help=f"pairs per step (default {d.batch})")
    train.add_argument("--lr", type=positive_float, metavar="X",
                       help=f"peak learning rate of Adam (default {d.lr}; transformer {t['lr']})")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, metavar="N")
    budget.add_argument("--minutes", type=positive_float, metavar="M",
                        help=f"minutes of training time (default {d.minutes:g})")
    train.add_argument("--max-len", type=_max_len, metavar="N", help="tokens at most per translation (default 30; full: 60)")
    train.add_argument("--beam", type=beam_width, metavar="K", help=f"beam width of the test score (default {d.beam})")
    train.add_argument("--length-penalty", type=_alpha, metavar="A",
                       help=f"GNMT length normalisation of beam scores, 0: none (default {d.length_penalty})")
    train.add_argument("--seed", type=nonnegative_int, metavar="S")
    train.add_argument("--eval-every", type=positive_int, metavar="N", help=f"steps between evaluations (default {d.eval_every})")
    train.add_argument("--out", type=path_name, metavar="DIR", help=f"a new run folder (default {DEFAULT_OUT})")
    train.add_argument("--resume", type=path_name, metavar="DIR", help="continue the run in DIR exactly where it stopped")
    train.set_defaults(func=run_train)

    run = actions.add_parser("run", help="translate a sentence with a trained run")
    run.add_argument("run", type=path_name, metavar="DIR")
    run.add_argument("sentence", type=utf8_text, metavar="SENTENCE")
    run.add_argument("--beam", type=beam_width, metavar="K", help="beam search of width K (default: greedy)")
    run.add_argument("--plot", type=png_path, metavar="PNG", help="write the attention heatmap to this file")
    run.set_defaults(func=run_run)

    evaluate = actions.add_parser("eval", help="BLEU of greedy decoding and beam search on the held-out test split")
    evaluate.add_argument("run", type=path_name, metavar="DIR")
    evaluate.add_argument("--beam", type=beam_width, metavar="K", help="beam width (default: the run's)")
    evaluate.add_argument("--length-penalty", type=_alpha, metavar="A", help="GNMT alpha (default: the run's)")
    evaluate.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    given = {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}
    refuse_flags_with_resume(args, given)
    config = None if args.resume is not None else translate.config_from(args.preset or "tutorial", **given)
    if config is not None:
        other = next(arch for arch in ARCH_ONLY if arch != config.arch)
        unused = [f"--{name.replace('_', '-')}" for name in ARCH_ONLY[other] if name in given]
        if unused:
            named = " and ".join([", ".join(unused[:-1]), unused[-1]] if len(unused) > 1 else unused)
            raise ValueError(f"{named} appl{'ies' if len(unused) == 1 else 'y'} to --arch {other} "
                             f"only, but this run's model is {config.arch}.")
    run, state, interrupted = translate.train(config, out=args.out or DEFAULT_OUT, resume_from=args.resume)
    if interrupted:
        return report_interrupted("translate", state.step, run)
    results = read_json(run / translate.RESULTS, "the run's results")
    print(f"done: {counted(state.step, 'step')}, {state.elapsed_s / 60:.1f} min of training; test BLEU greedy "
          f"{results['test_bleu_greedy']:.1f}, beam {results['beam']} {results['test_bleu_beam']:.1f}; run in {run}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        outside_runs(args.plot, "--plot", args.run, "plots/translation.png")  # not train's heatmap
    result = translate.translate_text(args.run, args.sentence, beam=args.beam)
    if args.plot is not None and result.weights is None:
        raise ValueError(f"the model in {args.run} has no attention to plot (it was trained with --attention none).")
    if result.unknown:
        unknown = list(dict.fromkeys(result.unknown))                   # each once, in order
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        print(f"not in the vocabulary, read as <unk>: {' '.join(unknown[:10])}{more}", file=sys.stderr)
    print(result.text)
    if args.plot is not None:
        from .tasks.translate_plots import plot_attention
        path = plot_attention(result.weights, result.source, result.target, args.plot)
        print(f"attention heatmap: {path}", file=sys.stderr)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    scores = translate.evaluate_run(args.run, beam=args.beam, length_penalty=args.length_penalty)
    print(f"test BLEU on {scores['sentences']} held-out sentences ({scores['references']} references): "
          f"greedy {scores['test_bleu_greedy']:.2f}, beam {scores['beam']} {scores['test_bleu_beam']:.2f} "
          f"(length penalty {scores['length_penalty']:g})")
    print(scores["signature"])
    return 0
