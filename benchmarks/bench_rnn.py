"""Side-by-side speed of unrolled and torch.nn recurrent layers on the CPU, in one process.

    python benchmarks/bench_rnn.py            # the full table (several minutes)
    python benchmarks/bench_rnn.py --quick    # tiny shapes, a smoke run
    python benchmarks/bench_rnn.py --torch-onednn off   # torch's own kernels, not oneDNN's fused LSTM

Both libraries get the same float32 weights and inputs and 2 threads; runs alternate (ours, torch,
ours, torch, ...) so that a change in machine load hits both, and each row reports the medians,
the ratio ours/torch (< 1 means we are faster), the effective GFLOP/s of both (the GEMM work of a
training step over its median time) and the peak memory of one training step. Peak memory is
measured in a fresh process per library, before the timings: per row, the growth of the resident
set's high-water mark over one step after a warm-up step, with glibc returning large blocks to
the system at once (MALLOC_MMAP_THRESHOLD_) so that memory a previous step freed is not reused.
The load average is printed with the table: the machine may be shared.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
import time

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402  (after the thread settings)
import torch  # noqa: E402

import unrolled  # noqa: E402
from unrolled import no_grad  # noqa: E402
from unrolled.rnn import recurrent  # noqa: E402

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
TRAIN_SHAPES = [  # (T, B, input, hidden, layers)
    (100, 64, 128, 256, 1),
    (200, 64, 128, 128, 1),
    (50, 32, 64, 512, 1),
    (100, 32, 256, 256, 2),
]
QUICK_SHAPES = [(10, 4, 8, 16, 1), (6, 3, 8, 8, 2)]
SPLIT_WORK = {"auto": recurrent.MIN_SPLIT_WORK, "always": 0, "never": float("inf")}  # --split
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0"}  # large blocks mmapped, frees returned


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


def training_step_fns(kind: str, T: int, B: int, I: int, H: int, L: int):
    ours, theirs = pair(kind, I, H, L)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    d_out = rng.standard_normal((T, B, H)).astype(np.float32)
    xt, d_out_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(d_out)

    def step_ours():
        ours(x)
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


# ----- peak memory, in a fresh process per measurement -----------------------------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _report_peaks(library: str, quick: bool) -> None:
    """Child side: per row, print the bytes the resident set peaks above its start during one step."""
    torch.set_num_threads(THREADS)
    for kind, shape in rows(quick):
        step = training_step_fns(kind, *shape)[0 if library == "ours" else 1]
        step()                                              # warm-up: lazy initialisation, thread pools
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                                    # high-water mark := current size
        before = _status_kb("VmRSS")
        step()
        print((_status_kb("VmHWM") - before) * 1024, flush=True)
        del step
        gc.collect()


def peak_memory(quick: bool, split: str, onednn: str) -> dict[str, list[int]]:
    """{library: peak bytes per row}, both libraries measured at once in two fresh processes."""
    env = dict(os.environ, **MALLOC)
    children = {lib: subprocess.Popen([sys.executable, os.path.abspath(__file__), "--peak-of", lib,
                                       "--split", split, "--torch-onednn", onednn] + (["--quick"] if quick else []),
                                      env=env, stdout=subprocess.PIPE, text=True)
                for lib in ("ours", "torch")}
    peaks = {}
    for lib, child in children.items():
        out, _ = child.communicate()
        if child.returncode:
            raise RuntimeError(f"the peak-memory run of {lib} failed with exit code {child.returncode}")
        peaks[lib] = [int(v) for v in out.split()]
    return peaks


# ----- the table ---------------------------------------------------------------------------------

def machine() -> str:
    model = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, load average {load}"


def rows(quick: bool) -> list[tuple[str, tuple]]:
    return [(kind, shape) for kind in ("RNN", "LSTM", "GRU") for shape in (QUICK_SHAPES if quick else TRAIN_SHAPES)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per library and row")
    parser.add_argument("--split", choices=tuple(SPLIT_WORK), default="auto",
                        help="the forward batch split between two threads: by layer size (default), for "
                             "every batch of 16 or more, or never")
    parser.add_argument("--torch-onednn", choices=("on", "off"), default="on",
                        help="torch's LSTM on the CPU runs oneDNN's fused kernel where it can (default, as "
                             "torch.nn does), or with off torch's own, GEMMs and elementwise kernels as ours")
    parser.add_argument("--peak-of", choices=("ours", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    recurrent.MIN_SPLIT_WORK = SPLIT_WORK[args.split]
    torch.backends.mkldnn.enabled = args.torch_onednn == "on"
    if args.peak_of:
        _report_peaks(args.peak_of, args.quick)
        return
    torch.set_num_threads(THREADS)
    repeats = args.repeats or (2 if args.quick else 11)
    calls, warmup = (10, 2) if args.quick else (repeats * 20, 20)
    I, H, L = (16, 16, 2) if args.quick else (512, 512, 2)
    peaks = peak_memory(args.quick, args.split, args.torch_onednn)

    print(f"machine: {machine()}")
    print(f"training step (forward + backward), float32, {THREADS} threads, median of {repeats} interleaved runs"
          + ("" if args.split == "auto" else f", batch split {args.split}")
          + ("" if torch.backends.mkldnn.enabled else ", torch without oneDNN"))
    print(f"{'cell':5} {'T':>4} {'B':>3} {'in':>4} {'hid':>4} {'L':>2} | {'ours ms':>8} {'torch ms':>8} "
          f"{'ratio':>6} | {'GFLOP/s':>7} {'torch':>6} | {'ours MB':>7} {'torch MB':>8}")
    for row, (kind, shape) in enumerate(rows(args.quick)):
        ours, theirs = training_step_fns(kind, *shape)
        t = interleaved({"ours": ours, "torch": theirs}, repeats, warmup=1 if args.quick else 2)
        flops = train_flops(kind, *shape) / 1e9
        T, B, I_, H_, L_ = shape
        print(f"{kind:5} {T:4d} {B:3d} {I_:4d} {H_:4d} {L_:2d} | {t['ours'] * 1e3:8.2f} {t['torch'] * 1e3:8.2f} "
              f"{t['ours'] / t['torch']:6.2f} | {flops / t['ours']:7.1f} {flops / t['torch']:6.1f} | "
              f"{peaks['ours'][row] / 2**20:7.1f} {peaks['torch'][row] / 2**20:8.1f}", flush=True)

    print(f"\nsingle-step inference at batch 1, {L} layers x {H} units, median of {calls} interleaved calls")
    print(f"{'cell':5} | {'ours us':>8} {'torch us':>8} {'ratio':>6}")
    for kind in ("LSTM", "GRU"):
        ours, theirs = inference_step_fns(kind, I, H, L)
        t = interleaved({"ours": ours, "torch": theirs}, calls, warmup)
        print(f"{kind:5} | {t['ours'] * 1e6:8.1f} {t['torch'] * 1e6:8.1f} {t['ours'] / t['torch']:6.2f}", flush=True)
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
