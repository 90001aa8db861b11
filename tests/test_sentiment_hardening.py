"""`unrolled sentiment`: compare's --out and its continuation after Ctrl-C, explain's --out, text that is
not UTF-8, and bad CSV, vectors and flags: one sentence, the right exit code, nothing of the user's lost."""
import hashlib
import io
import json
import os
import signal
from pathlib import Path

import pytest

from unrolled.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "sentiment"
TARBALL = str(FIXTURES / "aclImdb_tiny.tar.gz")
VADER = str(FIXTURES / "movieReviewSnippets_GroundTruth.txt")
TINY = ["--embed", "6", "--hidden", "5", "--batch", "2", "--max-len", "20", "--eval-every", "2", "--min-freq", "1"]
COMPARE = ["sentiment", "compare", "--cells", "rnn,gru", "--data", TARBALL, "--epochs", "2", *TINY]
INTERRUPTED = "interrupted; run the same command again to continue."


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sentiment") / "run"
    assert main(["sentiment", "train", "--data", TARBALL, "--cell", "gru", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """An uninterrupted comparison, for the interrupted ones to match."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    assert main([*COMPARE, "--out", str(out)]) == 0
    return out


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def timeless(results: dict) -> dict:
    """A comparison's results.json without what depends on the machine's speed."""
    for model in results["models"].values():
        for key in ("train_s", "test_s", "tokens_per_s", "load_1min"):
            model.pop(key)
    return results


# ----- 1, 2: what compare's --out may be ---------------------------------------------------------

def test_compare_refuses_a_training_run_as_out(run, capsys):
    before = snapshot(run)
    assert main([*COMPARE, "--out", str(run)]) == 2
    assert f"{run} holds a training run, not a comparison" in error(capsys)
    assert snapshot(run) == before


def test_compare_refuses_a_folder_of_other_files(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "rnn").mkdir(parents=True)
    (mine / "rnn" / "notes.txt").write_text("mine")
    assert main([*COMPARE, "--out", str(mine)]) == 2
    assert f"{mine} holds files that are not a comparison" in error(capsys)
    assert snapshot(mine) == {"rnn/notes.txt": hashlib.sha256(b"mine").hexdigest()}
    (mine / "config.json").write_text('{"editor": "vim"}')                  # someone's config.json: not a run
    assert main([*COMPARE, "--out", str(mine)]) == 2
    assert f"{mine} holds files that are not a comparison" in error(capsys)


def test_compare_continues_only_with_the_same_settings(compared, tmp_path, capsys):
    before = snapshot(compared)
    hidden = [*COMPARE[:-len(TINY)], *TINY[:2], "--hidden", "6", *TINY[4:]]
    assert main([*hidden, "--out", str(compared)]) == 2
    assert "holds a comparison made with other settings (--hidden 5 then, 6 now)" in error(capsys)
    other = [*COMPARE, "--out", str(compared)]
    other[other.index(TARBALL)] = str(FIXTURES / "aclImdb")
    assert main(other) == 2
    assert f"(--data {TARBALL} then, {FIXTURES / 'aclImdb'} now)" in error(capsys)
    minutes = [*COMPARE[:COMPARE.index("--epochs")], *COMPARE[COMPARE.index("--epochs") + 2:], "--minutes", "1"]
    assert main([*minutes, "--out", str(compared)]) == 2
    assert "(--epochs 2 then, unset now; --minutes unset then, 1.0 now)" in error(capsys)
    assert snapshot(compared) == before
    assert main([*COMPARE, "--out", str(compared)]) == 0         # the same settings: nothing to train again
    assert snapshot(compared)["rnn/metrics.jsonl"] == before["rnn/metrics.jsonl"]


# ----- 3: Ctrl-C in compare ----------------------------------------------------------------------

def test_compare_stopped_while_training_continues_to_the_same_results(compared, tmp_path, monkeypatch, capsys):
    from unrolled.tasks.sentiment import SentimentTask

    calls = []
    train_batch = SentimentTask.train_batch

    def ctrl_c_at_step_3(self, epoch, index):
        calls.append(self.config.cell)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)                    # what Ctrl-C does: fit saves and stops
        return train_batch(self, epoch, index)

    monkeypatch.setattr(SentimentTask, "train_batch", ctrl_c_at_step_3)
    out = tmp_path / "cmp"
    assert main([*COMPARE, "--out", str(out)]) == 130
    assert INTERRUPTED in capsys.readouterr().err
    assert calls == ["rnn"] * 3 and not (out / "gru").exists()
    monkeypatch.undo()
    assert main([*COMPARE, "--out", str(out)]) == 0               # resumes rnn, then trains gru
    results = lambda folder: timeless(json.loads((folder / "results.json").read_text()))
    assert results(out) == results(compared)


def test_compare_stopped_while_reporting_draws_it_when_run_again(compared, tmp_path, monkeypatch, capsys):
    from unrolled.tasks import sentiment_report

    def ctrl_c(*args):
        raise KeyboardInterrupt

    out = tmp_path / "cmp"
    monkeypatch.setattr(sentiment_report, "plot_gradient_flow", ctrl_c)
    assert main([*COMPARE, "--out", str(out)]) == 130
    assert INTERRUPTED in capsys.readouterr().err
    assert not (out / "results.json").exists()
    monkeypatch.undo()
    assert main([*COMPARE, "--out", str(out)]) == 0
    assert (out / "report.md").is_file() and (out / "plots" / "gradient_flow.png").is_file()


# ----- 4, 5: explain's --out, text that is not UTF-8 ----------------------------------------------

@pytest.mark.parametrize("name", ["afile.txt", "x.jpg"])
def test_explain_out_must_be_a_png(run, tmp_path, capsys, name):
    out = tmp_path / name
    if name.endswith(".txt"):
        out.write_text("mine")
    with pytest.raises(SystemExit) as stopped:                             # argparse's own check
        main(["sentiment", "explain", str(run), "A fine film.", "--out", str(out)])
    assert stopped.value.code == 2
    assert f"argument --out: must name a .png file, but was given '{out}'" in error(capsys)
    assert out.read_text() == "mine" if name.endswith(".txt") else not out.exists()


@pytest.mark.parametrize("data, line", [
    (b"A fine film.\nCaf\xe9 society.\n", 2),
    ("A fine film.\n".encode("utf-16"), 1),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), 1),
])
def test_predict_refuses_stdin_that_is_not_utf8(run, capsys, monkeypatch, data, line):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape"))
    assert main(["sentiment", "predict", str(run)]) == 2
    assert f"stdin line {line} is not UTF-8 text." in error(capsys)


def test_predict_reads_utf8_stdin_through_its_bytes(run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("\ufeffUn caf\u00e9 charmant.\n".encode())))
    assert main(["sentiment", "predict", str(run)]) == 0
    assert capsys.readouterr().out.split("\t")[2] == "Un caf\u00e9 charmant.\n"


# ----- 6, 7, 8: data, vectors and flags ----------------------------------------------------------

def refused(capsys, tmp_path, *flags, data=TARBALL) -> str:
    """The one-sentence error of `sentiment train` with `flags`, which must not make its --out."""
    new = tmp_path / "new"
    assert main(["sentiment", "train", "--data", str(data), *TINY, "--epochs", "1", *flags, "--out", str(new)]) == 2
    assert not new.exists()
    return error(capsys)


def table(tmp_path, text: str) -> Path:
    path = tmp_path / "reviews.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_an_empty_label_or_no_text_is_refused(tmp_path, capsys):
    rows = "".join(f"film {i},{'pos' if i % 2 else 'neg'}\n" for i in range(8))
    path = table(tmp_path, "text,label\n" + rows + "A film without a label,\n")
    assert f"line 10 of {path} has no label in column 'label'." in refused(capsys, tmp_path, data=path)
    path = table(tmp_path, "text,label\n" + "".join(f",{'pos' if i % 2 else 'neg'}\n" for i in range(8)))
    assert f"{path} has no text in column 'text'" in refused(capsys, tmp_path, data=path)


def test_column_flags_must_name_two_columns_of_a_table(tmp_path, capsys):
    csv = FIXTURES / "imdb_reviews.csv"
    err = refused(capsys, tmp_path, "--text-column", "review", "--label-column", "review", data=csv)
    assert "--text-column and --label-column both name 'review'" in err
    err = refused(capsys, tmp_path, "--text-column", "review", data=VADER)
    assert f"--text-column applies only to .csv/.tsv data, but --data {VADER} is not a table." in err
    err = refused(capsys, tmp_path, "--text-column", "a", "--label-column", "b")
    assert "--text-column and --label-column apply only to .csv/.tsv data" in err


@pytest.mark.parametrize("content, message", [
    ("film 0.1 0.2 0.3 0.4 0.5 0.6\ngood 0.1 nan 0.3 0.4 0.5 0.6\n", "line 2 of --vectors {path} holds a value that "
                                                                      "is not a finite number in float32."),
    ("2 6\nfilm 0.1 0.2 inf 0.4 0.5 0.6\n", "line 2 of --vectors {path} holds a value that is not a finite number in "
                                           "float32."),
    ("film 0.1 0.2 1e40 0.4 0.5 0.6\n", "line 1 of --vectors {path} holds a value that is not a finite number in "
                                       "float32."),
    ("", "--vectors {path} holds no word vectors."),
    ("2 6\n\n", "--vectors {path} holds no word vectors."),
    (b"film 0.1\n\xd9\x00\x01", "--vectors {path} is not UTF-8 text (line 2)."),
    (None, "--vectors {path} does not exist."),
    ("folder", "--vectors {path} is a folder, not a file of word vectors."),
])
def test_bad_vectors_are_one_sentence_naming_the_flag_and_file(tmp_path, capsys, content, message):
    path = tmp_path / "vectors.txt"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert message.format(path=path) in refused(capsys, tmp_path, "--vectors", str(path))


def test_too_small_a_vocabulary_names_max_vocab(tmp_path, capsys):
    err = refused(capsys, tmp_path, "--max-vocab", "2")
    assert "--max-vocab must be at least 3 (two ids are <unk> and <pad>), but was given 2." in err


def test_a_csv_with_one_label_or_too_few_texts_is_refused_in_plain_words(tmp_path, capsys):
    path = table(tmp_path, "text,label\n" + "".join(f"good film number {i},pos\n" for i in range(12)))
    assert f"the data in {path} has only one label ('pos'); a classifier needs at least two." in \
        refused(capsys, tmp_path, data=path)
    path = table(tmp_path, "text,label\nA fine film,pos\nA dull film,neg\n")
    assert f"expected at least 3 labelled texts in {path} (some are held out for validation and testing), " \
           "but it has 2." in refused(capsys, tmp_path, data=path)
    three = table(tmp_path, "text,label\nA fine film,pos\nA dull film,neg\nA good film,pos\n")
    assert main(["sentiment", "train", "--data", str(three), *TINY, "--epochs", "1", "--out", str(tmp_path / "ok")]) == 0


def test_a_tarball_that_is_not_one_is_one_plain_sentence(tmp_path, capsys):
    bad = tmp_path / "reviews.tar.gz"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    err = refused(capsys, tmp_path, data=bad)
    assert f"expected a readable tar archive at {bad}, but it is damaged or not a tar archive." in err
    assert "ReadError" not in err and "method" not in err
