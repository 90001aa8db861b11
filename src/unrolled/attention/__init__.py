"""Attention layers and the Transformer, each with a hand-written backward pass."""
from .attention import (BahdanauAttention, LuongAttention, ScaledDotProductAttention, length_mask,
                        masked_softmax)
from .multihead import MultiheadAttention, causal_mask

__all__ = [
    "BahdanauAttention", "LuongAttention", "ScaledDotProductAttention", "MultiheadAttention",
    "masked_softmax", "length_mask", "causal_mask",
]
