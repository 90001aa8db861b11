"""The side-by-side benchmark runs end to end (`bench_rnn.py --quick`: tiny shapes, few repeats)
and prints a complete table: every training row with both medians, the ratio, both GFLOP/s and
both peak memories, then the inference rows. Its numbers are not judged here."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rnn.py"
NUMBER = r"(\d+\.\d+)"


@pytest.mark.parametrize("onednn", ["on", "off"])
def test_quick_benchmark_prints_the_full_table(onednn):
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--torch-onednn", onednn], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "load average" in lines[0]
    assert lines[1].endswith(", torch without oneDNN") == (onednn == "off")

    train = [re.fullmatch(rf"(RNN|LSTM|GRU)\s+(\d+\s+){{5}}\|\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\|"
                          rf"\s+{NUMBER}\s+{NUMBER}\s+\|\s+{NUMBER}\s+{NUMBER}", line) for line in lines]
    train = [m for m in train if m]
    assert [m.group(1) for m in train] == ["RNN"] * 2 + ["LSTM"] * 2 + ["GRU"] * 2
    for m in train:
        ours, torch_, ratio = (float(m.group(k)) for k in (3, 4, 5))
        assert ours > 0 and torch_ > 0
        assert abs(ratio - ours / torch_) <= 0.01 + 0.1 * ratio  # from the unrounded times

    infer = [re.fullmatch(rf"(LSTM|GRU)\s+\|\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", line) for line in lines]
    assert [m.group(1) for m in infer if m] == ["LSTM", "GRU"]
    assert lines[-1].startswith("load average at the end: ")
