"""Data files are split into lines at line ends only: U+0085, U+2028, form feeds and the like, which
str.splitlines also splits at, stay inside their line (a sentence pair of simple_dialogs holds U+0085)."""
import io

import numpy as np

from unrolled.cli_sentiment import _stdin_lines
from unrolled.data.pairs import read_pairs
from unrolled.data.sentiment_sources import load_vader
from unrolled.data.series_io import read_csv_columns
from unrolled.data.text import text_lines

INSIDE = "\x85\u2028\x0c\x1e"          # what str.splitlines would split at, besides line ends


def test_text_lines_splits_at_line_ends_only():
    assert text_lines(f"a{INSIDE}b\tc\r\nd\re\n\nf\n") == [f"a{INSIDE}b\tc", "d", "e", "", "f"]
    assert text_lines("\ufeffx") == ["x"] and text_lines("") == [] and text_lines("\n") == [""]


def test_every_loader_keeps_those_characters_inside_the_line(tmp_path, monkeypatch):
    pairs = tmp_path / "dialogs.txt"
    pairs.write_text(f'"she loves you"\t"{INSIDE}and you know"\nwhat a song.\tit is.\n', encoding="utf-8")
    assert read_pairs(pairs) == [('"she loves you"', f'"{INSIDE}and you know"'), ("what a song.", "it is.")]

    table = tmp_path / "series.csv"
    table.write_text(f't,y,note\n1,2,a{INSIDE}b\n2,3,"two\r\nlines"\n', encoding="utf-8", newline="")
    columns = read_csv_columns(table)                     # a quoted cell keeps its line break
    assert list(columns["note"]) == [f"a{INSIDE}b", "two\nlines"] and list(columns["y"]) == ["2", "3"]

    vader = tmp_path / "tweets_GroundTruth.txt"
    vader.write_text(f"1\t3.5\tgreat{INSIDE}day\n2\t-3.0\tawful\n", encoding="utf-8")
    data = load_vader(vader)
    assert data.train.texts == [f"great{INSIDE}day", "awful"] and np.array_equal(data.train.labels, [1, 0])

    monkeypatch.setattr("sys.stdin", io.StringIO(f"good{INSIDE}film\nbad film\n"))   # text, no buffer
    assert _stdin_lines() == [f"good{INSIDE}film", "bad film"]
