"""`unrolled sentiment ...` end to end on the tiny fixtures: train, compare, predict, explain, and errors."""
import io
import json
from pathlib import Path

import pytest

from unrolled.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "sentiment"
TARBALL = str(FIXTURES / "aclImdb_tiny.tar.gz")
TINY = ["--embed", "6", "--hidden", "5", "--batch", "2", "--max-len", "40", "--eval-every", "2", "--min-freq", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sentiment") / "run"
    assert main(["sentiment", "train", "--data", TARBALL, "--cell", "lstm", "--epochs", "2", *TINY,
                 "--out", str(out)]) == 0
    return out


def test_train_writes_the_run_folder_with_val_and_test_accuracy(run):
    for name in ("config.json", "vocab.json", "checkpoint.npz", "best.npz", "metrics.jsonl", "results.json",
                 "plots/loss.png", "plots/accuracy.png"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    assert len(evals) >= 2 and all(0 <= r["val_accuracy"] <= 1 for r in evals)
    assert "test_accuracy" in records[-1] and 0 <= records[-1]["test_accuracy"] <= 1
    results = json.loads((run / "results.json").read_text())
    assert results["sizes"] == {"train": 5, "val": 1, "test": 4, "vocab": results["sizes"]["vocab"]}
    assert sum(map(sum, results["test"]["confusion"])) == 4
    assert json.loads((run / "config.json").read_text())["cell"] == "lstm"


def test_predict_from_arguments(run, capsys):
    assert main(["sentiment", "predict", str(run), "A delightful, creative film.", "Dull.\tAwful.\n"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2                                          # a text's tab and line break shown as spaces
    for line, text in zip(lines, ("A delightful, creative film.", "Dull. Awful.")):
        label, probability, shown = line.split("\t")
        assert label in ("neg", "pos") and 0.5 <= float(probability) <= 1 and shown == text


def test_predict_from_stdin_one_text_per_line(run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("A delightful film.\n\nDull and awful.\n"))
    assert main(["sentiment", "predict", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[2] for line in lines] == ["A delightful film.", "Dull and awful."]


def test_explain_draws_the_prediction_after_each_word(run, tmp_path, capsys):
    png = tmp_path / "explain.png"
    assert main(["sentiment", "explain", str(run), "A delightful film, but the ending is awful.", "--out", str(png)]) == 0
    assert sorted(tmp_path.iterdir()) == [png]  # one plot: the curve above the coloured text
    out = capsys.readouterr().out
    assert "after 8 words" in out and f"plot: {png}" in out


@pytest.mark.parametrize("argv, message", [
    (["predict", "{run}", ""], "expected a text to classify, but was given an empty one."),
    (["predict", "{run}", "..."], "expected a text with at least one word, but '...' has none."),
    (["explain", "{run}", "   "], "expected a text to classify, but was given an empty one."),
    (["predict", "{tmp}"], "expected a run folder"),
])
def test_bad_predictions_are_one_sentence_and_exit_2(run, tmp_path, capsys, argv, message):
    argv = [a.format(run=run, tmp=tmp_path / "missing") for a in argv]
    assert main(["sentiment", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_empty_stdin_is_one_sentence_and_exit_2(run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n  \n"))
    assert main(["sentiment", "predict", str(run)]) == 2
    assert "but was given none" in capsys.readouterr().err


def test_unknown_format_and_missing_label_column_exit_2(tmp_path, capsys):
    unknown = tmp_path / "reviews.json"
    unknown.write_text("[]", encoding="utf-8")
    assert main(["sentiment", "train", "--data", str(unknown), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "whose format is unknown" in err
    csv = str(FIXTURES / "imdb_reviews.csv")
    assert main(["sentiment", "train", "--data", csv, "--text-column", "review", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a column named 'label'" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-made


def test_train_on_csv_and_vader_fixtures(tmp_path):
    csv = str(FIXTURES / "imdb_reviews.csv")
    assert main(["sentiment", "train", "--data", csv, "--text-column", "review", "--label-column", "sentiment",
                 "--epochs", "1", *TINY, "--out", str(tmp_path / "csv")]) == 0
    vader = str(FIXTURES / "movieReviewSnippets_GroundTruth.txt")
    assert main(["sentiment", "train", "--data", vader, "--cell", "rnn", "--no-bidirectional", "--pooling", "last",
                 "--epochs", "1", *TINY, "--out", str(tmp_path / "vader")]) == 0
    assert json.loads((tmp_path / "vader" / "results.json").read_text())["classes"] == ["negative", "positive"]


def test_compare_writes_report_and_results(tmp_path, capsys):
    out = tmp_path / "compare"
    assert main(["sentiment", "compare", "--cells", "rnn,gru", "--data", TARBALL, "--epochs", "1", *TINY,
                 "--max-len", "20", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for text in ("| RNN |", "| GRU |", "test accuracy", "Long reviews", "Gradient norm through time",
                 "What the comparison shows", "plots/learning_curves.png"):
        assert text in report
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"rnn", "gru"}
    assert results["models"]["rnn"]["gradient_flow"]["k=0"] > 0
    assert results["models"]["rnn"]["gradient_flow_reviews"] == [4, 20]     # every test review, cut to 20 tokens
    for name in ("learning_curves", "confusion", "accuracy_by_length", "gradient_flow"):
        assert (out / "plots" / f"{name}.png").is_file()
    # the same comparison asked again for one of its cells reports both, training nothing
    assert main(["sentiment", "compare", "--cells", "gru", "--data", TARBALL, "--epochs", "1", *TINY,
                 "--max-len", "20", "--out", str(out)]) == 0
    assert set(json.loads((out / "results.json").read_text())["models"]) == {"rnn", "gru"}
    report = (out / "report.md").read_text()
    assert -1 < report.index("| RNN |") < report.index("| GRU |")  # in the order of the first report


def test_compare_measures_gradient_flow_over_reviews_shorter_than_max_len(tmp_path):
    out = tmp_path / "compare"                                   # the test reviews hold 113 to 124 tokens
    assert main(["sentiment", "compare", "--cells", "rnn", "--data", TARBALL, "--epochs", "1", *TINY,
                 "--max-len", "1000", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())["models"]["rnn"]
    tokens = results["gradient_flow_reviews"][1]
    assert results["gradient_flow_reviews"] == [4, tokens] and 100 < tokens < 124
    assert set(results["gradient_flow"]) == {"k=0", "k=10", "k=50", "k=100"}
    assert f"averaged over the 4 longest test reviews (their last {tokens} tokens;" in (out / "report.md").read_text()


def test_compare_rejects_unknown_cells(capsys):
    assert main(["sentiment", "compare", "--cells", "rnn,transformer", "--data", TARBALL]) == 2
    assert "--cells must list distinct cells among rnn, lstm, gru" in capsys.readouterr().err


def test_a_run_stopped_while_reporting_finishes_when_resumed(run, tmp_path, monkeypatch, capsys):
    from unrolled.tasks import sentiment_plots

    def ctrl_c(*args):
        raise KeyboardInterrupt

    again = tmp_path / "run"
    monkeypatch.setattr(sentiment_plots, "plot_accuracy", ctrl_c)      # after results.json, before the test record
    argv = ["sentiment", "train", "--data", TARBALL, "--cell", "lstm", "--epochs", "2", *TINY, "--out", str(again)]
    assert main(argv) == 130
    assert f"continue with `unrolled sentiment train --resume {again}`" in capsys.readouterr().err
    monkeypatch.undo()
    records = lambda r: [{k: v for k, v in json.loads(line).items() if not k.endswith("_s") and k != "load_1min"}
                         for line in (r / "metrics.jsonl").read_text().splitlines()]
    assert "test_accuracy" not in records(again)[-1]
    assert main(["sentiment", "train", "--resume", str(again)]) == 0   # scores the test set, trains no more
    assert records(again) == records(run)
    assert main(["sentiment", "train", "--resume", str(again)]) == 2   # now finished


@pytest.mark.parametrize("command", ["train", "compare"])
def test_without_data_away_from_the_shared_folder_says_where_it_looked(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sentiment", command, "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == (f"unrolled: error: without --data the IMDB reviews are read from "
                   f"../shared/data/imdb/aclImdb_labelled.tar.gz, relative to the current folder ({tmp_path}), "
                   "and they are not there; run from the repository's root (beside ../shared) or give --data PATH "
                   "(an IMDB tarball or folder, a .csv/.tsv file or VADER files).\n")
    assert not (tmp_path / "run").exists()
