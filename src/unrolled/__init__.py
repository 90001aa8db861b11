"""unrolled: recurrent sequence models from scratch in NumPy, exact against PyTorch."""
from .core.module import Module, Parameter, is_grad_enabled, no_grad
from .core import init

# layers (Linear, Embedding, Dropout, LayerNorm, activations, losses)
from .layers import (BCEWithLogitsLoss, CrossEntropyLoss, Dropout, Embedding, GELU, HuberLoss, L1Loss, LayerNorm, Linear, LogSoftmax, MSELoss, ReLU, Sequential, Sigmoid, Softmax, Tanh)

# recurrent layers and cells
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

# attention and transformer
from .attention import (BahdanauAttention, LuongAttention, MultiheadAttention, Seq2SeqTransformer, TransformerDecoderLayer, TransformerEncoderLayer, TransformerLM)

# optimisers, clipping and schedules live in unrolled.optim

__version__ = "0.1.0"
