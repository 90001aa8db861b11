"""Divergence: a NaN or inf in the loss or a gradient never reaches the parameters.

By default training stops before the update with one sentence naming the step and the parameter
(exit code 3) and the run keeps its last good checkpoint; `--on-nonfinite skip` skips the batch and
halves the learning rate instead, logged in metrics.jsonl and kept in the checkpoint.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unrolled.checkpoint import load_checkpoint
from unrolled.cli import main
from unrolled.runs import read_metrics
from unrolled.decoding import NonFiniteLogits
from unrolled.tasks import lm, translate
from unrolled.train import MAX_SKIPS

FIXTURE = Path(__file__).parent / "fixtures"
TINY = ["lm", "train", "--data", str(FIXTURE / "tinyshakespeare_4k.txt"), "--hidden", "16", "--embed", "8",
        "--layers", "1", "--seq-len", "8", "--batch", "4", "--lr", "0.01", "--seed", "2", "--epochs", "1",
        "--eval-every", "25"]
BAD_STEP = 30


def _inject(monkeypatch, at: int, what: str, every_step_after: bool = False) -> dict:
    """From training step `at` on (or at it only), make the loss or one gradient non-finite.

    Records the parameters before step `at` and when the step after it begins, to show that the
    bad step changed nothing.
    """
    original = lm.LanguageModelTask.train_batch
    seen = {"n": 0}

    def params(task):
        return {name: p.data.copy() for name, p in task.model.named_parameters()}

    def patched(self, epoch, index):
        seen["n"] += 1
        if seen["n"] == at:
            seen["before"] = params(self)
        if seen["n"] == at + 1:
            seen["after"] = params(self)
        loss, tokens = original(self, epoch, index)
        if seen["n"] == at or (every_step_after and seen["n"] > at):
            if what == "loss":
                loss = float("nan")
            else:
                self.model.rnn.weight_hh_l0.grad[3, 1] = np.inf
        seen["task"] = self
        return loss, tokens

    monkeypatch.setattr(lm.LanguageModelTask, "train_batch", patched)
    return seen


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("unrolled: error:")]
    assert len(errors) == 1 and not any("Traceback" in line for line in lines), lines
    return errors[0]


@pytest.mark.parametrize("what, named", [("loss", "the loss is nan"),
                                         ("grad", "the gradient of 'rnn.weight_hh_l0' is inf")])
def test_stop_before_the_update_names_step_and_parameter_and_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                                       capsys, what, named):
    seen = _inject(monkeypatch, BAD_STEP, what)
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out)]) == 3
    line = _one_error_line(capsys)
    assert f"training diverged at step {BAD_STEP}: {named}" in line
    assert "the parameters were not updated" in line and "checkpoint of step 25" in line and "--on-nonfinite skip" in line
    task = seen["task"]  # the parameters are those from before the bad step
    for name, p in task.model.named_parameters():
        assert np.array_equal(p.data, seen["before"][name]), name
    arrays, meta = load_checkpoint(out)  # the last good checkpoint, untouched and loadable
    assert meta["step"] == 25 and all(np.isfinite(a).all() for a in arrays.values())
    assert [r["step"] for r in read_metrics(out)] == [25]


def test_skip_leaves_the_parameters_alone_halves_the_lr_and_logs_it(tmp_path, monkeypatch, capsys):
    reference = tmp_path / "reference"
    assert main([*TINY, "--out", str(reference)]) == 0
    seen = _inject(monkeypatch, BAD_STEP, "grad")
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out), "--on-nonfinite", "skip"]) == 0
    err = capsys.readouterr().err
    assert f"step {BAD_STEP}: the gradient of 'rnn.weight_hh_l0' is inf; batch skipped, learning rate now 0.5" in err
    for name in seen["before"]:  # the skipped step left every parameter as it was
        assert np.array_equal(seen["after"][name], seen["before"][name]), name
    ours, theirs = read_metrics(out), read_metrics(reference)
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]
    assert ours[0] == {**ours[0], "lr": theirs[0]["lr"]} and "skipped_steps" not in ours[0]
    assert ours[1]["skipped_steps"] == [BAD_STEP] and ours[1]["lr_scale"] == 0.5
    for a, b in zip(ours[1:], theirs[1:]):  # the scheduled rate, halved from the skip on
        assert a["lr"] == b["lr"] * 0.5
    meta = load_checkpoint(out)[1]
    assert meta["train"]["lr_scale"] == 0.5 and meta["step"] == load_checkpoint(reference)[1]["step"]


def test_skip_gives_up_after_too_many_bad_batches_in_a_row(tmp_path, monkeypatch, capsys):
    _inject(monkeypatch, BAD_STEP, "loss", every_step_after=True)
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out), "--on-nonfinite", "skip"]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert sum("batch skipped" in line for line in lines) == MAX_SKIPS + 1
    assert f"at step {BAD_STEP + MAX_SKIPS}: the loss is nan after {MAX_SKIPS} skipped batches in a row" in lines[-1]
    assert load_checkpoint(out)[1]["step"] == 25


HUGE_LR = {  # the real command lines, nothing injected, and the sentence each ends with
    "forecast": (["forecast", "train", "--data", str(FIXTURE / "airline-passengers.csv"), "--target", "Passengers",
                  "--lookback", "12", "--hidden", "8", "--epochs", "3", "--lr", "1e30"],
                 "training diverged at step 2: the loss is inf and the gradient of"),
    # at 1e30 whether a sum of overflowed products is inf or nan depends on the BLAS kernel, so the loss may stay
    # finite and only beam search meet a nan (the next test); at 1e300 the first update overflows the weights
    "translate": (["translate", "train", "--data", str(FIXTURE / "eng_fra_pairs.txt"), "--hidden", "8", "--embed", "8",
                   "--epochs", "1", "--lr", "1e300"],      # its GEMMs run on the overlap thread too: no warning from there
                  "training diverged at step 2: the loss is nan and the gradient of"),
    "lm": (["lm", "train", "--data", str(FIXTURE / "tinyshakespeare_4k.txt"), "--hidden", "8", "--embed", "4",
            "--layers", "1", "--seq-len", "8", "--batch", "2", "--epochs", "1", "--eval-every", "5", "--lr", "1e30"],
           # the loss stays finite; the weights are too, but the logits overflow when it samples
           "training diverged by step 5: the model's next-token logits are no longer finite, so this state is not saved"),
}


@pytest.mark.parametrize("task", sorted(HUGE_LR))
def test_a_huge_learning_rate_stops_training_in_one_line_with_exit_3(tmp_path, task):
    """A huge lr: the loss overflows (or the logits do), and the run keeps its start."""
    argv, sentence = HUGE_LR[task]
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "unrolled.cli", *argv, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"unrolled: error: {sentence}"), last
    assert load_checkpoint(out)[1]["step"] == 0  # nothing diverged was saved


def test_a_translation_whose_logits_overflow_only_when_scored_is_reported_as_diverged(tmp_path, monkeypatch, capsys):
    """Finite weights and losses whose beam search meets a nan: one sentence and exit code 3, no test scores."""
    def overflowing(*args, **kwargs):
        raise NonFiniteLogits("step returned logits that are NaN, +inf or all -inf.")

    monkeypatch.setattr(translate, "score_test", overflowing)
    argv = [*HUGE_LR["translate"][0][:-2], "--out", str(tmp_path / "run")]    # its usual lr: training goes well
    assert main(argv) == 3
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "unrolled: error: training diverged by step 4: the best weights' next-token logits are no longer finite "
        "when translating the test set, so it cannot be scored; a lower --lr would avoid it.")
    assert not (tmp_path / "run" / "results.json").exists()
    assert "test_bleu_greedy" not in read_metrics(tmp_path / "run")[-1]


def test_a_stopped_run_continues_with_resume_and_skip(tmp_path, monkeypatch, capsys):
    """What the error sentence advises: `--resume DIR --on-nonfinite skip` gets past the bad batch."""
    _inject(monkeypatch, BAD_STEP, "grad")
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out)]) == 3
    _inject(monkeypatch, BAD_STEP - 25, "grad")  # the resumed process starts after step 25: the same batch again
    assert main(["lm", "train", "--resume", str(out), "--on-nonfinite", "skip"]) == 0
    records = read_metrics(out)
    assert records[1]["skipped_steps"] == [BAD_STEP] and records[1]["lr_scale"] == 0.5
    assert "batch skipped" in capsys.readouterr().err


def test_a_forecast_epoch_whose_every_batch_was_skipped_is_reported(tmp_path, capsys):
    """lr 1e30 with --on-nonfinite skip: the first update overflows the weights, every later batch is skipped."""
    argv, _ = HUGE_LR["forecast"]
    assert main([*argv[:-4], "--epochs", "2", "--lr", "1e30", "--on-nonfinite", "skip", "--out", str(tmp_path / "run")]) == 0
    assert "epoch 2: train -, val " in capsys.readouterr().err
    assert read_metrics(tmp_path / "run")[1]["train_loss"] is None
