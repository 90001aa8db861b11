"""The `unrolled` command line: `unrolled <task> <action> [options]`, e.g. `unrolled lm train --preset quick`.

Each task's sub-commands live in their own module, listed in COMMANDS, which exposes
`register(subparsers)`: it adds the task's parser and sets `func` on each action (called with
the parsed arguments, returning an exit code). Adding a task is one line here.

Linear algebra runs on one BLAS thread (unless OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or
MKL_NUM_THREADS says otherwise): a recurrence is many small matrix products, for which extra
threads cost more in synchronisation than they gain, and on a busy machine far more.

Errors are sentences, not tracebacks. Exit codes:
  0    done
  2    bad input: a bad flag, a bad file, a bad run folder or checkpoint (anything raising ValueError
       or OSError), or too little memory; one line on stderr, and no run folder is damaged
  3    training diverged (a NaN or infinite loss, gradient or parameter, see unrolled.train); one
       line naming the step and the parameter; the run keeps its last good checkpoint
  130  interrupted (Ctrl-C); a training run saves a checkpoint first

Every command that trains (`train`, `compare`) also takes `--on-nonfinite stop|skip`, added here so
that every task has it: "skip" skips a batch with a non-finite loss or gradient and halves the
learning rate instead of stopping.

NumPy's floating-point warnings (overflow, invalid value) are silenced: what matters of them, a loss
or gradient that is no longer finite, the training loop reports in one sentence.

Input files (`--data`, `--vectors`) must be regular files of at most MAX_INPUT_MB mebibytes (the
environment variable UNROLLED_MAX_INPUT_MB changes the limit): the loaders hold a file's text and
its tokens in memory, up to about twenty times its size, so a bigger file is refused in one
sentence before it is read rather than exhausting the machine's memory.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import shlex
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .train import NONFINITE_POLICIES, TrainingDiverged, nonfinite_policy

COMMANDS = {
    "lm": "unrolled.cli_lm",
    "sentiment": "unrolled.cli_sentiment",
    "forecast": "unrolled.cli_forecast",
    "translate": "unrolled.cli_translate",
}


TRAINING_ACTIONS = ("train", "compare")
INPUT_FILE_FLAGS = ("data", "vectors")
MAX_INPUT_MB = 256


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2), without the usage dump.

    A value such as "-0.1,0.5,0.6" (a list of numbers) is an option's value, as "-0.1" is, so that
    its own check explains what is wrong with it, not "expected one argument".
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d*\.?\d+([eE][-+]?\d+)?(,[-+\d.eE]*)*$")

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


def utf8_text(text: str) -> str:
    """A text argument whose bytes were UTF-8 (Python keeps other bytes as lone surrogates)."""
    try:
        os.fsencode(text).decode("utf-8")
    except UnicodeError:
        raise argparse.ArgumentTypeError("must be UTF-8 text, but its bytes are not") from None
    return text


def path_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must name a path, but was given {text!r}")
    return text


def png_path(text: str) -> str:
    if not text.lower().endswith(".png") or len(text) == 4:
        raise argparse.ArgumentTypeError(f"must name a .png file, but was given {text!r}")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must name a .png file, but {text} is a folder")
    return text


MAX_BEAM = 100  # far past where a wider beam helps; a width of thousands would run for hours


def beam_width(text: str) -> int:
    return _number(int, text, lambda v: 1 <= v <= MAX_BEAM, f"an integer from 1 to {MAX_BEAM}")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: 0 < v < float("inf"), "a positive number")


def nonnegative_float(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < float("inf"), "a number >= 0")


def probability(text: str) -> float:
    return _number(float, text, lambda v: 0 < v <= 1, "a number in (0, 1]")


def dropout_rate(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < 1, "a number in [0, 1)")


# ----- the entry point ---------------------------------------------------------------------------

def refuse_flags_with_resume(args: argparse.Namespace, given: dict) -> None:
    """`--resume` continues a run with its saved settings: any setting flag beside it is an error."""
    if args.resume is None:
        return
    extra = sorted(given) + (["preset"] if getattr(args, "preset", None) else []) + (["out"] if args.out else [])
    if extra:
        flags = ", ".join("--" + name.replace("_", "-") for name in extra)
        raise ValueError(f"--resume continues a run with its saved settings, so it takes no other flags, "
                         f"but was given {flags}.")


def blas_threads():
    """A context limiting BLAS to one thread, unless the environment chose a number (needs threadpoolctl)."""
    if any(name in os.environ for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with the cli extra; without it BLAS keeps its default
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of `parser`, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="unrolled", description="Recurrent sequence models from scratch in NumPy.")
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    tasks = parser.add_subparsers(dest="command", required=True, metavar="TASK")
    for module in COMMANDS.values():
        importlib.import_module(module).register(tasks)
    for task in _actions(parser).values():
        for name, action in _actions(task).items():
            if name in TRAINING_ACTIONS and "--on-nonfinite" not in action._option_string_actions:
                action.add_argument("--on-nonfinite", choices=NONFINITE_POLICIES,
                                    help="a NaN or infinite loss or gradient: stop (default; the run keeps its last "
                                         "good checkpoint) or skip the batch and halve the learning rate")
    return parser


def max_input_bytes() -> int:
    text = os.environ.get("UNROLLED_MAX_INPUT_MB", str(MAX_INPUT_MB))
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not 0 < megabytes < float("inf"):
        raise ValueError(f"UNROLLED_MAX_INPUT_MB must be a positive number of mebibytes, but is {text!r}.")
    return int(round(megabytes * 2**20))


def _mebibytes(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB" if size >= 100 * 2**20 else f"{size / 2**20:.3g} MiB"


def check_input_files(args: argparse.Namespace) -> None:
    """Refuse an input file that is a device or pipe, or bigger than the limit, before anything reads it."""
    for name in INPUT_FILE_FLAGS:
        value = getattr(args, name, None)
        if not isinstance(value, str) or not os.path.exists(value) or os.path.isdir(value):
            continue  # a missing file or a folder is the loader's to explain
        flag = "--" + name.replace("_", "-")
        if not os.path.isfile(value):
            raise ValueError(f"{flag} {value} is not a regular file (a device or a pipe); give a file on disk.")
        size, limit = os.path.getsize(value), max_input_bytes()
        if size > limit:
            raise ValueError(f"{flag} {value} holds {_mebibytes(size)}, more than the {_mebibytes(limit)} "
                             "allowed for an input file; use a smaller file or raise UNROLLED_MAX_INPUT_MB.")


def report_interrupted(task: str, step: int, run) -> int:
    """Say where a Ctrl-C stopped a training run and how to continue it; the exit code for it."""
    print(f"interrupted at step {step}: checkpoint saved; continue with "
          f"`unrolled {task} train --resume {shlex.quote(str(run))}`.", file=sys.stderr)
    return 130


def one_line(error: Exception) -> str:
    """The error's message on one line (a message that quotes a library's multi-line one is joined)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)  # imports the tasks: a Ctrl-C here is an interruption too
        check_input_files(args)
        with blas_threads(), nonfinite_policy(getattr(args, "on_nonfinite", None)), \
                np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return args.func(args) or 0
    except TrainingDiverged as e:
        print(f"unrolled: error: {one_line(e)}", file=sys.stderr)
        return 3
    except ValueError as e:
        print(f"unrolled: error: {one_line(e)}", file=sys.stderr)
    except MemoryError:
        print("unrolled: error: the machine ran out of memory; use a smaller data file, model or batch.", file=sys.stderr)
    except BrokenPipeError:  # `unrolled lm sample ... | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (FileExistsError, NotADirectoryError) as e:  # making a folder where a file is
        print(f"unrolled: error: {e.filename}: it, or a folder above it, is a file where a folder is needed.",
              file=sys.stderr)
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"unrolled: error:{where} {e.strerror or e}.", file=sys.stderr)
    except KeyboardInterrupt:
        print("unrolled: interrupted.", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
