"""Bad input on every command: one sentence on stderr, exit code 2, no traceback, no damage.

One table lists every case: the command line (run in-process through `unrolled.cli.main`), a
phrase of the one-sentence error, and optionally what stdin holds. Placeholders: {lm}, {sentiment},
{forecast} and {translate} are trained tiny runs of each task (the same folders for every case:
each case checks that every run folder it names is byte for byte unchanged); {bad} is a folder of
bad input files (see `bad_files`); {new} is a fresh --out that must not come into being; {broken:...}
are copies of runs with one file damaged.
"""
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from unrolled.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
LM_DATA = str(FIXTURES / "tinyshakespeare_4k.txt")
LM = ["--data", LM_DATA, "--hidden", "16", "--embed", "8", "--layers", "1", "--seq-len", "8", "--batch", "4",
      "--epochs", "1", "--eval-every", "50"]
TARBALL = str(FIXTURES / "sentiment" / "aclImdb_tiny.tar.gz")
SENTIMENT = ["--embed", "6", "--hidden", "5", "--batch", "2", "--max-len", "40", "--eval-every", "4", "--min-freq", "1",
             "--epochs", "1"]
AIRLINE = str(FIXTURES / "airline-passengers.csv")
FORECAST = ["--target", "Passengers", "--lookback", "12", "--hidden", "8", "--epochs", "2"]
PAIRS = str(FIXTURES / "eng_fra_pairs.txt")
TRANSLATE = ["--hidden", "16", "--embed", "8", "--batch", "32", "--dropout", "0", "--max-len", "8", "--beam", "2",
             "--epochs", "1", "--eval-every", "50"]
HUGE_MIB = 257  # just above the 256 MiB input limit; a sparse file, so it costs no disk


