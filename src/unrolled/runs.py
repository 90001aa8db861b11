"""Run folders: atomic file writes, config.json, metrics.jsonl and a progress bar.

A training run owns one folder:

    run/
      config.json      what was asked for (written once, before training starts)
      checkpoint.npz   + checkpoint.json, the latest state (see unrolled.checkpoint)
      best.npz         + best.json, the state with the lowest validation loss so far
      metrics.jsonl    one JSON object per evaluation
      samples.txt      task outputs written at each evaluation, in sections headed "=== step N, ..."
      plots/*.png      and other task outputs (report.md, ...)
      .lock            held (flock) by the process training the run

Every file is written atomically: a temporary file in the same folder, flushed and fsync'ed, then
`os.replace`d over the target, so a run killed at any moment leaves either the old file or the new
one, never half of one (a kill mid-write leaves a `.<name>.*.tmp` file, removed when the run is
next trained). Resuming drops what the run wrote after its checkpoint (metrics records and
samples.txt sections of later steps), since those steps run again. A run killed before its first
checkpoint has nothing to resume: the same --out starts it again.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import secrets
import shlex
import stat
import sys
from pathlib import Path
from typing import Callable, IO

try:
    import fcntl
except ImportError:  # not on Windows: runs there are not locked
    fcntl = None

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.txt"
LOCK = ".lock"
_SECTION = re.compile(r"^=== step (\d+)\b", re.MULTILINE)


def atomic_write(path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then move it over `path`.

    The file keeps the permissions it had; a new one gets 0666 less the umask (the temporary file is
    created so), as an ordinary write would give it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"expected a file to write at {path}, but it is a folder.")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: the folder {path.parent} does not exist.")
    try:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:  # named by the file asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        if path.is_file() and hasattr(os, "fchmod"):
            os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fsync_folder(folder) -> None:
    """Make the renames in `folder` durable across a power cut (a kill needs no more than `os.replace`;
    a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path, what: str) -> dict:
    """A JSON object from `path`; a missing or unreadable file is a ValueError naming `what`."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"expected {what} at {path}, but there is no such file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"expected {what} at {path} to be readable JSON, but reading it failed ({e}).") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected {what} at {path} to hold a JSON object, but it holds a {type(obj).__name__}.")
    return obj


# ----- the run folder ----------------------------------------------------------------------------

def create_run(out, config: dict) -> Path:
    """Make the run folder `out` (and `out/plots`) and write config.json; refuses to reuse a run.

    A folder whose run was stopped before its first checkpoint (config.json but no checkpoint) is
    started afresh: its metrics and samples are removed, since nothing of them can be continued.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder, but {out} is a file.")
    if (out / CONFIG).exists():
        from .checkpoint import has_checkpoint  # checkpoint.py builds on this module
        task = read_json(out / CONFIG, f"a run's {CONFIG}").get("task")
        if task != config.get("task"):
            held = f"a '{task}' run" if task else "a config.json"
            raise ValueError(f"{out} already holds {held}; choose another --out.")
        if has_checkpoint(out) or has_checkpoint(out, "best"):
            raise ValueError(f"{out} already holds a run; continue it with --resume {shlex.quote(str(out))} or "
                             "choose another --out.")
    elif out.is_dir() and not unstarted(out):
        raise ValueError(f"{out} holds files that are not a run; choose an empty or new folder for --out.")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    lock_run(out)
    for name in (METRICS, SAMPLES):
        (out / name).unlink(missing_ok=True)
    remove_temporaries(out)
    write_json(out / CONFIG, config)
    return out


def unstarted(folder) -> bool:
    """An empty folder, or one that create_run began (an empty plots/ and the lock) before a kill cut
    it short of config.json."""
    return all(p.name == LOCK or (p.name == "plots" and p.is_dir() and not any(p.iterdir()))
               for p in Path(folder).iterdir())


def is_run(folder) -> bool:
    """Whether `folder` holds a run: a config.json naming its task (not merely someone's config.json)."""
    try:
        return "task" in read_json(Path(folder) / CONFIG, CONFIG)
    except ValueError:
        return False


def outside_runs(path, flag: str, run=None, own: str | None = None) -> Path:
    """The file a command's `flag` names for its output, refused inside a run folder (whose files it
    could replace) but as `own`, the command's own file (a path within) in its own `run`."""
    path = Path(path)
    target = path.resolve()
    for folder in target.parents:                                         # the nearest run: its files
        if (folder / CONFIG).is_file() and any((folder / f).is_file() for f in (METRICS, "checkpoint.json")) \
                and is_run(folder):
            if own is None or run is None or target != Path(run).resolve() / own:
                elsewhere = f", or {own} in {run}" if own and run is not None else ""
                raise ValueError(f"{flag} {path} is in the run folder {folder}, whose own files it could replace; "
                                 f"name a file elsewhere{elsewhere}.")
            break
    return path


def read_config(run, task: str) -> dict:
    """The config.json of a run folder made by `task`; anything else is a ValueError."""
    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"expected a run folder, but {run} is not a folder.")
    config = read_json(run / CONFIG, f"a run's {CONFIG}")
    if config.get("task") != task:
        raise ValueError(f"expected a '{task}' run in {run}, but its {CONFIG} is for task '{config.get('task')}'.")
    return config


def load_config(run, task: str, cls):
    """The config.json of a `task` run as a `cls` (the task's Config), a value it refuses (say, edited
    by hand) named with the file."""
    values = read_config(run, task)
    try:
        check_types(cls, values)
        return cls.from_dict(values)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{Path(run) / CONFIG} does not hold a valid config: {str(e).rstrip('.')}.") from None


