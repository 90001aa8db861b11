"""Labelled texts from the formats people have: IMDB (tarball or folder), CSV/TSV, VADER ratings.

    data = load_labelled("aclImdb_v1.tar.gz")          # or an extracted aclImdb/ folder
    data = load_labelled("reviews.csv", text_column="review", label_column="sentiment")
    data = load_labelled("vader_snippets/")            # every *_GroundTruth.txt in the folder
    data.classes, data.train.texts, data.train.labels, data.test   # test is None without a split

IMDB (Maas et al. 2011): `aclImdb/{train,test}/{pos,neg}/<id>_<stars>.txt`, one UTF-8 review per
file, the label in the folder name. The official `aclImdb_v1.tar.gz` (which also holds unlabelled
reviews, skipped here), a tarball of the labelled part only, and an extracted folder all work; a
tarball is read member by member, never unpacked to disk.

CSV/TSV: a header row naming the columns; the text and label columns are chosen by name. Classes
are the distinct labels in sorted order.

VADER (Hutto & Gilbert 2014): `id <TAB> mean_rating <TAB> text`, no header, ratings on -4..+4.
A mean above +neutral is positive, below -neutral negative; the near-neutral rest is dropped.
"""
from __future__ import annotations

import csv
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .text import text_lines

IMDB_CLASSES = ["neg", "pos"]
VADER_CLASSES = ["negative", "positive"]
_IMDB_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_TARBALL = (".tar.gz", ".tgz", ".tar")
_TABLE = {".csv": ",", ".tsv": "\t"}
_VADER = "_GroundTruth.txt"


@dataclass
class Examples:
    texts: list[str]
    labels: np.ndarray        # int64 (N,), indices into LabelledData.classes

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class LabelledData:
    classes: list[str]
    train: Examples
    test: Examples | None     # None when the source has no split of its own
    source: str               # what was read, for reports


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"expected UTF-8 text in {where}, but byte {e.start} is not valid UTF-8.") from None


# ----- IMDB ------------------------------------------------------------------------------------

def _imdb_examples(found: dict) -> dict[str, Examples]:
    """{(split, label, id): text} -> {split: Examples} in a fixed order (label, then review id)."""
    splits = {}
    for split in ("train", "test"):
        keys = sorted(k for k in found if k[0] == split)
        splits[split] = Examples([found[k] for k in keys],
                                 np.array([IMDB_CLASSES.index(k[1]) for k in keys], dtype=np.int64))
    return splits


def load_imdb(path) -> LabelledData:
    """The labelled IMDB reviews from a tarball (read in place) or an extracted folder."""
    path = Path(path)
    found = {}
    if path.is_dir():
        for file in path.rglob("*.txt"):
            m = _IMDB_MEMBER.search(file.as_posix())
            if m:
                found[(m[1], m[2], int(m[3]))] = _decode(file.read_bytes(), str(file))
    else:
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    m = _IMDB_MEMBER.search(member.name)
                    if m and member.isfile():
                        raw = archive.extractfile(member).read()
                        found[(m[1], m[2], int(m[3]))] = _decode(raw, f"{path}:{member.name}")
        except OSError as e:
            raise ValueError(f"expected a readable tar archive at {path}, but reading it failed ({e.strerror or e}).") from None
        except (tarfile.TarError, EOFError):
            raise ValueError(f"expected a readable tar archive at {path}, but it is damaged or not a tar "
                             "archive.") from None
    splits = _imdb_examples(found)
    if not len(splits["train"]):
        raise ValueError(f"expected IMDB reviews as aclImdb/train/{{pos,neg}}/<id>_<stars>.txt in {path}, "
                         "but found none.")
    return LabelledData(list(IMDB_CLASSES), splits["train"], splits["test"] if len(splits["test"]) else None,
                        f"IMDB reviews from {path}")


# ----- CSV / TSV -------------------------------------------------------------------------------

