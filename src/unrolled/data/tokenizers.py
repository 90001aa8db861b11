"""Tokenisers: text to a list of string tokens, and tokens back to text.

    CharTokenizer().tokenize("To be") == ["T", "o", " ", "b", "e"]      # exact round trip
    WordTokenizer().tokenize("Speak, speak.\n") == ["Speak", ",", "speak", ".", "\n"]

A word is a run of letters and digits, with inner apostrophes and hyphens (`can't`, `no-mans-land`)
and an apostrophe at either edge (`'tis`, `o'`, `Oblonskys'`) kept inside it. Every other
non-space character is a token of its own (`...` is three), except a run of dashes (`--`), which
stays whole. Each newline is a token, so generated scripts keep their line and speaker structure;
other whitespace only separates tokens. `detokenize` puts single spaces back between tokens, with
none before closing punctuation, none after opening brackets and quotes, none around `--`, and
none around a newline; a straight `"` or `_` opens and closes in turns within a paragraph, and a
lone `'` closes a quote after punctuation (`friends,' quoth he`) and stands apart elsewhere.
"""
from __future__ import annotations

import re

_WORD = r"'?[^\W_]+(?:[-'\u2019][^\W_]+)*'?"
_TOKEN = re.compile(rf"\n|{_WORD}|-{{2,}}|[^\w\s]|_")

_CLOSING = set(".,;:!?)]}%\u2026\u201d\u2019")  # no space before these (… ” ’)
_OPENING = set("([{\u201c\u2018")  # no space after these (“ ‘)
_TURN_TAKING = {'"', "_"}  # the same mark opens and closes: decided by counting


class CharTokenizer:
    """Every character is a token; `detokenize(tokenize(text)) == text` exactly."""

    level = "char"

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def detokenize(self, tokens) -> str:
        return "".join(tokens)

    def __repr__(self) -> str:
        return "CharTokenizer()"


class WordTokenizer:
    """Words, punctuation marks and newlines as tokens (see the module docstring for the rules).

    With `lower=True` the text is lower-cased first, which shrinks the vocabulary. `detokenize`
    re-joins any token list (a model's output too) into readable text; on ordinary prose it gives
    back the original up to the width of whitespace.
    """

    level = "word"

    def __init__(self, lower: bool = False):
        self.lower = bool(lower)

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower() if self.lower else text)

    def detokenize(self, tokens) -> str:
        out: list[str] = []
        glue = True  # no space before the next token: start of text, after a newline or an opener
        open_marks: set[str] = set()  # turn-taking marks opened in the current paragraph
        prev = "\n"
        for tok in tokens:
            if tok == "\n":
                if prev == "\n":  # a blank line ends the paragraph: every mark is closed
                    open_marks.clear()
                out.append("\n")
                glue, prev = True, tok
                continue
            if tok in _TURN_TAKING:
                closing = tok in open_marks
                open_marks.symmetric_difference_update({tok})
            elif tok == "'":  # a lone apostrophe after a word had a space before it, or it would be in the word
                closing = all(c in _CLOSING for c in prev)
            else:
                closing = all(c in _CLOSING for c in tok)
            dash = len(tok) > 1 and set(tok) == {"-"}
            merges = prev.endswith("-") and tok.startswith("-")  # "--" then "-" must not read as "---"
            if merges or not (glue or closing or dash):
                out.append(" ")
            out.append(tok)
            glue = dash or tok in _OPENING or (tok in _TURN_TAKING and not closing)
            prev = tok
        return "".join(out)

    def __repr__(self) -> str:
        return f"WordTokenizer(lower={self.lower})"


def get_tokenizer(level: str, lower: bool = False) -> CharTokenizer | WordTokenizer:
    """The tokeniser for `level` "char" or "word" (`lower` applies to words only)."""
    if level == "char":
        return CharTokenizer()
    if level == "word":
        return WordTokenizer(lower=lower)
    raise ValueError(f"level must be 'char' or 'word', but was given {level!r}.")
