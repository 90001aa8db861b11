"""Recurrent layers (RNN, LSTM, GRU) and their cells, with hand-written backprop through time."""
from .cells import GRUCell, LSTMCell, RNNCell
from .recurrent import GRU, LSTM, RNN

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]
