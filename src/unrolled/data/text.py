"""Text data for language models: loading, tokenising, the vocabulary, splitting and batching.

    text = read_text(bundled_path())                   # tiny Shakespeare, shipped in the package
    tokenizer = CharTokenizer()                        # or WordTokenizer(lower=True)
    vocab = Vocab(tokenizer.tokenize(text))
    train, val = split(vocab.encode(tokenizer.tokenize(text)), val_fraction=0.1)
    batches = StreamBatcher(train, batch_size=32, seq_len=128)

This module holds the loading; the tokenisers, `Vocab` and the batching live in their own files
and are importable from here too.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .batching import StreamBatcher, split
from .tokenizers import CharTokenizer, WordTokenizer, get_tokenizer
from .vocab import Vocab

__all__ = [
    "read_text", "text_lines", "bundled_path", "CharTokenizer", "WordTokenizer", "get_tokenizer", "Vocab", "split", "StreamBatcher",
]


def read_text(path) -> str:
    """The file's text, decoded as UTF-8 (a leading byte-order mark dropped), CRLF and CR made LF.

    A missing file, a folder, an empty file, a binary file (one with NUL bytes) or text in another
    encoding is a ValueError with one sentence naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist; give the path of a plain-text file.")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the path of a plain-text file.")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path} cannot be read ({e.strerror}).") from None
    if not data.strip():
        raise ValueError(f"{path} is empty (or holds only whitespace); a language model needs text to learn from.")
    nul = data.find(b"\0")
    if nul >= 0:
        raise ValueError(f"{path} is a binary file (a NUL byte at offset {nul}), not plain text.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); convert it to UTF-8 first."
        ) from None
    return plain_newlines(text)


def plain_newlines(text: str) -> str:
    """Text as training reads it: Windows and old Mac line ends become "\\n", a leading BOM goes."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def text_lines(text: str) -> list[str]:
    """The lines of a text, split at "\\n", "\\r\\n" and "\\r" only (a leading BOM dropped). Not
    str.splitlines, which also splits at U+0085, U+2028, form feeds and other separators that real
    data holds inside its lines."""
    parts = plain_newlines(text).split("\n")
    return parts[:-1] if parts[-1] == "" else parts


def bundled_path(name: str = "tinyshakespeare") -> Path:
    """The path of a text file shipped in the package (`data/bundled/<name>.txt`)."""
    folder = resources.files("unrolled.data") / "bundled"
    path = folder / f"{name}.txt"
    if not path.is_file():
        names = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))
        raise ValueError(f"No bundled text is called {name!r}; the package ships {names}.")
    return Path(str(path))
