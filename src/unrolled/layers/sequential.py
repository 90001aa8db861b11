"""Sequential: modules applied one after another, back-propagated in reverse."""
from __future__ import annotations

from ..core.module import Module


class Sequential(Module):
    """torch.nn.Sequential: `Sequential(Linear(4, 8), Tanh(), Linear(8, 2))`.

    Each module is an attribute named by its position, so parameters are named "0.weight",
    "2.bias", ... as in torch and state dicts move between the two.
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise ValueError(f"Sequential takes Modules, but was given a {type(m).__name__} at position {i}.")
            setattr(self, str(i), m)
        self._layers = list(modules)

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, i: int) -> Module:
        return self._layers[i]

    def __iter__(self):
        return iter(self._layers)

    def forward(self, x):
        for m in self._layers:
            x = m(x)
        return x

    def backward(self, dy):
        for m in reversed(self._layers):
            dy = m.backward(dy)
        return dy
