"""The `unrolled` command line: `unrolled <task> <action> [options]`, e.g. `unrolled lm train --preset quick`.

Each task's sub-commands live in their own module, listed in COMMANDS, which exposes
`register(subparsers)`: it adds the task's parser and sets `func` on each action (called with
the parsed arguments, returning an exit code). Adding a task is one line here.

Linear algebra runs on one BLAS thread (unless OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or
MKL_NUM_THREADS says otherwise): a recurrence is many small matrix products, for which extra
threads cost more in synchronisation than they gain, and on a busy machine far more.

Errors are sentences, not tracebacks: a bad flag, a bad file, a bad run folder (anything raising
ValueError or OSError) prints one line on stderr and exits with code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from . import __version__

COMMANDS = {
    "lm": "unrolled.cli_lm",
    "sentiment": "unrolled.cli_sentiment",
    "forecast": "unrolled.cli_forecast",
    "translate": "unrolled.cli_translate",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2), without the usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


# ----- argument types shared by the task modules -------------------------------------------------

def _number(kind, text: str, test, wanted: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not test(value):
        raise argparse.ArgumentTypeError(f"must be {wanted}, but was given {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: 0 < v < float("inf"), "a positive number")


def nonnegative_float(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < float("inf"), "a number >= 0")


def probability(text: str) -> float:
    return _number(float, text, lambda v: 0 < v <= 1, "a number in (0, 1]")


def dropout_rate(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < 1, "a number in [0, 1)")


# ----- the entry point ---------------------------------------------------------------------------

def blas_threads():
    """A context limiting BLAS to one thread, unless the environment chose a number (needs threadpoolctl)."""
    if any(name in os.environ for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with the cli extra; without it BLAS keeps its default
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="unrolled", description="Recurrent sequence models from scratch in NumPy.")
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    tasks = parser.add_subparsers(dest="command", required=True, metavar="TASK")
    for module in COMMANDS.values():
        importlib.import_module(module).register(tasks)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with blas_threads():
            return args.func(args) or 0
    except ValueError as e:
        print(f"unrolled: error: {e}", file=sys.stderr)
    except BrokenPipeError:  # `unrolled lm sample ... | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"unrolled: error:{where} {e.strerror or e}.", file=sys.stderr)
    except KeyboardInterrupt:
        print("unrolled: interrupted.", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
