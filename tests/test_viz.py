"""Text laid out in rows of coloured cells (viz._rows): every row fits, every character keeps its token's value."""
import numpy as np
from hypothesis import given, strategies as st

from unrolled.viz import _rows

words = st.lists(st.text(alphabet="ab\n", min_size=1, max_size=30).filter(lambda t: "\n" not in t or t == "\n"),
                 max_size=40)


@given(words, st.integers(1, 25), st.sampled_from(["", " "]))
def test_rows_fit_the_width_and_keep_every_character_and_value(tokens, width, sep):
    values = np.arange(len(tokens), dtype=float)
    rows = _rows(tokens, values, width, sep)
    assert all(0 < len(text) <= width and len(text) == len(row_values) for text, row_values in rows)
    # each token's characters, in order, each cell carrying its token's value; separators carry NaN
    expected = [(c, v) for t, v in zip(tokens, values) for c in ("\u23ce" if t == "\n" else t)]
    laid = [(c, v) for text, row_values in rows for c, v in zip(text, row_values) if not np.isnan(v)]
    assert laid == expected


def test_a_row_filled_exactly_gets_no_separator_and_a_long_token_wraps():
    rows = _rows(["a" * 4, "b" * 5, "c" * 12], np.array([0.0, 1.0, 2.0]), width=10, sep=" ")
    assert [text for text, _ in rows] == ["aaaa bbbbb", "cccccccccc", "cc "]
