"""Learning-rate schedules as pure functions of the position in training.

Each schedule is ``lr_at(step, epoch) -> float`` where ``step`` counts optimiser steps since the
start of the current phase (PRIOR re-creates its optimiser and schedule at each stage; the other
methods have one phase). Being functions of the position rather than stateful scheduler objects,
they resume exactly from a checkpoint's step counter, at any world size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

LRSchedule = Callable[[int, int], float]


def step_decay(base_lr: float, milestones: tuple[int, ...], gamma: float) -> LRSchedule:
    """MoCo's ``adjust_learning_rate`` without ``--cos``: ``lr * gamma ** #(milestones <= epoch)``."""

    def lr_at(step: int, epoch: int) -> float:
        return base_lr * gamma ** sum(1 for m in milestones if epoch >= m)

    return lr_at


def cosine_annealing(base_lr: float, t_max: int, eta_min: float = 0.0) -> LRSchedule:
    """``torch.optim.lr_scheduler.CosineAnnealingLR`` in closed form, stepped per optimiser step.

    ``eta_min + (base - eta_min) (1 + cos(pi step / T_max)) / 2``. It is periodic with period
    ``2 T_max``: LoVT sets ``T_max`` to one epoch's optimiser steps, so the rate falls to
    ``eta_min`` during epoch 0, climbs back during epoch 1, and so on (METHODS 2.6).
    """
    if t_max < 1:
        raise ValueError(f"T_max must be >= 1, got {t_max}")

    def lr_at(step: int, epoch: int) -> float:
        return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * step / t_max)) / 2

    return lr_at


def linear_warmup_cosine(
    base_lr: float, warmup_steps: int, total_steps: int, warmup_start_lr: float = 0.0, eta_min: float = 0.0
) -> LRSchedule:
    """pl_bolts ``LinearWarmupCosineAnnealingLR`` (closed form), stepped per optimiser step (PRIOR).

    Steps ``0 .. W-1`` rise linearly from ``warmup_start_lr`` to ``base_lr`` (reached at ``W - 1``);
    then ``eta_min + (base - eta_min) (1 + cos(pi (step - W) / (T - W))) / 2``. With ``W = 1`` the
    original divides by zero; here the warm-up is then just the start rate at step 0. A phase no
    longer than its warm-up (``T = W``) only warms up, as in the original.
    """
    if total_steps < warmup_steps:
        raise ValueError(f"total steps ({total_steps}) must not be fewer than the warm-up steps ({warmup_steps})")

    def lr_at(step: int, epoch: int) -> float:
        if step < warmup_steps:
            return warmup_start_lr + step * (base_lr - warmup_start_lr) / max(1, warmup_steps - 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return eta_min + 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * progress))

    return lr_at
