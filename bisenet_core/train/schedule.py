"""Learning-rate schedule: linear warm-up, then the paper's poly decay (power 0.9).

Step t counts optimiser steps from 0. During the first `warmup_iters` steps the factor
rises linearly from `warmup_factor` to 1 (a randomly initialised network diverges less
with a gentle start); afterwards factor = (1 - (t - warmup) / (total - warmup)) ** power,
which is the paper's (1 - iter / max_iter) ** power when warm-up is 0. fit_warmup cuts a
warm-up as long as the run or longer (a preset's 100 steps in a 20-step try) to half the run.
"""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_poly_factor(step: int, total: int, warmup_iters: int = 0, warmup_factor: float = 0.1,
                       power: float = 0.9) -> float:
    """Multiplier of the base learning rate at optimiser step `step`."""
    if step < warmup_iters:
        return warmup_factor + (1.0 - warmup_factor) * step / warmup_iters
    progress = (step - warmup_iters) / max(1, total - warmup_iters)
    return max(0.0, 1.0 - progress) ** power


def fit_warmup(warmup_iters: int, total: int) -> int:
    """The warm-up steps a run of `total` steps gets.

    As configured when shorter than the run, else half the run (so the lr still rises to the
    base value and then decays).
    """
    return warmup_iters if warmup_iters < total else total // 2


def warmup_poly_scheduler(optimizer: torch.optim.Optimizer, total: int, warmup_iters: int = 0,
                          warmup_factor: float = 0.1, power: float = 0.9) -> LambdaLR:
    """A LambdaLR applying warmup_poly_factor to every group (group lr ratios are kept)."""
    return LambdaLR(optimizer, lambda step: warmup_poly_factor(
        step, total, warmup_iters, warmup_factor, power))