def bad_files(folder: Path) -> None:
    """Every bad input file the table refers to as {bad}/<name>."""
    write = lambda name, data: (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    write("empty.txt", "")
    write("blank.txt", "  \n\n")
    write("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    write("latin1.txt", "Caf\xe9 cr\xe8me, na\xefve r\xe9sum\xe9.\n".encode("latin-1") * 50)
    write("utf16.txt", "To be, or not to be.\n".encode("utf-16") * 50)
    write("short.txt", "To be")
    with open(folder / "huge.txt", "wb") as f:
        f.truncate(HUGE_MIB * 2**20)
    (folder / "folder").mkdir()
    (folder / "folder.png").mkdir()
    # sentiment tables
    write("wrong_columns.csv", "review,stars\nGreat film,5\nAwful,1\n")
    write("one_text.csv", "text,label\nA fine film,pos\n")
    write("one_class.csv", "text,label\n" + "".join(f"good film number {i},pos\n" for i in range(12)))
    write("latin1.csv", "text,label\nCaf\xe9 society,pos\nDull,neg\n".encode("latin-1"))
    write("header_only.csv", "text,label\n")
    write("reviews.xlsx", b"PK\x03\x04 not really a spreadsheet")
    write("vectors_short.txt", "film 0.1 0.2\n")
    # forecasting tables
    write("no_rows.csv", "Month,Passengers\n")
    write("ragged.csv", "Month,Passengers\n1949-01,112\n1949-02,118,7\n")
    write("words.csv", "Month,Passengers\n1949-01,many\n1949-02,few\n1949-03,some\n")
    write("five_rows.csv", "Month,Passengers\n" + "".join(f"1949-0{m},{100 + m}\n" for m in range(1, 6)))
    write("counted.csv", "No,Passengers\n" + "".join(f"{i},{100 + i % 7}\n" for i in range(1, 60)))
    write("other_columns.csv", "Month,Passengers,Cargo\n" + "".join(f"1950-{m:02d},{100 + m},{m * m % 7}\n" for m in range(1, 13)))
    write("duplicate_times.csv", "Month,Passengers\n1949-01,112\n1949-01,118\n" +
          "".join(f"1950-{m:02d},{100 + m}\n" for m in range(1, 13)))
    # translation pairs
    write("no_tab.txt", "I am cold. J'ai froid.\nI am hot. J'ai chaud.\n")
    write("one_pair.txt", "I am cold.\tJ'ai froid.\n")
    write("not_tutorial.txt", "Go.\tVa !\nRun!\tCours !\n")


CASES = [
    # ----- lm train: files -------------------------------------------------------------------
    ("lm-missing", "lm train {lm_flags} --data {bad}/missing.txt --out {new}", "does not exist"),
    ("lm-empty", "lm train {lm_flags} --data {bad}/empty.txt --out {new}", "is empty"),
    ("lm-blank", "lm train {lm_flags} --data {bad}/blank.txt --out {new}", "is empty"),
    ("lm-binary", "lm train {lm_flags} --data {bad}/binary.txt --out {new}", "is a binary file"),
    ("lm-latin1", "lm train {lm_flags} --data {bad}/latin1.txt --out {new}", "is not UTF-8 text"),
    ("lm-utf16", "lm train {lm_flags} --data {bad}/utf16.txt --out {new}", "is a binary file"),
    ("lm-huge", "lm train {lm_flags} --data {bad}/huge.txt --out {new}", "MiB allowed for an input file"),
    ("lm-device", "lm train {lm_flags} --data /dev/zero --out {new}", "is not a regular file"),
    ("lm-folder", "lm train {lm_flags} --data {bad}/folder --out {new}", "is a folder"),
    ("lm-too-little", "lm train {lm_flags} --data {bad}/short.txt --out {new}", "give more text"),
    # ----- lm train: flags and run folders -----------------------------------------------------
    ("lm-epochs-and-minutes", "lm train {lm_flags} --minutes 1 --out {new}", "not allowed with argument"),
    ("lm-vocab-too-small", "lm train {lm_flags} --level word --max-vocab 1 --out {new}", "--max-vocab must be at least 2"),
    ("lm-resume-with-flags", "lm train --resume {lm} --hidden 32", "takes no other flags"),
    ("lm-resume-and-preset", "lm train --resume {lm} --preset quick", "takes no other flags"),
    ("lm-resume-missing", "lm train --resume {bad}/no-run", "is not a folder"),
    ("lm-resume-other-task", "lm train --resume {sentiment}", "expected a 'lm' run"),
    ("lm-resume-finished", "lm train --resume {lm}", "already spent its budget"),
    ("lm-out-is-a-run", "lm train {lm_flags} --out {lm}", "already holds a run"),
    ("lm-out-is-another-tasks-run", "lm train {lm_flags} --out {sentiment}",
     "already holds a 'sentiment' run; choose another --out"),
    ("lm-out-is-a-file", "lm train {lm_flags} --out {bad}/empty.txt", "is a file"),
    ("lm-empty-out", "lm train {lm_flags} --out ''", "argument --out: must name a path, but was given ''"),
    ("lm-negative-seed", "lm train {lm_flags} --seed -1 --out {new}", "argument --seed: must be an integer >= 0"),
    ("lm-max-vocab-at-char-level", "lm train {lm_flags} --level char --max-vocab 5 --out {new}",
     "--max-vocab applies to --level word only, but this run is at the char level"),
    ("lm-unknown-nonfinite", "lm train {lm_flags} --on-nonfinite ignore --out {new}", "invalid choice"),
    # ----- lm sample / inspect -----------------------------------------------------------------
    ("lm-sample-prompt-outside-vocab", "lm sample {lm} --prompt ROMEO\u00a7", "not in the vocabulary"),
    ("lm-sample-prompt-empty", "lm sample {lm} --prompt ''", "at least one token, but was given none"),
    ("lm-sample-prompt-not-utf8", "lm sample {lm} --prompt 'ab\udcffcd'", "argument --prompt: must be UTF-8 text"),
    ("lm-inspect-text-not-utf8", "lm inspect {lm} --text 'ab\udcffcd'", "argument --text: must be UTF-8 text"),
    ("lm-sample-no-run", "lm sample {bad}/no-run", "is not a folder"),
    ("lm-sample-other-task", "lm sample {forecast}", "expected a 'lm' run"),
    ("lm-sample-bad-top-p", "lm sample {lm} --top-p 0", "must be a number in (0, 1]"),
    ("lm-sample-beam-too-wide", "lm sample {lm} --beam 100000", "must be an integer from 1 to 100"),
    ("lm-sample-beam-and-top-k", "lm sample {lm} --beam 3 --top-k 5", "--beam"),
    ("lm-sample-torn-checkpoint", "lm sample {broken:lm:best.npz}", "truncated, corrupted"),
    ("lm-sample-config-seed-edited", "lm sample {broken:lm:seed}", "config.json does not hold a valid config: seed must be"),
    ("lm-sample-config-null", "lm sample {broken:lm:null-dropout}", "valid config: dropout must be float, but is null"),
    ("lm-sample-missing-vocab", "lm sample {broken:lm:vocab.json}", "does not exist"),
    ("lm-inspect-one-token", "lm inspect {lm} --text a", "at least 2 tokens"),
    ("lm-inspect-outside-vocab", "lm inspect {lm} --text '\u00a7\u00a7 text'", "not in the vocabulary"),
    ("lm-inspect-empty-text", "lm inspect {lm} --text ''", "--text must hold at least 2 tokens to inspect"),
    ("lm-inspect-no-text", "lm inspect {lm}", "required"),
    # ----- sentiment train ---------------------------------------------------------------------
    ("sentiment-missing", "sentiment train {sentiment_flags} --data {bad}/missing.csv --out {new}", "there is none"),
    ("sentiment-empty", "sentiment train {sentiment_flags} --data {bad}/empty.txt --out {new}", "format is unknown"),
    ("sentiment-header-only", "sentiment train {sentiment_flags} --data {bad}/header_only.csv --out {new}",
     "only a header"),
    ("sentiment-wrong-columns", "sentiment train {sentiment_flags} --data {bad}/wrong_columns.csv --out {new}",
     "expected a column named 'text'"),
    ("sentiment-latin1", "sentiment train {sentiment_flags} --data {bad}/latin1.csv --out {new}", "not valid UTF-8"),
    ("sentiment-one-text", "sentiment train {sentiment_flags} --data {bad}/one_text.csv --out {new}",
     "at least 3 labelled texts"),
    ("sentiment-one-class", "sentiment train {sentiment_flags} --data {bad}/one_class.csv --out {new}",
     "has only one label"),
    ("sentiment-unknown-format", "sentiment train {sentiment_flags} --data {bad}/reviews.xlsx --out {new}",
     "format is unknown"),
    ("sentiment-binary-tarball", "sentiment train {sentiment_flags} --data {bad}/binary.tar.gz --out {new}",
     "readable tar archive"),
    ("sentiment-folder-without-reviews", "sentiment train {sentiment_flags} --data {bad}/folder --out {new}",
     "found none"),
    ("sentiment-huge", "sentiment train {sentiment_flags} --data {bad}/huge.csv --out {new}", "MiB allowed"),
    ("sentiment-vectors-missing", "sentiment train {sentiment_flags} --data {tarball} --vectors {bad}/missing.txt "
     "--out {new}", "does not exist"),
    ("sentiment-vectors-wrong-size", "sentiment train {sentiment_flags} --data {tarball} --vectors "
     "{bad}/vectors_short.txt --out {new}", "expected a word and 6 numbers"),
    ("sentiment-vectors-binary", "sentiment train {sentiment_flags} --data {tarball} --vectors {bad}/binary.txt "
     "--out {new}", "is not UTF-8 text"),
    ("sentiment-epochs-and-minutes", "sentiment train {sentiment_flags} --minutes 1 --data {tarball} --out {new}",
     "not allowed with argument"),
    ("sentiment-resume-with-flags", "sentiment train --resume {sentiment} --cell rnn", "takes no other flags"),
    ("sentiment-resume-other-task", "sentiment train --resume {lm}", "expected a 'sentiment' run"),
    ("sentiment-negative-seed", "sentiment train {sentiment_flags} --data {tarball} --seed -1 --out {new}",
     "argument --seed: must be an integer >= 0"),
    ("sentiment-compare-same-cell", "sentiment compare --cells gru,gru {sentiment_flags} --data {tarball} --out {new}",
     "distinct cells"),
    # ----- sentiment predict / explain ---------------------------------------------------------
    ("sentiment-predict-empty-run", "sentiment predict '' 'Great film'", "argument DIR: must name a path"),
    ("sentiment-predict-empty-text", "sentiment predict {sentiment} ''", "empty one"),
    ("sentiment-predict-no-words", "sentiment predict {sentiment} '...'", "at least one word"),
    ("sentiment-predict-empty-stdin", "sentiment predict {sentiment}", "given none", "\n  \n"),
    ("sentiment-predict-other-task", "sentiment predict {translate} 'Great film'", "expected a 'sentiment' run"),
    ("sentiment-predict-torn-checkpoint", "sentiment predict {broken:sentiment:best.npz} 'Great film'",
     "truncated, corrupted"),
    ("sentiment-predict-config-edited", "sentiment predict {broken:sentiment:hidden} 'Great film'",
     "best.npz does not fit the model that"),
    ("sentiment-predict-not-utf8", "sentiment predict {sentiment} Fine. 'Caf\udce9'", "argument TEXT: must be UTF-8"),
    ("sentiment-explain-not-utf8", "sentiment explain {sentiment} 'Caf\udce9 society'", "argument TEXT: must be UTF-8"),
    ("sentiment-explain-out-below-a-file", "sentiment explain {sentiment} 'Great film' --out {bad}/empty.txt/x.png",
     "empty.txt: it, or a folder above it, is a file where a folder is needed"),
    ("sentiment-explain-out-a-folder", "sentiment explain {sentiment} 'Great film' --out {bad}/folder.png",
     "is a folder"),
    ("sentiment-explain-out-in-a-run", "sentiment explain {sentiment} 'Great film' --out {lm}/plots/loss.png",
     "is in the run folder"),
    ("sentiment-explain-no-words", "sentiment explain {sentiment} '...'", "at least one word"),
    # ----- forecast train ----------------------------------------------------------------------
    ("forecast-missing", "forecast train {forecast_flags} --data {bad}/missing.csv --out {new}", "no such file"),
    ("forecast-empty", "forecast train {forecast_flags} --data {bad}/empty.txt --out {new}", "it is empty"),
    ("forecast-header-only", "forecast train {forecast_flags} --data {bad}/no_rows.csv --out {new}", "only the header"),
    ("forecast-ragged", "forecast train {forecast_flags} --data {bad}/ragged.csv --out {new}", "fields on every row"),
    ("forecast-latin1", "forecast train {forecast_flags} --data {bad}/latin1.txt --out {new}", "not UTF-8"),
    ("forecast-binary", "forecast train {forecast_flags} --data {bad}/binary.txt --out {new}",
     "bytes that are not UTF-8"),
    ("forecast-huge", "forecast train {forecast_flags} --data {bad}/huge.csv --out {new}", "MiB allowed"),
    ("forecast-no-target-column", "forecast train --data {airline} --target Riders --out {new}",
     "column 'Riders' is not in"),
    ("forecast-target-not-numbers", "forecast train {forecast_flags} --data {bad}/words.csv --out {new}",
     "must hold numbers"),
    ("forecast-target-is-time", "forecast train --data {airline} --target Month --out {new}", "must not be a time column"),
    ("forecast-time-col-counts-rows", "forecast train {forecast_flags} --data {bad}/counted.csv --time-col No "
     "--out {new}", "or a 4-digit year, but data row 1 holds '1'"),
    ("forecast-too-short", "forecast train {forecast_flags} --data {bad}/five_rows.csv --out {new}", "too short"),
    ("forecast-duplicate-times", "forecast train {forecast_flags} --data {bad}/duplicate_times.csv --out {new}",
     "each timestamp once"),
    ("forecast-no-target-flag", "forecast train --data {airline} --out {new}", "a new run needs --target"),
    ("forecast-bad-split", "forecast train {forecast_flags} --data {airline} --split 0.5,0.5,0.5 --out {new}",
     "adding up to 1"),
    ("forecast-ar-features-without-ar", "forecast train {forecast_flags} --data {airline} --ar-features auto "
     "--out {new}", "an 'ar' base corrects, but the base is"),
    ("forecast-ar-features-unknown", "forecast train {forecast_flags} --data {airline} --base ar --ar-features Cars "
     "--out {new}", "--ar-features names 'Cars', but the inputs besides the target are none"),
    ("forecast-negative-input-lasso", "forecast train {forecast_flags} --data {airline} --input-lasso -1 --out {new}",
     "argument --input-lasso"),
    ("forecast-negative-split", "forecast train {forecast_flags} --data {airline} --split -0.1,0.5,0.6 --out {new}",
     "three positive fractions"),
    ("forecast-values-too-large", "forecast train --data {bad}/huge_values.csv --target Passengers --lookback 3 "
     "--out {new}", "holds values too large to compute with (up to 1.2e+301); rescale it"),
    ("forecast-log-of-negative", "forecast train --data {bad}/negative.csv --target Passengers --lookback 3 --log "
     "--out {new}", "above zero"),
    ("forecast-season-longer-than-training", "forecast train {forecast_flags} --data {airline} --season 100 "
     "--out {new}", "no longer than the season of 100"),
    ("forecast-ma-window-longer-than-history", "forecast train {forecast_flags} --data {airline} --ma-window 1000 "
     "--out {new}", "--ma-window 1000 averages more rows than come before the first test forecast"),
    ("forecast-lr-patience-with-cosine", "forecast train {forecast_flags} --data {airline} --schedule cosine "
     "--lr-patience 1 --out {new}", "--lr-patience applies to --schedule plateau only"),
    ("forecast-out-is-a-run", "forecast train {forecast_flags} --data {airline} --out {forecast}", "already holds a run"),
    # ----- forecast predict --------------------------------------------------------------------
    ("forecast-predict-new-columns", "forecast predict {forecast} --data {bad}/other_columns.csv --out {bad}/f.csv",
     "not trained with"),
    ("forecast-predict-out-in-a-run", "forecast predict {forecast} --out {lm}/plots/loss.png", "is in the run folder"),
    ("forecast-predict-too-short", "forecast predict {forecast} --data {bad}/five_rows.csv --out {bad}/f.csv",
     "fewer than the lookback"),
    ("forecast-predict-missing-data", "forecast predict {forecast} --data {bad}/missing.csv --out {bad}/f.csv",
     "no such file"),
    ("forecast-predict-binary-data", "forecast predict {forecast} --data {bad}/binary.txt --out {bad}/f.csv",
     "bytes that are not UTF-8"),
    ("forecast-predict-huge-data", "forecast predict {forecast} --data {bad}/huge.csv --out {bad}/f.csv", "MiB allowed"),
    ("forecast-predict-config-edited", "forecast predict {broken:forecast:hidden} --out {bad}/f.csv",
     "best.npz does not fit the model that"),
    ("forecast-predict-other-task", "forecast predict {lm}", "expected a 'forecast' run"),
    ("forecast-predict-config-null", "forecast predict {broken:forecast:null-ridge} --out {bad}/f.csv",
     "valid config: ridge must be float, but is null"),
    ("forecast-predict-torn-data", "forecast predict {broken:forecast:data.npz} --out {bad}/f.csv",
     "truncated, corrupted"),
    # ----- forecast evaluate -------------------------------------------------------------------
    ("forecast-evaluate-new-columns", "forecast evaluate {forecast} --data {bad}/other_columns.csv",
     "not trained with"),
    ("forecast-evaluate-too-short", "forecast evaluate {forecast} --data {bad}/five_rows.csv", "fewer than the lookback"),
    ("forecast-evaluate-bad-since", "forecast evaluate {forecast} --since soon", "--since must be a time such as 1949-01"),
    ("forecast-evaluate-since-past-the-end", "forecast evaluate {forecast} --since 1961-01",
     "no window to score from 1961-01"),
    ("forecast-evaluate-out-is-data", "forecast evaluate {forecast} --data {airline} --out {airline}",
     "is a data file of this run"),
    ("forecast-evaluate-other-task", "forecast evaluate {lm}", "expected a 'forecast' run"),
    # ----- translate train ---------------------------------------------------------------------
    ("translate-missing", "translate train {translate_flags} --data {bad}/missing.txt --out {new}", "does not exist"),
    ("translate-empty", "translate train {translate_flags} --data {bad}/empty.txt --out {new}", "no sentence pairs"),
    ("translate-binary", "translate train {translate_flags} --data {bad}/binary.txt --out {new}", "binary file"),
    ("translate-latin1", "translate train {translate_flags} --data {bad}/latin1.txt --out {new}", "not UTF-8"),
    ("translate-no-tab", "translate train {translate_flags} --data {bad}/no_tab.txt --out {new}", "tab-separated"),
    ("translate-one-pair", "translate train {translate_flags} --data {bad}/one_pair.txt --out {new}", "give more pairs"),
    ("translate-nothing-in-preset", "translate train {translate_flags} --data {bad}/not_tutorial.txt --out {new}",
     "no sentence pairs left"),
    ("translate-max-len-huge", "translate train {translate_flags} --data {pairs} --max-len 1000000000000 --out {new}",
     "an integer from 1 to 10000"),
    ("translate-huge", "translate train {translate_flags} --data {bad}/huge.txt --out {new}", "MiB allowed"),
    ("translate-heads-do-not-divide", "translate train {translate_flags} --data {pairs} --arch transformer "
     "--heads 3 --out {new}", "multiple of heads"),
    ("translate-rnn-flags-on-a-transformer", "translate train {translate_flags} --data {pairs} --arch transformer "
     "--cell lstm --teacher-forcing 0.5 --out {new}", "--cell, --embed and --teacher-forcing apply to --arch rnn only"),
    ("translate-transformer-flag-on-an-rnn", "translate train {translate_flags} --data {pairs} --heads 2 --out {new}",
     "--heads applies to --arch transformer only"),
    ("translate-negative-seed", "translate train {translate_flags} --seed -3 --out {new}", "must be an integer >= 0"),
    ("translate-epochs-and-minutes", "translate train {translate_flags} --minutes 2 --out {new}",
     "not allowed with argument"),
    ("translate-resume-with-flags", "translate train --resume {translate} --lr 0.1", "takes no other flags"),
    ("translate-resume-finished", "translate train --resume {translate}", "already spent its budget"),
    # ----- translate run / eval ----------------------------------------------------------------
    ("translate-run-plot-in-a-run", "translate run {translate} 'I am cold.' --plot {translate}/plots/loss.png",
     "is in the run folder"),
    ("translate-run-plot-over-the-runs-heatmap", "translate run {translate} 'I am cold.' --plot "
     "{translate}/plots/attention.png", "name a file elsewhere, or plots/translation.png in"),
    ("translate-run-no-words", "translate run {translate} '123 456'", "at least one word"),
    ("translate-run-plot-not-png", "translate run {translate} 'I am cold.' --plot {bad}/empty.txt", "must name a .png"),
    ("translate-run-config-edited", "translate run {broken:translate:hidden} 'I am cold.'",
     "best.npz does not fit the model that"),
    ("translate-run-not-utf8", "translate run {translate} 'je \udcff suis'", "argument SENTENCE: must be UTF-8 text"),
    ("translate-run-plot-a-folder", "translate run {translate} 'I am cold.' --plot {bad}/folder.png", "png is a folder"),
    ("translate-run-other-task", "translate run {sentiment} 'I am cold.'", "expected a 'translate' run"),
    ("translate-run-pickled-checkpoint", "translate run {broken:translate:pickle} 'I am cold.'", "only numeric arrays"),
    ("translate-eval-config-null", "translate eval {broken:translate:null-test_fraction}",
     "valid config: test_fraction must be float, but is null"),
    ("translate-eval-data-gone", "translate eval {broken:translate:data}", "does not exist"),
    ("translate-eval-beam-too-wide", "translate eval {translate} --beam 101", "must be an integer from 1 to 100"),
    ("translate-resume-config-seed-edited", "translate train --resume {broken:translate:seed}",
     "config.json does not hold a valid config: seed must be"),
    ("translate-eval-other-task", "translate eval {forecast}", "expected a 'translate' run"),
]



@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny trained run of every task."""
    root = tmp_path_factory.mktemp("runs")
    commands = {
        "lm": ["lm", "train", *LM],
        "sentiment": ["sentiment", "train", "--data", TARBALL, *SENTIMENT],
        "forecast": ["forecast", "train", "--data", AIRLINE, *FORECAST],
        "translate": ["translate", "train", "--data", PAIRS, *TRANSLATE],
    }
    for task, argv in commands.items():
        assert main([*argv, "--out", str(root / task)]) == 0, task
    return {task: root / task for task in commands}


def _broken(runs: dict, spec: str, folder: Path) -> Path:
    """A copy of a run with one thing damaged: `task:file` truncated, `task:pickle`, `task:data` gone,
    `task:hidden` or `task:seed` edited in config.json, or `task:null-<field>` set to null there."""
    task, what = spec.split(":")
    copy = folder / f"{task}-{what.replace('.', '-')}"
    if copy.exists():
        return copy
    shutil.copytree(runs[task], copy)
    if what == "pickle":
        payload = np.array([{"any": "object"}], dtype=object)  # an array that needs pickle to load
        buffer = io.BytesIO()
        np.savez(buffer, **{"model/x": payload})
        (copy / "best.npz").write_bytes(buffer.getvalue())
        record = json.loads((copy / "best.json").read_text())
        from unrolled.checkpoint import meta_digest
        record["npz_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
        record["meta_sha256"] = meta_digest(record)
        (copy / "best.json").write_text(json.dumps(record))
    elif what == "data":
        config = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**config, "data": str(folder / "moved-away.txt")}))
    elif what.startswith("null-"):                          # a field of config.json emptied by hand
        config = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**config, what[len("null-"):]: None}))
    elif what in ("hidden", "seed"):                         # config.json edited by hand
        config = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**config, what: config[what] + 2 if what == "hidden" else -1}))
    elif what == "vocab.json":
        (copy / what).unlink()
    else:
        data = (copy / what).read_bytes()
        (copy / what).write_bytes(data[: len(data) // 2])
    return copy


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    bad_files(folder)
    (folder / "binary.tar.gz").write_bytes((folder / "binary.txt").read_bytes())
    (folder / "huge.csv").symlink_to(folder / "huge.txt")
    (folder / "negative.csv").write_text("Month,Passengers\n" + "".join(f"1949-{m:02d},{m - 6}\n" for m in range(1, 13)))
    (folder / "huge_values.csv").write_text("Month,Passengers\n" + "".join(f"1949-{m:02d},{m}e300\n" for m in range(1, 13)))
    return folder


def _argv(template: str, runs: dict, bad: Path, new: Path) -> tuple[list[str], list[Path]]:
    """The command line of a case, and the run folders it names."""
    import shlex
    named = []
    words = []
    for word in shlex.split(template):
        if word in ("{lm_flags}", "{sentiment_flags}", "{forecast_flags}", "{translate_flags}"):
            words += {"{lm_flags}": LM, "{sentiment_flags}": SENTIMENT, "{forecast_flags}": FORECAST,
                      "{translate_flags}": TRANSLATE}[word]
            continue
        if word.startswith("{broken:"):
            path = _broken(runs, word[len("{broken:"):-1], bad / "broken")
            named.append(path)
            words.append(str(path))
            continue
        for task, path in runs.items():
            if "{" + task + "}" in word:
                named.append(path)
        words.append(word.format(new=new, bad=bad, tarball=TARBALL, airline=AIRLINE, pairs=PAIRS,
                                 **{task: path for task, path in runs.items()}))
    return words, named


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0]) for c in CASES])
def test_bad_input_is_one_sentence_and_exit_2(case, runs, bad, tmp_path, capsys, monkeypatch):
    name, template, phrase, *stdin = case
    (bad / "broken").mkdir(exist_ok=True)
    new = tmp_path / "new"
    argv, named = _argv(template, runs, bad, new)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin[0] if stdin else ""))
    before = {path: _snapshot(path) for path in named}
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own checks
        code = e.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, f"exit {code}: {captured.err}"
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(("unrolled: error: ", "unrolled ")), lines[0]
    assert phrase in lines[0], lines[0]
    assert not new.exists(), "a failed command left a run folder behind"
    for path in named:
        assert _snapshot(path) == before[path], f"{path} changed"


def test_the_table_covers_every_command():
    commands = {" ".join(c[1].split()[:2]) for c in CASES}
    assert commands >= {"lm train", "lm sample", "lm inspect", "sentiment train", "sentiment predict",
                        "sentiment explain", "sentiment compare", "forecast train", "forecast predict",
                        "forecast evaluate", "translate train", "translate run", "translate eval"}


@pytest.mark.parametrize("command", [
    "lm train {lm_flags} --out {mine}",
    "sentiment train {sentiment_flags} --data {tarball} --out {mine}",
    "forecast train {forecast_flags} --data {airline} --out {mine}",
    "translate train {translate_flags} --data {pairs} --out {mine}",
    "lm inspect {lm} --text 'To be, or not to be' --out {mine}",
], ids=lambda c: " ".join(c.split()[:2]))
def test_out_never_writes_into_a_folder_of_other_files(command, runs, bad, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "plots").mkdir(parents=True)
    for name in ("report.md", "notes.txt", "plots/loss.png"):   # names a run would write over
        (mine / name).write_text("mine")
    argv, _ = _argv(command.replace("{mine}", str(mine)), runs, bad, tmp_path / "new")
    assert main(argv) == 2
    assert f"{mine} holds files that are not a" in capsys.readouterr().err
    assert _snapshot(mine) == {name: hashlib.sha256(b"mine").hexdigest()
                               for name in ("notes.txt", "plots/loss.png", "report.md")}


@pytest.mark.parametrize("task", ["lm", "sentiment", "translate", "forecast"])
def test_every_tasks_config_refuses_a_negative_seed(task):
    from unrolled import tasks
    config = getattr(tasks, task).Config
    extra = {"data": AIRLINE, "target": "Passengers"} if task == "forecast" else {}
    with pytest.raises(ValueError, match="seed must be an integer >= 0, but was given -1"):
        config(seed=-1, **extra)
