"""Loss modules: forward(input, target) -> loss, backward(dloss=None) -> d input.

The loss is a 0-d array for reduction 'mean' or 'sum' and an array shaped like the target for
'none'. backward's `dloss` is the upstream gradient (None means one); it returns the gradient
with respect to the input (the logits for CrossEntropyLoss and BCEWithLogitsLoss), never the
target's. Each forward computes the loss and its gradient together (core.functional) and keeps
the gradient for backward.
"""
from __future__ import annotations

import numpy as np

from ..core import functional as F
from ..core.module import Module


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = F.check_reduction(reduction)

    def forward(self, input: np.ndarray, target) -> np.ndarray:
        loss, grad = self._loss(input, target)
        self._save((grad, loss.shape))
        return loss

    def backward(self, dloss=None) -> np.ndarray:
        grad, loss_shape = self._restore()
        if dloss is None:
            return grad
        dloss = np.asarray(dloss)
        if self.reduction == "none":
            if dloss.shape != loss_shape:
                raise ValueError(f"dloss must have the loss's shape {loss_shape}, but was given shape {dloss.shape}.")
            return grad * (dloss[..., None] if grad.ndim > dloss.ndim else dloss)
        if dloss.size != 1:
            raise ValueError(f"dloss must be a single number for reduction {self.reduction!r}, but was given shape {dloss.shape}.")
        return grad * dloss.reshape(())

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax + negative log-likelihood over the last axis of logits (..., C) for integer targets (...).

    As torch.nn.CrossEntropyLoss for (N, C) logits: `weight` (C,) rescales each class's loss (the
    target's weight for the likelihood term, every class's for the smoothing term) and 'mean' then
    divides by the summed weights of the targets rather than their number; targets equal to
    `ignore_index` contribute no loss and no gradient and are left out of the mean;
    `label_smoothing` mixes the one-hot target with the uniform distribution. `weight` is kept as
    a copy (an array, not a Parameter: not in state_dict(), where torch has it as a buffer) and is
    cast to the logits' dtype. The arguments after `weight` are keyword-only: torch's next
    positions are its deprecated `size_average` and `reduce`.
    """

    def __init__(self, weight=None, *, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float, np.integer, np.floating)) \
                or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1], but was given {label_smoothing!r}.")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise ValueError(f"ignore_index must be an integer class index, but was given {ignore_index!r}.")
        self.weight = None if weight is None else F.check_class_weight(weight).copy()   # (C,)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def _loss(self, logits, target):
        return F.cross_entropy(logits, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        weight = "" if self.weight is None else f"weight of shape {self.weight.shape}, "
        return f"{weight}ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, reduction={self.reduction!r}"


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy in one stable step; `pos_weight` weighs the positive term
    (broadcast over the last axis, one weight per class, as torch)."""

    def __init__(self, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self.pos_weight = None if pos_weight is None else np.asarray(pos_weight)
        if self.pos_weight is not None and not np.issubdtype(self.pos_weight.dtype, np.number):
            raise ValueError(f"pos_weight must hold numbers, but was given dtype {self.pos_weight.dtype}.")

    def _loss(self, logits, target):
        return F.bce_with_logits(logits, target, self.pos_weight, self.reduction)


class MSELoss(_Loss):
    """Squared error (input - target)^2."""

    def _loss(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Absolute error |input - target| (mean absolute error with reduction 'mean')."""

    def _loss(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class HuberLoss(_Loss):
    """Squared error near zero, linear beyond `delta`: 0.5 d^2 if |d| < delta else delta (|d| - delta/2)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        if not delta > 0:
            raise ValueError(f"delta must be positive, but was given {delta!r}.")
        self.delta = float(delta)

    def _loss(self, input, target):
        return F.huber_loss(input, target, self.delta, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, delta={self.delta}"
