"""`unrolled translate ...` as a user runs it: tiny training runs, translating, scoring, and bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unrolled.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "eng_fra_pairs.txt"
TINY = ["--data", str(FIXTURE), "--hidden", "32", "--embed", "16", "--batch", "16", "--lr", "0.01",
        "--dropout", "0", "--seed", "0", "--max-len", "12", "--beam", "3"]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
PNG = b"\x89PNG\r\n\x1a\n"


def unrolled(*args, timeout=180):
    """The real command line, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "unrolled.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def exit_code(argv):
    """main's return value, or the code of the SystemExit that argparse raises on a bad flag."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def metrics_of(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    done = unrolled("translate", "train", *TINY, "--epochs", "8", "--eval-every", "25", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "test BLEU greedy" in done.stdout and str(out) in done.stdout
    return out


def test_train_writes_the_run_folder_and_ends_metrics_with_bleu(run):
    for name in ("config.json", "src_vocab.json", "tgt_vocab.json", "checkpoint.npz", "checkpoint.json", "best.npz",
                 "best.json", "metrics.jsonl", "samples.txt", "translations.txt", "results.json"):
        assert (run / name).stat().st_size > 0, name
    for plot in ("loss.png", "attention.png"):
        assert (run / "plots" / plot).read_bytes()[:8] == PNG
    metrics = metrics_of(run)
    evals = [m for m in metrics if "val_loss" in m]
    assert len(evals) >= 4 and evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5
    last = metrics[-1]
    assert set(last) >= {"test_bleu_greedy", "test_bleu_beam", "test_loss"} and "val_loss" not in last
    assert last["step"] == evals[-1]["step"]
    results = json.loads((run / "results.json").read_text())
    assert results["test_bleu_greedy"] == last["test_bleu_greedy"] and results["beam"] == 3
    assert results["sizes"]["test"] > 0 and "tok:none" in results["signature"]
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "translate" and config["arch"] == "rnn" and config["attention"] == "bahdanau"
    translations = (run / "translations.txt").read_text()
    assert translations.count("  greedy ") == results["sentences"] and "  ref    " in translations


def test_run_prints_a_translation_and_writes_the_heatmap(run, tmp_path):
    plot = tmp_path / "attention.png"
    done = unrolled("translate", "run", str(run), "I'm cold.", "--beam", "3", "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line and line == line.lower() and not any(t in line for t in ("<bos>", "<eos>", "<pad>"))
    assert plot.read_bytes()[:8] == PNG


def test_run_names_the_words_it_does_not_know(run, capsys):
    assert main(["translate", "run", str(run), "I am a xylophonist."]) == 0
    captured = capsys.readouterr()
    assert "read as <unk>: xylophonist" in captured.err and len(captured.out.splitlines()) == 1
    words = " ".join(f"zork{c}" for c in "abcdefghijkl")
    assert main(["translate", "run", str(run), f"{words} {words}"]) == 0       # each unknown word once, ten at most
    assert f"read as <unk>: {' '.join(words.split()[:10])} (and 2 more)\n" in capsys.readouterr().err


def test_run_greedy_equals_beam_of_width_one(run, capsys):
    assert main(["translate", "run", str(run), "He is tall."]) == 0
    greedy = capsys.readouterr().out
    assert main(["translate", "run", str(run), "He is tall.", "--beam", "1"]) == 0
    assert capsys.readouterr().out == greedy


def test_eval_prints_the_scores_of_the_run(run, capsys):
    assert main(["translate", "eval", str(run)]) == 0
    out = capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    assert f"greedy {results['test_bleu_greedy']:.2f}, beam 3 {results['test_bleu_beam']:.2f}" in out
    assert "tok:none" in out


def test_transformer_arm_trains_and_translates(tmp_path, capsys):
    out = tmp_path / "transformer"
    embed = TINY.index("--embed")                        # the transformer's embedding is its --hidden
    flags = [*TINY[:embed], *TINY[embed + 2:], "--arch", "transformer", "--hidden", "16", "--heads", "2", "--layers", "1",
             "--ff", "32", "--epochs", "2", "--eval-every", "50"]
    assert main(["translate", "train", *flags, "--out", str(out)]) == 0
    assert "test BLEU greedy" in capsys.readouterr().out
    assert {"test_bleu_greedy", "test_bleu_beam"} <= set(metrics_of(out)[-1])
    assert (out / "plots" / "attention.png").read_bytes()[:8] == PNG
    assert main(["translate", "run", str(out), "We are happy.", "--plot", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG


def test_no_attention_run_refuses_a_heatmap(tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["translate", "train", *TINY, "--attention", "none", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["translate", "run", str(out), "I am here.", "--plot", str(tmp_path / "x.png")]) == 2
    assert "has no attention to plot" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "missing.txt", "--out", "{tmp}/a"], "missing.txt does not exist"),
    (["train", "--data", str(FIXTURE), "--preset", "tiny", "--out", "{tmp}/a"], "invalid choice: 'tiny'"),
    (["train", "--data", str(FIXTURE), "--teacher-forcing", "2", "--out", "{tmp}/a"], "must be a number in [0, 1]"),
    (["train", "--preset", "full", "--out", "{tmp}/a"], "the full preset needs --data"),
    (["train", "--data", str(FIXTURE), "--arch", "transformer", "--hidden", "30", "--heads", "4", "--out", "{tmp}/a"],
     "must be a multiple of heads"),
    (["train", "--resume", "{tmp}", "--lr", "0.1"], "takes no other flags, but was given --lr"),
    (["run", "{tmp}", "I am cold."], "config.json"),
    (["eval", "{tmp}/nothing"], "is not a folder"),
])
def test_bad_input_is_one_sentence_and_exit_code_2(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert exit_code(["translate", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_sentence_without_words_and_missing_data_are_errors(run, tmp_path, capsys):
    assert main(["translate", "run", str(run), "1984"]) == 2
    assert "must hold at least one word" in capsys.readouterr().err
    moved = tmp_path / "run"
    moved.mkdir()
    config = json.loads((run / "config.json").read_text())
    config["data"] = str(tmp_path / "gone.txt")
    (moved / "config.json").write_text(json.dumps(config))
    for name in ("src_vocab.json", "tgt_vocab.json", "best.npz", "best.json"):
        (moved / name).write_bytes((run / name).read_bytes())
    assert main(["translate", "eval", str(moved)]) == 2
    assert "gone.txt does not exist" in capsys.readouterr().err


def test_training_loss_is_torchs_label_smoothed_cross_entropy_over_real_tokens():
    import torch

    from unrolled.core.module import no_grad
    from unrolled.tasks import translate

    config = translate.config_from("tutorial", data=str(FIXTURE), hidden=8, embed=8, batch=8, dropout=0.0,
                                   label_smoothing=0.2, epochs=1)
    corpus = translate.load_corpus(config)
    model = translate.build(config, len(corpus.src_vocab), len(corpus.tgt_vocab))
    task = translate.TranslationTask(model, corpus, config)
    task.start_epoch(0)
    batch = task.batcher.batch(task.order[0])
    assert (batch.tgt_out == translate.PAD_ID).any()              # the batch has padding to ignore
    with no_grad():
        logits = translate.forward(model, batch)                  # (T, B, V)
    loss, tokens = task.train_batch(0, 0)
    assert tokens == batch.n_tokens
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(logits.reshape(-1, logits.shape[-1]), dtype=torch.float64),
        torch.tensor(batch.tgt_out.reshape(-1)), ignore_index=translate.PAD_ID, label_smoothing=0.2)
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_resume_of_a_finished_run_is_refused_and_leaves_it_alone(run, capsys):
    before = (run / "metrics.jsonl").read_bytes()
    assert main(["translate", "train", "--resume", str(run)]) == 2
    assert "has already spent its budget" in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_bytes() == before


def test_a_training_batch_does_not_depend_on_the_batches_before_it():
    """What makes a resumed run exact on the task's side: batch order and teacher-forcing draws
    come from (seed, epoch, index), not from what ran before."""
    import dataclasses

    from unrolled.tasks import translate

    config = translate.config_from("tutorial", data=str(FIXTURE), hidden=8, embed=8, batch=8, dropout=0.0,
                                   teacher_forcing=0.5, epochs=2)
    corpus = translate.load_corpus(config)

    def loss_of_last(config, history):
        task = translate.TranslationTask(translate.build(config, len(corpus.src_vocab), len(corpus.tgt_vocab)),
                                         corpus, config)
        for epoch, index in history:
            task.start_epoch(epoch)
            loss, _ = task.train_batch(epoch, index)
        return loss

    after_others = loss_of_last(config, [(0, 0), (0, 1), (1, 0)])
    assert loss_of_last(config, [(1, 0)]) == after_others
    forced = dataclasses.replace(config, teacher_forcing=1.0)
    assert loss_of_last(forced, [(1, 0)]) != after_others         # the draws do change what the batch computes


def test_a_run_stopped_while_reporting_finishes_when_resumed(tmp_path, monkeypatch, capsys):
    from unrolled.tasks import translate_plots

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(["translate", "train", *TINY, "--epochs", "1", "--out", str(reference)]) == 0
    monkeypatch.setattr(translate_plots, "plot_attention", ctrl_c)    # after results.json, before the BLEU record
    assert main(["translate", "train", *TINY, "--epochs", "1", "--out", str(run)]) == 130
    assert f"continue with `unrolled translate train --resume {run}`" in capsys.readouterr().err
    monkeypatch.undo()
    assert "test_bleu_greedy" not in metrics_of(run)[-1]
    assert main(["translate", "train", "--resume", str(run)]) == 0     # scores the test set, trains no more
    strip = lambda r: [{k: v for k, v in m.items() if k not in ("elapsed_s", "wall_s", "tokens_per_s")}
                       for m in metrics_of(r)]
    assert strip(run) == strip(reference) and (run / "plots" / "attention.png").exists()
    assert (run / "translations.txt").read_text() == (reference / "translations.txt").read_text()