_JSON_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "None": type(None),
               "list": (list, tuple), "tuple": (list, tuple)}


def check_types(cls, values: dict) -> None:
    """Refuse a value of the wrong JSON type for a field of the dataclass `cls` (its annotation, such as
    "float | None" or "list[str]"), so that a hand-edited config.json is named, not a TypeError deep inside."""
    for field in dataclasses.fields(cls):
        if field.name in values and not _fits(str(field.type), values[field.name]):
            raise ValueError(f"{field.name} must be {field.type}, but is {json.dumps(values[field.name])}")


def _fits(annotation: str, value) -> bool:
    for option in (part.strip() for part in annotation.split("|")):
        base, _, inner = option.partition("[")
        kind = _JSON_TYPES.get(base)
        if kind is None:                                                  # a type this check does not know
            return True
        if isinstance(value, bool) and base in ("int", "float"):
            continue                                                      # JSON's true is not a number
        if isinstance(value, kind) and (not inner or all(_fits(inner.split(",")[0].rstrip("]"), v) for v in value)):
            return True
    return False


def remove_temporaries(run) -> None:
    """Delete the `.<name>.*.tmp` files that a kill in the middle of an atomic write left behind."""
    for path in Path(run).glob(".*.tmp"):
        path.unlink(missing_ok=True)


# ----- one trainer per run -----------------------------------------------------------------------

_HELD: dict[str, int] = {}


def lock_run(run) -> None:
    """Hold the run folder for this process (an exclusive flock on `run/.lock`) until `release_run`.

    `create_run` takes it, `fit` holds it while training and releases it when done. A second
    process that tries to train the same run gets a ValueError instead of interleaving its
    checkpoints with the first one's. The kernel drops the lock when the process dies, however
    it dies, so a killed run never stays locked. Holding it again in the same process is a no-op.
    """
    key = os.path.realpath(run)
    if fcntl is None or key in _HELD:
        return
    fd = os.open(os.path.join(key, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError(f"{run} is being trained by another process right now; wait for it to finish "
                         "or stop it first.") from None
    _HELD[key] = fd


def release_run(run) -> None:
    fd = _HELD.pop(os.path.realpath(run), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


# ----- metrics and samples -----------------------------------------------------------------------

def read_metrics(run) -> list[dict]:
    """Every complete record of metrics.jsonl (a torn last line, from a kill mid-write, is skipped)."""
    path = Path(run) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def finished(run, key: str) -> bool:
    """Whether the run's metrics.jsonl ends with its closing record (the one holding `key`), which
    a task writes last, once its test scores, report and plots are written."""
    records = read_metrics(run)
    return bool(records) and key in records[-1]


def append_metrics(run, record: dict) -> None:
    """Append one JSON line to metrics.jsonl and make it durable."""
    with open(Path(run) / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_metrics(run, last_step: int) -> None:
    """Keep only the records up to `last_step`: on resume, what came after the checkpoint is redone."""
    kept = [r for r in read_metrics(run) if r.get("step", 0) <= last_step]
    atomic_write_text(Path(run) / METRICS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


def truncate_samples(run, last_step: int) -> None:
    """Keep only the samples.txt sections ("=== step N, ...") up to `last_step`, as truncate_metrics."""
    path = Path(run) / SAMPLES
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    for match in _SECTION.finditer(text):
        if int(match.group(1)) > last_step:
            atomic_write_text(path, text[:match.start()])
            return


# ----- progress --------------------------------------------------------------------------------

def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """A tqdm bar over training steps showing loss, tokens/s and the time left of the budget.

    With a step budget the bar counts steps; with a time budget (`total_steps=None`) it shows the
    fraction of `budget_s` spent. `enabled=False` (or tqdm missing) makes every call a no-op.
    """

    def __init__(self, total_steps: int | None, budget_s: float | None, initial_step: int = 0,
                 initial_s: float = 0.0, enabled: bool = True, desc: str = "train", rate: str = "tok/s"):
        self.total_steps, self.budget_s, self.rate = total_steps, budget_s, rate
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # the engine runs without the cli extra; the bar is a nicety
            return
        # on a terminal the bar redraws twice a second; in a log file it adds a line every 30 s
        style = dict(desc=desc, dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0, file=sys.stderr)
        if total_steps is not None:
            self.bar = tqdm(total=total_steps, initial=initial_step, unit="step",
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps{postfix}", **style)
        else:
            self.bar = tqdm(total=round(budget_s), initial=round(initial_s), unit="s",
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s{postfix}", **style)

    def update(self, step: int, elapsed_s: float, loss: float, tokens_per_s: float, seconds_per_step: float) -> None:
        if self.bar is None:
            return
        if self.total_steps is not None:
            left = (self.total_steps - step) * seconds_per_step
            position = step
        else:
            left = self.budget_s - elapsed_s
            position = min(round(elapsed_s), self.bar.total)
        loss_text = f"{loss:.3f}" if math.isfinite(loss) else "-"
        self.bar.set_postfix_str(f"loss {loss_text}, {tokens_per_s:,.0f} {self.rate}, {format_duration(left)} left",
                                 refresh=False)
        self.bar.update(position - self.bar.n)  # redraws only when `mininterval` has passed

    def write(self, text: str) -> None:
        """Print a line above the bar (nothing when the bar is off)."""
        if self.bar is None:
            return
        self.bar.write(text)

    def note(self, text: str) -> None:
        """Print a line on stderr that matters even without the bar (above the bar when there is one)."""
        if self.bar is None:
            print(text, file=sys.stderr)
        else:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
