"""Optimizer: the base class every update rule shares (parameter groups, state, saving and loading).

    opt = Adam(model.parameters(), lr=1e-3)
    opt = SGD([{"params": enc.parameters(), "lr": 0.1}, {"params": dec.parameters()}], lr=0.01)

`param_groups` is a list of dicts, as in torch.optim: each holds its `"params"` (a list of
`Parameter`) and every hyper-parameter of the rule (a value given in the group overrides the
constructor's). `step()` updates every `p.data` in place from `p.grad`; `zero_grad()` zeroes the
gradients. A subclass declares its hyper-parameters (`defaults`), checks them (`_validate`),
allocates a parameter's state (`_init_state`, called once, when the parameter joins) and applies
its rule to one parameter (`_update`).

The state is created up front, in the parameter's dtype, so it has the same arrays from the first
step to the last: options that add state (momentum, centered, amsgrad) are fixed at construction.

`state_dict()` is flat, `{str: np.ndarray}`, ready for an .npz beside the model's weights:

    group.<g>.params      int64 indices of the group's parameters, counted across groups
    group.<g>.<name>      each hyper-parameter: 0-d float or bool, (2,) for betas
    state.<i>.<name>      each state array of parameter i, e.g. state.3.exp_avg, state.3.step (0-d int64)
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..core.module import Parameter


def lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """start <- start + weight * (end - start), in place, split at |weight| = 0.5 like torch.lerp."""
    diff = end - start
    if abs(weight) < 0.5:
        diff *= weight
        start += diff
    else:
        diff *= weight - 1.0
        np.add(end, diff, out=start)
    return start


def check_range(owner: str, name: str, value, low: float, high: float = math.inf, *, high_open: bool = True) -> None:
    """Raise ValueError unless low <= value < high (value <= high when not high_open); NaN never passes."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner} {name} must be a number, but was given {value!r}.") from None
    inside = low <= value < high if high_open else low <= value <= high
    if not inside:
        right = ")" if high_open else "]"
        raise ValueError(f"{owner} {name} must lie in [{low:g}, {high:g}{right}, but was given {value!r}.")


def as_hyper(default, value, name: str):
    """A hyper-parameter as the kind of its default: a bool, a tuple of floats (betas) or a float."""
    if isinstance(default, bool):
        return bool(value)
    try:
        if not isinstance(default, tuple):
            return float(value)
        values = tuple(float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1))
        if len(values) == len(default):
            return values
    except (TypeError, ValueError):
        pass
    kind = f"{len(default)} numbers" if isinstance(default, tuple) else "a number"
    raise ValueError(f"{name} must be {kind}, but was given {value!r}.")


def check_state(owner: str, given: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
    """Raise ValueError unless `given` has exactly the names of `expected`, each with the same shape."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{owner}.load_state_dict expected a state saved by the same kind of object, but is "
                         f"missing {missing} and was given unexpected {unexpected}.")
    for key, value in expected.items():
        if np.shape(given[key]) != np.shape(value):
            raise ValueError(f"{owner}.load_state_dict expected '{key}' of shape {np.shape(value)}, "
                             f"but was given shape {np.shape(given[key])}.")


class Optimizer:
    """Parameter groups, per-parameter state, `step()`, `zero_grad()` and flat `state_dict()`."""

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict[Parameter, dict[str, np.ndarray]] = {}
        groups = [params] if isinstance(params, Parameter) else list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} needs parameters to optimise, but was given an empty list.")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ----- what a subclass provides ---------------------------------------------------------

    def _validate(self, group: dict) -> None:
        """Raise ValueError for a hyper-parameter out of range."""
        check_range(type(self).__name__, "lr", group["lr"], 0.0)

    def _init_state(self, p: Parameter, group: dict) -> dict[str, np.ndarray]:
        return {"step": np.zeros((), np.int64)}

    def _update(self, p: Parameter, state: dict[str, np.ndarray], group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement _update().")

    # ----- groups -----------------------------------------------------------------------------

    def add_param_group(self, group: Mapping) -> None:
        """Add a dict {"params": [...], **hyper-parameters}; missing hyper-parameters take the defaults."""
        owner = type(self).__name__
        if not isinstance(group, Mapping) or "params" not in group:
            raise ValueError(f"{owner} param groups must be dicts with a 'params' entry, but was given {group!r}.")
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(f"{owner} param groups take the keys {['params', *self.defaults]}, but was given {unknown}.")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise ValueError(f"{owner} optimises unrolled.Parameter objects, but was given a {type(p).__name__}.")
        if not params:
            raise ValueError(f"{owner} param groups need at least one parameter, but was given an empty 'params'.")
        if len({id(p) for p in params}) != len(params) or any(p in self.state for p in params):
            raise ValueError(f"{owner} needs each parameter once across all groups, but was given one twice.")
        full = {"params": params}
        for name, default in self.defaults.items():
            full[name] = as_hyper(default, group.get(name, default), f"{owner} {name}")
        self._validate(full)
        self.param_groups.append(full)
        for p in params:
            self.state[p] = self._init_state(p, full)

    # ----- the update -------------------------------------------------------------------------

    def step(self) -> None:
        """Update every parameter in place from its gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                self._update(p, self.state[p], group)

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad()

    # ----- saving and loading -----------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every hyper-parameter and state array under flat names (see the module notes)."""
        out: dict[str, np.ndarray] = {}
        index = 0
        for g, group in enumerate(self.param_groups):
            n = len(group["params"])
            out[f"group.{g}.params"] = np.arange(index, index + n, dtype=np.int64)
            for name in self.defaults:
                out[f"group.{g}.{name}"] = np.asarray(group[name])
            for i, p in enumerate(group["params"], start=index):
                for name, value in self.state[p].items():
                    out[f"state.{i}.{name}"] = value.copy()
            index += n
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore hyper-parameters and state saved by `state_dict()`; all or nothing.

        Raises ValueError when the groups, names or shapes differ from this optimiser's.
        """
        owner = type(self).__name__
        mine = self.state_dict()
        sizes = [len(g["params"]) for g in self.param_groups]
        given = []
        while f"group.{len(given)}.params" in state:
            given.append(int(np.size(state[f"group.{len(given)}.params"])))
        if given != sizes:
            raise ValueError(f"{owner}.load_state_dict expected param groups of sizes {sizes}, but was given {given}.")
        check_state(owner, state, mine)
        loaded = []
        for g, group in enumerate(self.param_groups):
            values = {name: as_hyper(default, state[f"group.{g}.{name}"], f"{owner} {name}")
                      for name, default in self.defaults.items()}
            self._validate({**group, **values})
            loaded.append(values)
        for group, values in zip(self.param_groups, loaded):  # only after every check passed
            group.update(values)
        index = 0
        for group in self.param_groups:
            for i, p in enumerate(group["params"], start=index):
                for name, value in self.state[p].items():
                    value[...] = state[f"state.{i}.{name}"]
            index += len(group["params"])

    def __repr__(self) -> str:
        hypers = ", ".join(f"{k}={self.param_groups[0][k]!r}" for k in self.defaults)
        return f"{type(self).__name__}({len(self.param_groups)} group(s), {hypers})"
