"""An encoder-decoder Transformer for translation, with incremental decoding.

    model = Seq2SeqTransformer(src_vocab_size, tgt_vocab_size, d_model=128, nhead=4)
    logits = model(src, tgt_in, src_lengths)   # src (S, B), tgt_in (T, B) int64 -> logits (T, B, V_tgt)
    model.backward(dlogits)                    # gradients of every weight, through decoder and encoder

    model.eval()                               # decode without dropout
    state = model.start(src, src_lengths)      # encode once; keeps no backward cache
    logits, state = model.step(tokens, state)  # tokens (B,) -> (B, V_tgt), one target token at a time

Source: embedding + positions -> dropout -> pre-norm TransformerEncoder (final LayerNorm).
Target: embedding + positions -> dropout -> causal pre-norm TransformerDecoder attending over the
encoder's memory -> `generator`, a Linear head. Names follow PyTorch's translation tutorial
(`src_tok_emb`, `tgt_tok_emb`, `generator`) with `encoder` and `decoder` the stacks.

`src_lengths` (B,) marks source padding: the encoder's self-attention and every cross-attention
give padded source positions a weight of exactly 0, so neither the logits nor any gradient depend
on what the padding holds. Target padding needs no mask: the causal mask already keeps every real
target position off the padding after it; leave padded positions out of the loss.

The decoding state is `(memory (S, B, E), source mask (S, B) bool True at real tokens,
((keys, values) per decoder layer, each (t, B, E)))`, batch on axis 1 so that beam search can
reorder it. After a forward or a step, `decoder.layers[i].cross_weights` hold each layer's
attention over the source, (B, T, S); `attention_maps` collects them for a whole target.
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import check_lengths
from ..core.module import Module, no_grad
from ..layers import Dropout, Embedding, Linear
from .positions import positional_encoding
from .transformer import TransformerDecoder, TransformerEncoder
from .transformer_lm import check_ids


class Seq2SeqTransformer(Module):
    """Translation Transformer from `src_vocab_size` to `tgt_vocab_size` ids (see the module docstring);
    `bias=False` builds its Transformer layers without biases, as torch.nn.Transformer(bias=False)."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int = 128, nhead: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2, dim_feedforward: int | None = None,
                 dropout: float = 0.1, activation: str = "relu", max_len: int = 256, positions: str = "sinusoidal",
                 dtype=np.float32, seed=None, *, bias: bool = True):
        super().__init__()
        rng = init.as_generator(seed)
        dim_feedforward = 4 * d_model if dim_feedforward is None else dim_feedforward
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.d_model, self.max_len, self.dtype = d_model, max_len, np.dtype(dtype)
        self.src_tok_emb = Embedding(src_vocab_size, d_model, dtype=dtype, seed=rng)
        self.tgt_tok_emb = Embedding(tgt_vocab_size, d_model, dtype=dtype, seed=rng)
        self.src_pos = positional_encoding(positions, d_model, max_len, dtype, rng)
        self.tgt_pos = positional_encoding(positions, d_model, max_len, dtype, rng)
        self.src_drop = Dropout(dropout, seed=rng)
        self.tgt_drop = Dropout(dropout, seed=rng)
        self.encoder = TransformerEncoder(num_encoder_layers, d_model, nhead, dim_feedforward, dropout, activation,
                                          bias=bias, dtype=dtype, seed=rng)
        self.decoder = TransformerDecoder(num_decoder_layers, d_model, nhead, dim_feedforward, dropout, activation,
                                          bias=bias, dtype=dtype, seed=rng)
        self.generator = Linear(d_model, tgt_vocab_size, dtype=dtype, seed=rng)

    def extra_repr(self) -> str:
        return (f"src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size}, "
                f"d_model={self.d_model}, max_len={self.max_len}")

    # ----- pieces ---------------------------------------------------------------------------

    def _encode(self, src, src_lengths):
        """src (S, B) -> (memory (S, B, E), key padding mask (B, S) True at padding, or None)."""
        src = check_ids(src, "src", 2, self.src_vocab_size)
        S, B = src.shape
        padding = None
        if src_lengths is not None:
            padding = np.arange(S)[None, :] >= check_lengths(src_lengths, B, S)[:, None]   # (B, S)
        x = self.src_drop(self.src_pos(self.src_tok_emb(src)))                            # (S, B, E)
        return self.encoder(x, src_key_padding_mask=padding), padding

    def _embed_target(self, tgt, batch: int, offset: int):
        tgt = check_ids(tgt, "tgt", 2, self.tgt_vocab_size)
        if tgt.shape[1] != batch:
            raise ValueError(f"tgt must hold the source's {batch} sequences, but was given shape {tgt.shape}.")
        return self.tgt_drop(self.tgt_pos(self.tgt_tok_emb(tgt), offset=offset))         # (T, B, E)

    # ----- training -------------------------------------------------------------------------

    def forward(self, src, tgt, src_lengths=None):
        """src (S, B), tgt (T, B) (the decoder's input: BOS then the target shifted) -> logits (T, B, V)."""
        memory, padding = self._encode(src, src_lengths)
        y = self._embed_target(tgt, memory.shape[1], 0)
        h = self.decoder(y, memory, memory_key_padding_mask=padding, tgt_is_causal=True)   # (T, B, E)
        return self.generator(h)

    def backward(self, dlogits):
        """dlogits (T, B, V) -> (None, None): the integer ids have no gradient."""
        dy, dmemory = self.decoder.backward(self.generator.backward(dlogits))
        self.tgt_tok_emb.backward(self.tgt_pos.backward(self.tgt_drop.backward(dy)))
        dx = self.encoder.backward(dmemory)
        self.src_tok_emb.backward(self.src_pos.backward(self.src_drop.backward(dx)))
        return None, None

    # ----- decoding -------------------------------------------------------------------------

    def start(self, src, src_lengths=None):
        """Encode src (S, B) once: the decoding state before the first target token."""
        with no_grad():
            memory, padding = self._encode(src, src_lengths)
        S, B = memory.shape[:2]
        valid = np.ones((S, B), bool) if padding is None else ~padding.T
        empty = np.zeros((0, B, self.d_model), self.dtype)
        return memory, valid, tuple((empty, empty) for _ in self.decoder.layers)

    def step(self, tokens, state):
        """tokens (B,) -> (logits (B, V), state): one target position, with cached keys and values."""
        memory, valid, past = state
        t = past[0][0].shape[0]
        if t >= self.max_len:
            raise ValueError(f"the target may hold max_len={self.max_len} positions, but a step at position {t} "
                             "was asked for.")
        tokens = check_ids(tokens, "tokens", 1, self.tgt_vocab_size)
        with no_grad():
            y = self._embed_target(tokens[None], memory.shape[1], t)                          # (1, B, E)
            h, presents = self.decoder(y, memory, memory_key_padding_mask=~valid.T, tgt_is_causal=True, past=past)
            logits = self.generator(h)                                                       # (1, B, V)
        return logits[0], (memory, valid, presents)

    def attention_maps(self, src, tgt, src_lengths=None) -> list[np.ndarray]:
        """Each decoder layer's attention over the source for a whole target: (B, T, S) per layer."""
        with no_grad():
            self.forward(src, tgt, src_lengths)
        return [layer.cross_weights for layer in self.decoder.layers]
