"""Feed-forward layers, activations and losses, each with a hand-written backward pass."""
from .activations import GELU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .dropout import Dropout
from .embedding import Embedding
from .layernorm import LayerNorm
from .linear import Linear
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss
from .sequential import Sequential

__all__ = [
    "Linear", "Embedding", "Dropout", "LayerNorm",
    "Tanh", "Sigmoid", "ReLU", "GELU", "Softmax", "LogSoftmax",
    "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss", "HuberLoss",
    "Sequential",
]
