"""The language-model training loop: exact resume, checkpoints kept, budgets, carried state."""
import importlib
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from unrolled.checkpoint import CheckpointError, load_checkpoint
from unrolled.runs import read_metrics
from unrolled.tasks import lm
from unrolled.train import Budget

FIXTURE = Path(__file__).parent / "fixtures" / "tinyshakespeare_4k.txt"
TIMES = ("elapsed_s", "wall_s", "tokens_per_s")


def tiny(**overrides) -> lm.Config:
    """77 chunks per epoch, 2 epochs, dropout on (so the dropout generators must be restored too)."""
    values = dict(data=str(FIXTURE), hidden=16, embed=8, layers=2, dropout=0.2, seq_len=12, batch=4,
                  epochs=2, eval_every=20, sample_length=20, seed=3)
    values.update(overrides)
    return lm.Config(**values)


def _on_step(monkeypatch, step: int, action):
    """Run `action(task)` right after training step `step` (counted from this call)."""
    original = lm.LanguageModelTask.train_batch
    count = {"n": 0}

    def patched(self, epoch, index):
        out = original(self, epoch, index)
        count["n"] += 1
        if count["n"] == step:
            action(self)
        return out

    monkeypatch.setattr(lm.LanguageModelTask, "train_batch", patched)


def _assert_same_run(a: Path, b: Path):
    arrays_a, meta_a = load_checkpoint(a)
    arrays_b, meta_b = load_checkpoint(b)
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:  # model, optimiser, schedule, carried state: bit for bit
        assert arrays_a[key].dtype == arrays_b[key].dtype
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    assert meta_a["rng"] == meta_b["rng"] and meta_a["step"] == meta_b["step"]
    best_a, best_b = load_checkpoint(a, "best")[0], load_checkpoint(b, "best")[0]
    assert all(np.array_equal(best_a[k], best_b[k]) for k in best_a)
    strip = lambda records: [{k: v for k, v in r.items() if k not in TIMES} for r in records]
    assert strip(read_metrics(a)) == strip(read_metrics(b))
    assert (a / "samples.txt").read_text() == (b / "samples.txt").read_text()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run, state, interrupted = lm.train(tiny(), tmp_path_factory.mktemp("a") / "run", progress=False)
    assert not interrupted and state.step == 154 and state.epoch == 2
    return run


@pytest.mark.parametrize("stop_at", [50, 77])  # mid-epoch between evaluations; exactly at an epoch's end
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path, monkeypatch, stop_at):
    _on_step(monkeypatch, stop_at, lambda task: signal.raise_signal(signal.SIGINT))
    run, state, interrupted = lm.train(tiny(), tmp_path / "run", progress=False)
    assert interrupted and state.step == stop_at
    assert load_checkpoint(run)[1]["step"] == stop_at
    monkeypatch.undo()
    run, state, interrupted = lm.train(None, resume_from=run, progress=False)
    assert not interrupted and state.step == 154
    _assert_same_run(uninterrupted, run)


def test_ctrl_c_in_the_last_step_completes_the_run(uninterrupted, tmp_path, monkeypatch):
    _on_step(monkeypatch, 154, lambda task: signal.raise_signal(signal.SIGINT))
    run, state, interrupted = lm.train(tiny(), tmp_path / "run", progress=False)
    assert not interrupted and state.step == 154                # nothing is left to resume
    _assert_same_run(uninterrupted, run)                        # the last evaluation and checkpoint too


def test_a_killed_run_resumes_from_its_last_evaluation(uninterrupted, tmp_path, monkeypatch):
    """A copy of the folder taken at step 50 (kill -9): checkpoint of step 40, metrics to 40, then a torn line."""
    snapshot = tmp_path / "killed"

    def kill(task):
        shutil.copytree(task.run, snapshot)
        with open(snapshot / "metrics.jsonl", "a") as f:
            f.write('{"step": 60, "val_lo')

    _on_step(monkeypatch, 50, kill)
    lm.train(tiny(), tmp_path / "run", progress=False)
    monkeypatch.undo()
    assert load_checkpoint(snapshot)[1]["step"] == 40
    lm.train(None, resume_from=snapshot, progress=False)
    _assert_same_run(uninterrupted, snapshot)


