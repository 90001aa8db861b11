"""How the recurrent layers use two cores: BLAS on one thread, large GEMMs on a helper thread.

A recurrence is a chain of small GEMMs, one per time step. Split over two BLAS threads, each of
them waits for a hand-over between cores; on a busy machine the other core is often taken and
that wait dominates (an LSTM training step of T=100, B=64, H=256 took 2.7 s with OpenBLAS on 2
threads and 0.36 s on 1, at a load average of 5 to 7 on 2 cores). So while a layer runs,
`one_blas_thread()` sets OpenBLAS to one thread, and the layer gets its parallelism from
`Overlap`: the large GEMMs that do not lie on the recurrence's critical path (input projections
of later time chunks, weight gradients of finished chunks) run on a helper thread while the
caller's thread goes on with the recurrence (or, in a large layer's forward pass, runs the
recurrence of half the batch while the caller runs the other half).
NumPy releases the GIL inside BLAS calls and large ufuncs, so the two really run at once.

The thread count is set through ctypes on the OpenBLAS that NumPy loaded (NumPy's wheels bundle
it as scipy-openblas, with prefixed symbols; distributions link a plain libopenblas). When no such
library is found (NumPy on MKL, Accelerate, BLIS...), `one_blas_thread()` does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_SYMBOLS = [  # (set, get) pairs, NumPy's bundled build first
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
]


def _candidate_libraries() -> list[str]:
    """OpenBLAS shared libraries: NumPy's bundled copies first, then any already mapped in."""
    root = os.path.dirname(np.__file__)
    paths = glob.glob(os.path.join(root, "..", "numpy.libs", "*openblas*"))
    paths += glob.glob(os.path.join(root, ".dylibs", "*openblas*"))
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        paths += sorted({line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]})
    return paths


def _find_controls():
    """(set_num_threads, get_num_threads) ctypes functions, or None."""
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                return getattr(lib, set_name), getattr(lib, get_name)
    return None


_CONTROLS = _find_controls()
_lock = threading.Lock()
_depth, _saved = 0, 0


@contextlib.contextmanager
def one_blas_thread():
    """Run the block with OpenBLAS on one thread, then restore the previous count (re-entrant)."""
    global _depth, _saved
    if _CONTROLS is None:
        yield
        return
    set_threads, get_threads = _CONTROLS
    with _lock:
        if _depth == 0:
            _saved = get_threads()
            set_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                set_threads(_saved)


_helper: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _helper
    with _lock:                                           # two threads' first layers share one helper
        if _helper is None:
            _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unrolled-overlap")
        return _helper


def _after_fork_in_child() -> None:
    """A forked child keeps only the forking thread: it starts its own helper when it needs one."""
    global _helper, _lock
    _helper, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _with_errstate(settings: dict, call, fn, args):
    """fn(*args) under the floating-point error settings (and error callback) of the thread that
    queued it."""
    with np.errstate(**settings, call=call):
        return fn(*args)


class Job:
    """One call queued on the helper thread. `join()` waits for it; a shareable job (one whose
    outputs no other job touches) that has not started yet is run by the caller instead. An
    ordered job may run on the caller too, but only after every ordered job queued before it
    (see `Overlap.finish`): jobs that add into the same arrays keep their order, so their sums
    keep their bits."""

    def __init__(self, fn, args, shareable: bool, ordered: bool = False):
        self.fn, self.args, self.shareable, self.ordered = fn, args, shareable, ordered
        self.future = _executor().submit(_with_errstate, np.geterr(), np.geterrcall(), fn, args)  # the caller's
        self.joined = False

    def join(self) -> None:
        if self.joined:
            return
        if self.shareable and self.future.cancel():
            self.run_here()
        else:
            self.future.result()                            # re-raises the job's exception
        self.joined = True

    def run_here(self) -> None:
        """Run a job whose future the caller has cancelled."""
        self.fn(*self.args)
        self.joined = True


class Overlap:
    """A group of jobs run in order on the helper thread while the caller keeps working.

    Used as a context manager: a normal exit finishes the group; when the block raises (an error,
    Ctrl-C), the jobs the helper has not started are cancelled and the one it is running is waited
    for, so nothing of the group writes into the caller's arrays after the error has left."""

    def __init__(self):
        self.jobs: list[Job] = []

    def submit(self, fn, *args, shareable: bool = False, ordered: bool = False) -> Job:
        if shareable and ordered:
            raise ValueError("a job is shareable (any order) or ordered, not both.")
        job = Job(fn, args, shareable, ordered)
        self.jobs.append(job)
        return job

    @staticmethod
    def wait(jobs) -> None:
        for job in jobs:
            job.join()

    def finish(self) -> None:
        """Wait for every job of the group, taking a share of what the helper has not started.

        The caller claims the ordered jobs the helper has not reached (a suffix of them, as the
        helper works from the front), runs the unstarted shareable jobs latest first, then the
        claimed ordered jobs in their order once the helper has finished the earlier ones.
        """
        jobs = self.jobs
        ordered = [job for job in jobs if job.ordered and not job.joined]
        claimed = 0
        while claimed < len(ordered) and ordered[-1 - claimed].future.cancel():
            claimed += 1
        self.wait([job for job in reversed(jobs) if job.shareable])
        self.wait(ordered[:len(ordered) - claimed])
        for job in ordered[len(ordered) - claimed:]:
            job.run_here()
        self.wait(jobs)
        self.jobs = []

    def __enter__(self) -> "Overlap":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.finish()
            return
        jobs, self.jobs = self.jobs, []
        for job in reversed(jobs):                        # from the back: the helper cannot start them meanwhile
            job.future.cancel()
        for job in jobs:
            if not job.future.cancelled():
                job.future.exception()                    # waits; the error that leaves is the block's
