"""`unrolled lm train | sample | inspect`: the language-model sub-commands (see unrolled.cli)."""
from __future__ import annotations

import argparse

from .cli import (beam_width, dropout_rate, nonnegative_float, nonnegative_int, path_name, positive_float, positive_int,
                  probability, refuse_flags_with_resume, report_interrupted, utf8_text)
from .core.checks import counted
from .tasks import lm

# train flags that set a Config field of the same name (dashes become underscores)
CONFIG_FLAGS = ("data", "level", "max_vocab", "cell", "layers", "hidden", "embed", "dropout", "seq_len", "batch", "lr",
                "epochs", "minutes", "seed", "eval_every")
DEFAULT_OUT = "runs/lm"


def register(tasks) -> None:
    parser = tasks.add_parser("lm", help="language models: train on a text file, sample, inspect",
                              description="Character- and word-level recurrent language models.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train a language model (or continue one with --resume)",
                               description="Train a language model; explicit flags override the preset's values.")
    d = lm.Config()
    train.add_argument("--data", type=path_name, metavar="PATH", help="a UTF-8 text file (default: the bundled tiny Shakespeare)")
    train.add_argument("--level", choices=("char", "word"), help=f"tokens: characters or words (default {d.level})")
    train.add_argument("--max-vocab", type=positive_int, metavar="N",
                       help=f"word level: keep the N most frequent tokens, the rest are <unk> (default {d.max_vocab})")
    train.add_argument("--cell", choices=("rnn", "lstm", "gru"), help=f"recurrent cell (default {d.cell})")
    train.add_argument("--layers", type=positive_int, metavar="N", help=f"stacked layers (default {d.layers})")
    train.add_argument("--hidden", type=positive_int, metavar="N", help=f"units per layer (default {d.hidden})")
    train.add_argument("--embed", type=positive_int, metavar="N", help=f"embedding size (default {d.embed})")
    train.add_argument("--dropout", type=dropout_rate, metavar="P",
                       help=f"between layers and before the head (default {d.dropout})")
    train.add_argument("--seq-len", type=positive_int, metavar="N", help=f"truncated-BPTT chunk length (default {d.seq_len})")
    train.add_argument("--batch", type=positive_int, metavar="N", help=f"parallel streams (default {d.batch})")
    train.add_argument("--lr", type=positive_float, metavar="X", help=f"peak learning rate of Adam (default {d.lr})")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, metavar="N", help=f"passes over the training text (default {d.epochs})")
    budget.add_argument("--minutes", type=positive_float, metavar="M", help="minutes of training time instead of epochs")
    train.add_argument("--seed", type=nonnegative_int, metavar="S", help=f"weights, dropout and samples (default {d.seed})")
    train.add_argument("--eval-every", type=positive_int, metavar="N",
                       help=f"steps between evaluations and checkpoints (default {d.eval_every})")
    train.add_argument("--preset", choices=tuple(lm.PRESETS),
                       help="a measured configuration (quick: 5 minutes, full: 30 minutes); flags override it")
    train.add_argument("--out", type=path_name, metavar="DIR", help=f"a new run folder (default {DEFAULT_OUT})")
    train.add_argument("--resume", type=path_name, metavar="DIR", help="continue the run in DIR exactly where it stopped")
    train.set_defaults(func=run_train)

    sample = actions.add_parser("sample", help="generate text from a trained run, streamed as it is made")
    sample.add_argument("run", type=path_name, metavar="DIR")
    sample.add_argument("--prompt", type=utf8_text, metavar="TEXT", help="text to start from (default: a new line)")
    sample.add_argument("--length", type=positive_int, default=400, metavar="N", help="tokens to generate")
    sample.add_argument("--temperature", type=nonnegative_float, default=None, metavar="T",
                        help="0 picks the argmax (default 0.8)")
    sample.add_argument("--top-k", type=positive_int, metavar="K")
    sample.add_argument("--top-p", type=probability, metavar="P")
    sample.add_argument("--beam", type=beam_width, metavar="B", help="beam search of width B instead of sampling")
    sample.add_argument("--seed", type=nonnegative_int, metavar="S")
    sample.set_defaults(func=run_sample)

    inspect = actions.add_parser("inspect", help="heatmaps of hidden states and gates, the readable units and the gradient flow")
    inspect.add_argument("run", type=path_name, metavar="DIR")
    inspect.add_argument("--text", type=utf8_text, required=True, metavar="TEXT", help="the text to run the model over")
    inspect.add_argument("--out", type=path_name, metavar="DIR", help="where to write the plots and report.md (default DIR/inspect)")
    inspect.set_defaults(func=run_inspect)


def run_train(args: argparse.Namespace) -> int:
    given = {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}
    refuse_flags_with_resume(args, given)
    config = None if args.resume is not None else lm.config_from(args.preset, **given)
    if config is not None and "max_vocab" in given and config.level != "word":
        raise ValueError(f"--max-vocab applies to --level word only, but this run is at the {config.level} level.")
    run, state, interrupted = lm.train(config, out=args.out or DEFAULT_OUT, resume_from=args.resume)
    if interrupted:
        return report_interrupted("lm", state.step, run)
    best = "-" if state.best_val is None else f"{state.best_val:.4f}"
    print(f"done: {counted(state.step, 'step')}, {state.elapsed_s / 60:.1f} min of training, "
          f"best validation loss {best} nats/token; run in {run}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    sampling = [flag for flag, value in (("--temperature", args.temperature), ("--top-k", args.top_k),
                                         ("--top-p", args.top_p)) if value is not None]
    if args.beam is not None and sampling:
        raise ValueError(f"--beam searches for the most likely text and takes no {', '.join(sampling)}; "
                         "drop one or the other.")
    temperature = 0.8 if args.temperature is None else args.temperature
    lm.generate_from_run(args.run, prompt=args.prompt, length=args.length, temperature=temperature,
                         top_k=args.top_k, top_p=args.top_p, beam=args.beam, seed=args.seed)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from .tasks.lm_inspect import inspect_run  # matplotlib is loaded only for this
    print(inspect_run(args.run, args.text, out=args.out))
    return 0