def test_run_folder_contents_and_best_checkpoint(uninterrupted):
    run = uninterrupted
    for name in ("config.json", "vocab.json", "checkpoint.npz", "checkpoint.json", "best.npz", "best.json",
                 "metrics.jsonl", "samples.txt", "plots/loss.png"):
        assert (run / name).exists(), name
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [20, 40, 60, 80, 100, 120, 140, 154]
    for m in metrics:
        assert {"step", "epoch", "elapsed_s", "train_loss", "val_loss", "lr", "tokens_per_s"} <= set(m)
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] and metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    best = min(metrics, key=lambda m: m["val_loss"])
    meta = load_checkpoint(run, "best")[1]
    assert meta["step"] == best["step"] and meta["best_val"] == best["val_loss"]
    assert json.loads((run / "config.json").read_text())["task"] == "lm"
    assert (run / "samples.txt").read_text().count("=== step") == len(metrics)


def test_resume_refuses_damage_and_changes_nothing(uninterrupted, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    data = (run / "checkpoint.npz").read_bytes()
    (run / "checkpoint.npz").write_bytes(data[:1000])
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match="truncated"):
        lm.train(None, resume_from=run, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    with pytest.raises(ValueError, match="already spent its budget"):
        lm.train(None, resume_from=uninterrupted, progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        lm.train(tiny(), uninterrupted, progress=False)


def test_resume_refuses_changed_data(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(FIXTURE.read_text())
    run, _, _ = lm.train(tiny(data=str(text), epochs=1, eval_every=1000), tmp_path / "run", progress=False)
    text.write_text(FIXTURE.read_text().replace("Citizen", "Citizens"))
    (run / "checkpoint.json").write_text((run / "checkpoint.json").read_text())  # untouched checkpoint
    with pytest.raises(ValueError, match="has changed since the run"):
        lm.train(None, resume_from=run, progress=False)


def test_time_budget_stops_and_the_schedule_follows_the_clock(tmp_path):
    run, state, _ = lm.train(tiny(epochs=None, minutes=0.01, eval_every=10_000), tmp_path / "run", progress=False)
    assert state.elapsed_s >= 0.6 and state.step > 0
    last = read_metrics(run)[-1]
    assert last["step"] == state.step
    config = tiny()
    assert last["lr"] < config.lr * 0.5  # cosine over the minutes: well down by the end


def test_carried_state_resets_at_each_epoch():
    config = tiny()
    corpus = lm.load_corpus(config)
    task = lm.LanguageModelTask(lm.build(config, len(corpus.vocab)), corpus, config)
    task.start_epoch(0)
    task.train_batch(0, 0)
    h, c = task.carried
    assert h.shape == (2, 4, 16) and np.abs(h).sum() > 0
    task.model.zero_grad()
    task.train_batch(0, 1)
    assert not np.array_equal(task.carried[0], h)
    task.start_epoch(1)
    assert task.carried is None


def test_presets_and_overrides():
    quick = lm.config_from("quick")
    assert quick.minutes == 5 and quick.epochs is None
    assert lm.config_from("quick", hidden=64).hidden == 64
    moved = lm.config_from("quick", epochs=2)
    assert moved.epochs == 2 and moved.minutes is None
    with pytest.raises(ValueError, match="not both"):
        lm.config_from(epochs=2, minutes=1.0).budget
    with pytest.raises(ValueError, match="preset must be one of"):
        lm.config_from("huge")
    with pytest.raises(ValueError, match="unknown"):
        lm.Config.from_dict({"hidden": 3, "colour": "red"})
    with pytest.raises(ValueError, match="minutes must be a positive number"):
        Budget(minutes=-1.0)


@pytest.mark.parametrize("task", ["lm", "sentiment", "translate"])
def test_a_budget_given_replaces_the_default_one(task):
    module = importlib.import_module(f"unrolled.tasks.{task}")
    assert module.config_from(minutes=5).budget == Budget(minutes=5)
    assert module.config_from(epochs=2).budget == Budget(epochs=2)
    with pytest.raises(ValueError, match="as epochs or as minutes, not both"):
        module.Config(epochs=2, minutes=5).budget
