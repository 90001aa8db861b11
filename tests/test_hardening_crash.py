"""Crash safety: `unrolled lm train` killed with SIGKILL at 25 moments, resumed each time, equals one run.

The kills are seeded and spread over the whole run: two during start-up (before or just after the
first checkpoint), eighteen a random instant after the run's checkpoint reaches a random step, one
in each eighteenth of the first 90% of the run (so they land in training steps, evaluations,
sampling and checkpoint writes alike), and five from inside the checkpoint writer itself: half-way
through writing a file, or right after one of the renames of a save (the torn pair of new arrays
and old metadata included). After every kill the
run folder must load; the next command resumes it (or, before its first checkpoint, starts it again
with the same --out), and the final checkpoint, best weights, metrics (timings aside) and samples
equal those of an uninterrupted run bit for bit.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from unrolled.checkpoint import has_checkpoint, load_checkpoint
from unrolled.runs import read_metrics

FIXTURE = Path(__file__).parent / "fixtures" / "tinyshakespeare_4k.txt"
TRAIN = ["lm", "train", "--data", str(FIXTURE), "--hidden", "16", "--embed", "8", "--layers", "1", "--seq-len", "8",
         "--batch", "4", "--lr", "0.01", "--seed", "1", "--epochs", "1", "--eval-every", "4"]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
TIMES = ("elapsed_s", "wall_s", "tokens_per_s")

# The command line with unrolled.checkpoint's writer wrapped: on its N-th call in this process it
# SIGKILLs the process half-way through writing ("mid") or right after the file is renamed ("after").
SELF_KILL = r"""
import io, os, signal, sys
import unrolled.checkpoint as checkpoint
from unrolled.cli import main

target, mode, calls, original = int(sys.argv[1]), sys.argv[2], [0], checkpoint.atomic_write

def atomic_write(path, write):
    calls[0] += 1
    if calls[0] == target and mode == "mid":
        def torn(f):
            buffer = io.BytesIO()
            write(buffer)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        original(path, torn)
    original(path, write)
    if calls[0] == target and mode == "after":
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.atomic_write = atomic_write
sys.exit(main(sys.argv[3:]))
"""


def _command(args, self_kill=None):
    if self_kill is None:
        return [sys.executable, "-m", "unrolled.cli", *args]
    return [sys.executable, "-c", SELF_KILL, str(self_kill[0]), self_kill[1], *args]


def _checkpoint_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint.json").read_text())["step"]
    except (OSError, ValueError):
        return -1


def _plans(rng, total_steps: int) -> list[tuple]:
    """("startup", seconds) x2, then ("step", step, jitter) x18, one in each eighteenth of the first 90% of
    the run, with ("self", call, mode) x5 among the first ones (a segment ends within its first 3 saves)."""
    edges = np.linspace(1, 0.9 * total_steps, 19)
    progress = [("step", int(rng.uniform(lo, hi)), float(rng.uniform(0.0, 0.05))) for lo, hi in zip(edges, edges[1:])]
    self_kills = [("self", int(rng.integers(1, 7)), mode) for mode in ("mid", "after", "after", "mid", "after")]
    plans = [("startup", float(rng.uniform(0.05, 0.8))) for _ in range(2)]
    for i, plan in enumerate(progress):
        plans.append(plan)
        if i in (1, 4, 7, 10, 13):
            plans.append(self_kills.pop())
    return plans


def _assert_same_run(a: Path, b: Path):
    arrays_a, meta_a = load_checkpoint(a)
    arrays_b, meta_b = load_checkpoint(b)
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        assert arrays_a[key].dtype == arrays_b[key].dtype and np.array_equal(arrays_a[key], arrays_b[key]), key
    assert meta_a["rng"] == meta_b["rng"] and meta_a["step"] == meta_b["step"]
    best_a, best_b = load_checkpoint(a, "best"), load_checkpoint(b, "best")
    assert best_a[1]["step"] == best_b[1]["step"]
    assert all(np.array_equal(best_a[0][k], best_b[0][k]) for k in best_a[0])
    strip = lambda records: [{k: v for k, v in r.items() if k not in TIMES} for r in records]
    assert strip(read_metrics(a)) == strip(read_metrics(b))
    assert (a / "samples.txt").read_text() == (b / "samples.txt").read_text()


def test_sigkill_at_25_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    done = subprocess.run(_command([*TRAIN, "--out", str(reference)]), capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    total = load_checkpoint(reference)[1]["step"]
    assert total > 100

    run = tmp_path / "run"
    start, again = [*TRAIN, "--out", str(run)], ["lm", "train", "--resume", str(run)]
    rng = np.random.default_rng(8)
    killed_at, litter, torn = [], 0, 0
    for plan in _plans(rng, total):
        if killed_at and killed_at[-1] == total:
            break  # a kill landed after the last checkpoint (while plotting): the run is complete
        args = again if has_checkpoint(run) else start
        proc = subprocess.Popen(_command(args, plan[1:] if plan[0] == "self" else None), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if plan[0] == "startup":
            time.sleep(plan[1])
        elif plan[0] == "step":
            deadline = time.time() + 60
            while proc.poll() is None and _checkpoint_step(run) < plan[1] and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(plan[2])
        proc.send_signal(signal.SIGKILL) if plan[0] != "self" else None
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"{plan}: exit {proc.returncode}: {err}"
        litter += bool(list(run.glob(".*.tmp")))
        torn += (run / ".checkpoint.json.pending").exists()
        if has_checkpoint(run):  # the folder always loads, whatever the moment of the kill
            arrays, meta = load_checkpoint(run)
            assert "model/encoder.weight" in arrays
            if has_checkpoint(run, "best"):
                load_checkpoint(run, "best")
            killed_at.append(meta["step"])
        else:
            killed_at.append(None)  # stopped before its first checkpoint: the same --out starts it again
    assert len(killed_at) >= 20 and litter >= 2 and torn >= 1
    steps = [s for s in killed_at if s is not None]
    # spread over the whole run (how early the first lands depends on the machine's speed)
    assert len(set(steps)) >= 8 and max(steps) > 0.8 * total
    if killed_at[-1] != total:
        done = subprocess.run(_command(again), capture_output=True, text=True, env=ENV, timeout=120)
        assert done.returncode == 0, done.stderr
    _assert_same_run(reference, run)
    assert not list(run.glob(".*.tmp")) and not list(run.glob(".*.pending"))