def load_table(path, text_column: str = "text", label_column: str = "label",
               delimiter: str | None = None) -> LabelledData:
    """Texts and labels from the named columns of a CSV (or, by suffix, TSV) file with a header row."""
    path = Path(path)
    if text_column == label_column:
        raise ValueError(f"--text-column and --label-column both name {text_column!r}; the texts and their labels "
                         "must be different columns.")
    delimiter = delimiter or _TABLE.get(path.suffix.lower(), ",")
    text = _decode(path.read_bytes(), str(path)).lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = reader.fieldnames or []
    for wanted, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if wanted not in columns:
            raise ValueError(f"expected a column named {wanted!r} in {path}, but its header has {columns}; "
                             f"choose one with {flag}.")
    texts, raw_labels = [], []
    for row in reader:
        if row.get(text_column) is None or row.get(label_column) is None:
            raise ValueError(f"expected every row of {path} to have all {len(columns)} columns, "
                             f"but line {reader.line_num} is short.")
        if not row[label_column].strip():
            raise ValueError(f"line {reader.line_num} of {path} has no label in column {label_column!r}.")
        texts.append(row[text_column])
        raw_labels.append(row[label_column].strip())
    if not texts:
        raise ValueError(f"expected at least one row of data in {path}, but it has only a header.")
    if not any(t.strip() for t in texts):
        raise ValueError(f"{path} has no text in column {text_column!r}; choose the text column with --text-column.")
    classes = sorted(set(raw_labels))
    index = {c: i for i, c in enumerate(classes)}
    return LabelledData(classes, Examples(texts, np.array([index[c] for c in raw_labels], dtype=np.int64)), None,
                        f"{path.name}, columns {text_column!r} and {label_column!r}")


# ----- VADER ground truth ----------------------------------------------------------------------

def _vader_file(path: Path, neutral: float, texts: list, labels: list) -> None:
    lines = text_lines(_decode(path.read_bytes(), str(path)))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            rating = float(parts[1])
        except (IndexError, ValueError):
            raise ValueError(f"expected 'id <TAB> mean rating <TAB> text' on line {number} of {path}, "
                             f"but it reads {line[:60]!r}.") from None
        if len(parts) == 3 and abs(rating) > neutral:
            texts.append(parts[2])
            labels.append(int(rating > 0))


def load_vader(path, neutral: float = 0.5) -> LabelledData:
    """Sentences with a mean rating beyond +-`neutral`, from one ground-truth file or a folder of them."""
    path = Path(path)
    files = sorted(path.glob(f"*{_VADER}")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"expected VADER files named *{_VADER} in {path}, but found none.")
    texts, labels = [], []
    for file in files:
        _vader_file(file, neutral, texts, labels)
    if not texts:
        raise ValueError(f"expected rated sentences beyond +-{neutral} in {path}, but found none.")
    return LabelledData(list(VADER_CLASSES), Examples(texts, np.array(labels, dtype=np.int64)), None,
                        f"VADER ground truth from {path} (|mean rating| > {neutral})")


# ----- by form -----------------------------------------------------------------------------------

def is_table(path) -> bool:
    """Whether `path` is read as a CSV/TSV table (whose columns are chosen by name)."""
    path = Path(path)
    return not path.is_dir() and path.suffix.lower() in _TABLE


def load_labelled(path, text_column: str = "text", label_column: str = "label") -> LabelledData:
    """Whatever `path` holds: IMDB tarball or folder, CSV/TSV, or VADER file or folder."""
    path = Path(path)
    name = path.name.lower()
    if not path.exists():
        raise ValueError(f"expected a data file or folder at {path}, but there is none.")
    if path.is_dir():
        if not any(path.glob(f"*{_VADER}")):
            return load_imdb(path)
        if any(_IMDB_MEMBER.search(file.as_posix()) for file in path.rglob("*.txt")):
            raise ValueError(f"{path} holds both VADER *{_VADER} files and IMDB reviews; give the one to learn "
                             "from: a VADER file or the aclImdb folder.")
        return load_vader(path)
    if name.endswith(_VADER.lower()):
        return load_vader(path)
    if name.endswith(_TARBALL):
        return load_imdb(path)
    if path.suffix.lower() in _TABLE:
        return load_table(path, text_column, label_column)
    raise ValueError(f"expected an IMDB tarball (.tar.gz), an aclImdb folder, a .csv/.tsv file or a VADER "
                     f"*{_VADER} file, but was given {path.name}, whose format is unknown.")
