"""Side-by-side speed of unrolled and torch.nn recurrent layers on the CPU, in one process.

    python benchmarks/bench_rnn.py            # the full table (a few minutes)
    python benchmarks/bench_rnn.py --quick    # tiny shapes, a smoke run

Both libraries get the same float32 weights and inputs and 2 threads; runs alternate (ours, torch,
ours, torch, ...) so that a change in machine load hits both, and each row reports the medians,
the ratio ours/torch (< 1 means we are faster), our effective GFLOP/s and the peak memory of one
call, measured as the growth of the resident set in a forked child process.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402  (after the thread settings)
import torch  # noqa: E402

import unrolled  # noqa: E402
from unrolled import no_grad  # noqa: E402

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
TRAIN_SHAPES = [  # (T, B, input, hidden, layers)
    (100, 64, 128, 256, 1),
    (200, 64, 128, 128, 1),
    (50, 32, 64, 512, 1),
    (100, 32, 256, 256, 2),
]
QUICK_SHAPES = [(10, 4, 8, 16, 1), (6, 3, 8, 8, 2)]


def pair(kind: str, I: int, H: int, L: int, seed: int = 0):
    """Our layer and torch's with the same weights."""
    ours = getattr(unrolled, kind)(I, H, L, seed=seed)
    theirs = getattr(torch.nn, kind)(I, H, L)
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    return ours, theirs


def train_flops(kind: str, T: int, B: int, I: int, H: int, L: int) -> float:
    """Multiply-adds x 2 of forward (input and recurrent GEMMs) times 3 for forward + backward."""
    G = GATES[kind]
    forward = sum(2 * T * B * ((I if l == 0 else H) + H) * G * H for l in range(L))
    return 3.0 * forward


def interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each callable, calling them in turn `repeats` times."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_child(fn, queue) -> None:
    before = _rss_bytes()
    fn()
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)


def peak_memory(fn) -> int:
    """Bytes the resident set grows by while `fn` runs once, in a forked child."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_peak_child, args=(fn, queue))
    child.start()
    grown = queue.get()
    child.join()
    return max(int(grown), 0)


def training_step_fns(kind: str, T: int, B: int, I: int, H: int, L: int):
    ours, theirs = pair(kind, I, H, L)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    d_out = rng.standard_normal((T, B, H)).astype(np.float32)
    xt, d_out_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(d_out)

    def step_ours():
        out, _ = ours(x)
        ours.backward(d_out)

    def step_torch():
        out, _ = theirs(xt)
        out.backward(d_out_t)

    return step_ours, step_torch


def inference_step_fns(kind: str, I: int, H: int, L: int):
    ours, theirs = pair(kind, I, H, L)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 1, I)).astype(np.float32)
    h = np.zeros((L, 1, H), np.float32)
    state = (h, h.copy()) if kind == "LSTM" else h
    xt = torch.from_numpy(x)
    state_t = tuple(torch.from_numpy(s) for s in state) if kind == "LSTM" else torch.from_numpy(h)

    def step_ours():
        with no_grad():
            ours(x, state)

    def step_torch():
        with torch.inference_mode():
            theirs(xt, state_t)

    return step_ours, step_torch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per library and row")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    shapes = QUICK_SHAPES if args.quick else TRAIN_SHAPES
    repeats = args.repeats or (3 if args.quick else 15)
    step_size = (16, 16, 2) if args.quick else (512, 512, 2)

    print(f"training step (forward + backward), float32, {THREADS} threads, median of {repeats} interleaved runs")
    print(f"{'cell':5} {'T':>4} {'B':>3} {'in':>4} {'hid':>4} {'L':>2} | {'ours ms':>8} {'torch ms':>8} "
          f"{'ratio':>6} | {'GFLOP/s':>7} | {'ours MB':>7} {'torch MB':>8}")
    for kind in ("RNN", "LSTM", "GRU"):
        for T, B, I, H, L in shapes:
            ours, theirs = training_step_fns(kind, T, B, I, H, L)
            t = interleaved({"ours": ours, "torch": theirs}, repeats)
            mem_o, mem_t = peak_memory(ours), peak_memory(theirs)
            gflops = train_flops(kind, T, B, I, H, L) / t["ours"] / 1e9
            print(f"{kind:5} {T:4d} {B:3d} {I:4d} {H:4d} {L:2d} | {t['ours'] * 1e3:8.2f} {t['torch'] * 1e3:8.2f} "
                  f"{t['ours'] / t['torch']:6.2f} | {gflops:7.1f} | {mem_o / 2**20:7.1f} {mem_t / 2**20:8.1f}", flush=True)

    I, H, L = step_size
    print(f"\nsingle-step inference at batch 1, {L} layers x {H} units, median of {repeats * 20} interleaved calls")
    print(f"{'cell':5} | {'ours us':>8} {'torch us':>8} {'ratio':>6}")
    for kind in ("LSTM", "GRU"):
        ours, theirs = inference_step_fns(kind, I, H, L)
        t = interleaved({"ours": ours, "torch": theirs}, repeats * 20, warmup=20)
        print(f"{kind:5} | {t['ours'] * 1e6:8.1f} {t['torch'] * 1e6:8.1f} {t['ours'] / t['torch']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
