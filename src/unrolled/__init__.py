"""unrolled: recurrent sequence models from scratch in NumPy, exact against PyTorch.

The names below and the subpackages (`unrolled.optim`, `unrolled.rnn`, ...) are loaded on first use
(`unrolled.GRU`, `from unrolled import LSTM`), so that `import unrolled` is instant and the
`unrolled` command can answer Ctrl-C while it loads. Optimisers, clipping and schedules live in
`unrolled.optim`.
"""
import importlib as _importlib

__version__ = "0.1.0"

_FROM = {
    ".core.module": ("Module", "Parameter", "is_grad_enabled", "no_grad"),
    # layers: Linear, Embedding, Dropout, LayerNorm, activations, losses
    ".layers": ("BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Embedding", "GELU", "HuberLoss", "L1Loss",
                "LayerNorm", "Linear", "LogSoftmax", "MSELoss", "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh"),
    # recurrent layers and cells
    ".rnn": ("GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell"),
    # attention and the Transformer
    ".attention": ("BahdanauAttention", "LuongAttention", "MultiheadAttention", "Seq2SeqTransformer",
                   "TransformerDecoderLayer", "TransformerEncoderLayer", "TransformerLM"),
}
_MODULE_OF = {name: module for module, names in _FROM.items() for name in names}
__all__ = ["init", *_MODULE_OF]  # unrolled.init is the module unrolled.core.init


def __getattr__(name: str):
    if name == "init":
        value = _importlib.import_module(".core.init", __name__)
    elif name in _MODULE_OF:
        value = getattr(_importlib.import_module(_MODULE_OF[name], __name__), name)
    else:
        try:                                                  # a subpackage or module: unrolled.optim
            value = _importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'unrolled' has no attribute {name!r}") from None
    globals()[name] = value  # loaded once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
