"""`lm sample`'s streamed text: what it writes piece by piece is the text of every id decoded at once."""
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from unrolled.data.text import Vocab
from unrolled.tasks.lm import TextStream, detokenize

WORDS = ["\n", "the", "king", ",", ".", "'", '"', "(", ")", "--", "?", "ROMEO", ":", "don't"]
CHARS = list("ab \n,'\"")


@settings(max_examples=200, deadline=None)
@given(level=st.sampled_from(["word", "char"]), data=st.data())
def test_streamed_text_equals_decoding_every_id_at_once(level, data):
    tokens = WORDS if level == "word" else CHARS
    vocab = Vocab(tokens)
    ids = data.draw(st.lists(st.integers(1, len(vocab) - 1), max_size=40))  # newlines often: blank lines too
    prompt = data.draw(st.lists(st.integers(1, len(vocab) - 1), min_size=1, max_size=5))
    out = io.StringIO()
    stream = TextStream(level, vocab, prompt, out)
    for i in ids:
        stream.add(i)
    whole = detokenize(level, vocab, prompt + ids)
    assert out.getvalue() == whole and stream.text == whole


def test_each_token_decodes_only_its_paragraph():
    vocab = Vocab(WORDS)
    seen = []

    class Recording(TextStream):
        def add(self, token):
            super().add(token)
            seen.append(len(self.ids))
    stream = Recording("word", vocab, [vocab.stoi["the"]], io.StringIO())
    para = [vocab.stoi[w] for w in ("the", "king", ".", "\n", "\n")]
    for i in para * 50:
        stream.add(i)
    assert max(seen) <= 2 * len(para)                  # not the 250 ids of the whole text
    assert stream.text == detokenize("word", vocab, [vocab.stoi["the"]] + para * 50)


@settings(max_examples=200, deadline=None)
@given(level=st.sampled_from(["word", "char"]), data=st.data())
def test_a_hidden_start_token_is_not_written(level, data):
    """Without a prompt, sampling starts from a token the user did not write: the stream writes
    only what follows it (and no space before the first word)."""
    tokens = WORDS if level == "word" else CHARS
    vocab = Vocab(tokens)
    start = data.draw(st.integers(1, len(vocab) - 1))
    ids = data.draw(st.lists(st.integers(1, len(vocab) - 1), max_size=40))
    out = io.StringIO()
    stream = TextStream(level, vocab, [start], out, show=False)
    for i in ids:
        stream.add(i)
    whole, hidden = detokenize(level, vocab, [start] + ids), detokenize(level, vocab, [start])
    expected = whole[len(hidden):]
    expected = expected[1:] if expected.startswith(" ") and level == "word" else expected
    assert out.getvalue() == expected and stream.text == expected
