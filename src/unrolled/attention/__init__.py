"""Attention layers and the Transformer, each with a hand-written backward pass."""
from .attention import (BahdanauAttention, LuongAttention, ScaledDotProductAttention, length_mask,
                        masked_softmax)
from .multihead import MultiheadAttention, causal_mask
from .positions import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, positional_encoding
from .seq2seq_transformer import Seq2SeqTransformer
from .transformer import (PositionwiseFeedForward, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                          TransformerEncoderLayer)
from .transformer_lm import TransformerLM

__all__ = [
    "BahdanauAttention", "LuongAttention", "ScaledDotProductAttention", "MultiheadAttention",
    "masked_softmax", "length_mask", "causal_mask",
    "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "positional_encoding",
    "PositionwiseFeedForward", "TransformerEncoderLayer", "TransformerDecoderLayer",
    "TransformerEncoder", "TransformerDecoder",
    "TransformerLM", "Seq2SeqTransformer",
]
