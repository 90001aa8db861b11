"""Data for the pipelines: text for language models (`unrolled.data.text`)."""
from .text import CharTokenizer, StreamBatcher, Vocab, WordTokenizer, bundled_path, get_tokenizer, read_text, split

__all__ = [
    "read_text", "bundled_path", "CharTokenizer", "WordTokenizer", "get_tokenizer", "Vocab", "split", "StreamBatcher",
]
