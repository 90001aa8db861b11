"""Reading a CSV file of a time series into named columns of text, and telling numbers from labels.

    columns = read_csv_columns("pollution.csv")        # {"No": array(["1", "2", ...]), "pm2.5": ...}
    values, missing = parse_numeric(columns["TEMP"])  # float64 with NaN where a value is missing

The standard `csv` module does the splitting (quoted fields, CRLF line ends, a last line without a
newline); this file adds the checks that give one clear sentence for a missing, empty, binary or
ragged file, and the parsing of missing-value markers ("NA", "?", "" ...), numbers and timestamps.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

import numpy as np

from ..core.checks import counted

# how a missing value is written in the files people have (compared case-insensitively)
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
_SLASH_DATE = re.compile(r"^(\d{4})/(\d{1,2})(?:/(\d{1,2}))?(.*)$")
_DATE_START = re.compile(r"^\d{4}[-/]\d{1,2}")
_NOT_A_YEAR = re.compile(r"^\s*[-+]?(\d{1,3}|\d{5,})\s*$")  # a whole number, but not a 4-digit year


def read_csv_columns(path) -> dict[str, np.ndarray]:
    """Every column of a CSV file with a header row, as arrays of stripped strings (str_), by name."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"expected a CSV file at {path}, but there is no such file.")
    if path.is_dir():
        raise ValueError(f"expected a CSV file at {path}, but it is a folder.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"expected {path} to be a UTF-8 text CSV file, "
                         "but it holds bytes that are not UTF-8.") from None
    rows = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"expected {path} to hold a header row and data rows, but it is empty.")
    header = [name.strip() for name in rows[0]]
    if len(rows) < 2:
        raise ValueError(f"expected {path} to hold data rows under its header, but it has only the header.")
    if len(set(header)) != len(header) or "" in header:
        raise ValueError(f"expected distinct, non-empty column names in the header of {path}, but it is {header}.")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"expected {counted(len(header), 'field')} on every row of {path} like its header, "
                             f"but data row {number - 1} has {len(row)}.")
    table = np.array(rows[1:], dtype=str)                                # (N, C)
    return {name: np.char.strip(table[:, j]) for j, name in enumerate(header)}


def missing_mask(text: np.ndarray) -> np.ndarray:
    """True where a text cell is a missing-value marker."""
    return np.isin(np.char.lower(text), list(MISSING))


def parse_numeric(text: np.ndarray) -> np.ndarray | None:
    """float64 values with NaN for missing markers, or None when some present cell is not a number."""
    missing = missing_mask(text)
    filled = np.where(missing, "nan", text)
    try:
        values = filled.astype(np.float64)
    except ValueError:
        return None
    if not np.isfinite(values[~missing]).all():                          # "inf" is not a measurement
        return None
    return values


def first_non_number(text: np.ndarray) -> str:
    """The first present cell that does not parse as a number (for error messages)."""
    for cell in text:
        if cell.lower() not in MISSING:
            try:
                float(cell)
            except ValueError:
                return str(cell)
    return ""


def first_non_finite(text: np.ndarray) -> tuple[int, str] | None:
    """(data row, cell) of the first number that is not finite ("inf", "-inf", "1e400"), or None."""
    for row, cell in enumerate(text, start=1):
        if cell.lower() not in MISSING:
            try:
                if not np.isfinite(float(cell)):
                    return row, str(cell)
            except ValueError:
                pass
    return None


def parse_times(text: np.ndarray, name: str) -> np.ndarray:
    """ISO dates and times ("1949-01", "1981-01-01", "2010-01-01 13:00"), "YYYY/MM/DD" or 4-digit years
    as datetime64; a time with a zone ("...Z", "...+08:00") is read in UTC. Other whole numbers are
    refused: numpy would read 1, 2, 3 (a row counter) as the years 1, 2, 3."""
    cells = [_SLASH_DATE.sub(_iso_from_slashes, str(cell)) for cell in text]
    for row, cell in enumerate(cells, start=1):                         # numpy reads any integer as a year
        if _NOT_A_YEAR.match(cell):
            raise ValueError(f"time column '{name}' must hold dates such as 1981-01-31, 2010-01-01 13:00 or a "
                             f"4-digit year, but data row {row} holds {str(text[row - 1])!r}.")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "no explicit representation of timezones", UserWarning)
            times = np.array(cells, dtype="datetime64")
    except ValueError:
        for row, cell in enumerate(cells, start=1):
            try:
                np.datetime64(cell)
            except ValueError:
                raise ValueError(f"time column '{name}' must hold ISO dates such as 1981-01-31 or 2010-01-01 13:00, "
                                 f"but data row {row} holds {str(text[row - 1])!r}.") from None
        raise
    if np.isnat(times).any():                                            # "" and "NaT" parse as no time
        row = int(np.flatnonzero(np.isnat(times))[0]) + 1
        raise ValueError(f"time column '{name}' must hold a time in every row, but data row {row} holds "
                         f"{str(text[row - 1])!r}.")
    return times


def looks_like_times(text: np.ndarray) -> bool:
    """True when most cells start like a date (YYYY-MM or YYYY/MM): a time column, even if a cell is bad."""
    return np.mean([bool(_DATE_START.match(str(cell))) for cell in text]) > 0.5


def _iso_from_slashes(m: re.Match) -> str:
    year, month, day, rest = m.groups()
    return f"{year}-{int(month):02d}" + (f"-{int(day):02d}" if day else "") + rest


def compose_times(parts: dict[str, np.ndarray]) -> np.ndarray:
    """datetime64[m] from integer columns "year" and optionally "month", "day", "hour", "minute"."""
    year = parts["year"].astype(np.int64)
    t = (year - 1970).astype("datetime64[Y]").astype("datetime64[M]")
    t = t + (parts["month"].astype(np.int64) - 1).astype("timedelta64[M]") if "month" in parts else t
    t = t.astype("datetime64[D]")
    t = t + (parts["day"].astype(np.int64) - 1).astype("timedelta64[D]") if "day" in parts else t
    t = t.astype("datetime64[m]")
    t = t + (parts["hour"].astype(np.int64) * 60).astype("timedelta64[m]") if "hour" in parts else t
    t = t + parts["minute"].astype(np.int64).astype("timedelta64[m]") if "minute" in parts else t
    return t
