"""`unrolled lm ...` as a user runs it: a tiny training run, sampling, inspection, and bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unrolled.checkpoint import load_checkpoint
from unrolled.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "tinyshakespeare_4k.txt"
TINY = ["--data", str(FIXTURE), "--hidden", "32", "--embed", "16", "--layers", "1", "--seq-len", "16",
        "--batch", "4", "--lr", "0.01", "--seed", "0"]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def unrolled(*args, timeout=120):
    """The real command line, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "unrolled.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    done = unrolled("lm", "train", *TINY, "--epochs", "4", "--eval-every", "40", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "best validation loss" in done.stdout
    return out


def test_train_writes_the_run_folder_and_the_loss_falls(run):
    for name in ("config.json", "vocab.json", "checkpoint.npz", "checkpoint.json", "best.npz", "best.json",
                 "metrics.jsonl", "samples.txt", "plots/loss.png"):
        assert (run / name).stat().st_size > 0, name
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) >= 5
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] - 0.3
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] - 0.3
    config = json.loads((run / "config.json").read_text())
    assert config["hidden"] == 32 and config["epochs"] == 4 and config["minutes"] is None
    assert (run / "plots" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_prints_text_that_continues_the_prompt(run):
    done = unrolled("lm", "sample", str(run), "--prompt", "ROMEO:", "--length", "120", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ROMEO:") and len(done.stdout) == len("ROMEO:") + 120 + 1
    again = unrolled("lm", "sample", str(run), "--prompt", "ROMEO:", "--length", "120", "--seed", "3")
    assert again.stdout == done.stdout  # a seed makes it reproducible


@pytest.mark.parametrize("flags", [["--temperature", "0"], ["--top-k", "3"], ["--top-p", "0.5"], ["--beam", "3"]])
def test_sample_decoding_options(run, capsys, flags):
    assert main(["lm", "sample", str(run), "--prompt", "First", "--length", "40", "--seed", "1", *flags]) == 0
    out = capsys.readouterr().out
    assert out.startswith("First") and len(out) == len("First") + 40 + 1


def test_inspect_writes_heatmaps_and_a_report(run, tmp_path, capsys):
    text = FIXTURE.read_text()[:300]
    assert main(["lm", "inspect", str(run), "--text", text, "--out", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "speaker name" in report and "position in line" in report and "layer 1" in report
    assert "Gradient flow: " in report and "(median over 2 windows of 100 tokens): k = 1: " in report
    for name in ("hidden_l1.png", "cell_l1.png", "gate_f_l1.png", "saturation_l1.png", "units.png", "gradient_flow.png",
                 "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    (tmp_path / "report.md").write_text(f"# Units of {run}: being drawn\n")  # as a stop while drawing leaves it:
    (tmp_path / "gate_x_l9.png").write_bytes(b"an older inspection's plot")   # the folder is reused
    assert main(["lm", "inspect", str(run), "--text", text, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text().startswith(f"# Units of {run} over ")
    assert not (tmp_path / "gate_x_l9.png").exists()


def test_inspect_of_two_tokens_has_no_gradient_flow_to_report(run, tmp_path, capsys):
    assert main(["lm", "inspect", str(run), "--text", "Fi", "--out", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "over 2 tokens" in report and "Gradient flow" not in report          # one step back has nothing before it
    assert (tmp_path / "gradient_flow.png").stat().st_size > 0


def test_inspect_never_clears_a_folder_without_an_inspections_report(run, tmp_path, capsys):
    mine = tmp_path / "figs"
    mine.mkdir()
    for name, data in (("units.png", b"mine"), ("hidden_l1.png", b"mine too"), (".notes.tmp", b"a draft")):
        (mine / name).write_bytes(data)                  # names an inspection writes, but no report of one
    assert main(["lm", "inspect", str(run), "--text", "First Citizen", "--out", str(mine)]) == 2
    assert "holds files that are not an inspection" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == [".notes.tmp", "hidden_l1.png", "units.png"]
    assert (mine / "units.png").read_bytes() == b"mine"


def _fails_with_one_line(capsys, args, match):
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own checks
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]


@pytest.mark.parametrize("args, match", [
    (["--data", "{tmp}/missing.txt"], "does not exist"),
    (["--data", "{tmp}/empty.txt"], "is empty"),
    (["--data", "{tmp}/binary.bin"], "binary file"),
    (["--data", "{tmp}"], "is a folder"),
    (["--epochs", "2", "--minutes", "1"], "not allowed with argument"),
    (["--layers", "0"], "must be a positive integer"),
    (["--dropout", "1.5"], "must be a number in [0, 1)"),
    (["--lr", "fast"], "must be a positive number"),
    (["--cell", "transformer"], "invalid choice"),
    (["--batch", "512"], "too few for one chunk of 512 streams x 16 steps (8,704 tokens); lower --batch or --seq-len"),
    (["--resume", "{tmp}"], "no such file"),
    (["--resume", "{run}", "--hidden", "64"], "takes no other flags"),
    (["--out", "{run}"], "already holds a run"),
])
def test_bad_training_input_is_one_line_and_exit_2(run, tmp_path, capsys, args, match):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "binary.bin").write_bytes(b"\x89PNG\r\n\x00\x00 some bytes")
    args = [a.format(tmp=tmp_path, run=run) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    run_files = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    out = [] if "--out" in args or "--resume" in args else ["--out", str(tmp_path / "new")]
    _fails_with_one_line(capsys, ["lm", "train", *TINY, *args, *out] if "--resume" not in args
                         else ["lm", "train", *args], match)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder was started
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == run_files  # the run is untouched


@pytest.mark.parametrize("args, match", [
    (["sample", "{run}", "--prompt", "ROMEO~"], "not in the vocabulary"),
    (["sample", "{tmp}"], "no such file"),
    (["sample", "{run}", "--top-p", "0"], "must be a number in (0, 1]"),
    (["sample", "{run}", "--temperature", "-1"], "must be a number >= 0"),
    (["inspect", "{run}", "--text", "a"], "at least 2 tokens"),
    (["inspect", "{run}"], "required"),
])
def test_bad_sampling_input_is_one_line_and_exit_2(run, tmp_path, capsys, args, match):
    _fails_with_one_line(capsys, ["lm", *[a.format(tmp=tmp_path, run=run) for a in args]], match)


def test_a_limit_below_one_mebibyte_is_not_shown_as_zero(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNROLLED_MAX_INPUT_MB", "0.001")
    _fails_with_one_line(capsys, ["lm", "train", "--data", str(FIXTURE), "--out", str(tmp_path / "run")],
                         "holds 0.00388 MiB, more than the 0.001 MiB allowed for an input file")


def test_a_corrupted_checkpoint_is_one_line(run, tmp_path, capsys):
    damaged = tmp_path / "run"
    damaged.mkdir()
    for p in run.iterdir():
        if p.is_file():
            (damaged / p.name).write_bytes(p.read_bytes())
    (damaged / "best.npz").write_bytes((run / "best.npz").read_bytes()[:500])
    _fails_with_one_line(capsys, ["lm", "sample", str(damaged)], "truncated, corrupted")


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "unrolled.cli", "lm", "train", *TINY, "--epochs", "200",
                             "--eval-every", "20", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err.strip().splitlines()[-1]
    step = load_checkpoint(out)[1]["step"]
    assert step >= 20
    assert main(["lm", "sample", str(out), "--length", "5"]) == 0


def test_ctrl_c_while_drawing_the_loss_plot_is_resumed_by_drawing_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr("unrolled.viz.plot_losses", interrupted)
        assert main(["lm", "train", *TINY, "--epochs", "1", "--eval-every", "40", "--out", str(out)]) == 130
    assert f"--resume {out}" in capsys.readouterr().err
    assert not (out / "plots" / "loss.png").exists()
    assert main(["lm", "train", "--resume", str(out)]) == 0        # the budget is spent: only the plot is drawn
    assert (out / "plots" / "loss.png").is_file() and "done:" in capsys.readouterr().out
    assert main(["lm", "train", "--resume", str(out)]) == 2
    assert "already spent its budget" in capsys.readouterr().err


def test_the_resume_hint_can_be_pasted_into_a_shell(capsys):
    from unrolled.cli import report_interrupted
    assert report_interrupted("lm", 7, "runs/my run") == 130
    assert capsys.readouterr().err == ("interrupted at step 7: checkpoint saved; continue with "
                                       "`unrolled lm train --resume 'runs/my run'`.\n")
