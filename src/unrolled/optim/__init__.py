"""Optimisers, gradient clipping and learning-rate schedules, with torch.optim's update formulas.

    from unrolled.optim import Adam, clip_grad_norm, CosineWarmup

    opt = Adam(model.parameters(), lr=3e-3)
    sched = CosineWarmup(opt, warmup_steps=100, total_steps=5000)
    ...; model.backward(...); clip_grad_norm(model.parameters(), 1.0); opt.step(); sched.step(); opt.zero_grad()
"""
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm, clip_grad_value
from .group_lasso import group_lasso_
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .schedules import CosineWarmup, ExponentialLR, LRScheduler, ReduceLROnPlateau, StepLR
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adam", "AdamW", "clip_grad_norm", "clip_grad_value", "group_lasso_",
           "LRScheduler", "StepLR", "ExponentialLR", "CosineWarmup", "ReduceLROnPlateau"]
