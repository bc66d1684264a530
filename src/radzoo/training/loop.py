"""A small, device-agnostic training loop shared by the methods.

A *method* is an ``nn.Module`` with ``training_step(batch) -> (loss, metrics)`` and, optionally,
``after_optimizer_step()`` (e.g. MoCo's momentum update). The loop owns what every method
repeats: seeding, per-epoch shuffling, moving batches to the device, gradient accumulation,
the learning-rate schedule, non-finite-loss detection and an epoch-end hook (checkpoints).
The device always comes from the caller; nothing here assumes CUDA.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from radzoo.errors import InputError, RadzooError

log = logging.getLogger(__name__)


class TrainingError(RadzooError):
    """Training cannot go on (e.g. the loss became NaN/inf); the message says when and what to try."""


class Method(Protocol):
    def training_step(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors (also inside tuples/lists/dicts) to ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def step_lr(base_lr: float, milestones: tuple[int, ...], gamma: float) -> Callable[[int], float]:
    """MoCo's ``adjust_learning_rate`` without ``--cos``: ``lr * gamma ** #(milestones <= epoch)``."""

    def lr_at(epoch: int) -> float:
        return base_lr * gamma ** sum(1 for m in milestones if epoch >= m)

    return lr_at


@dataclass
class EpochStats:
    epoch: int
    steps: int  # optimiser steps taken in this epoch
    mean_loss: float
    last_loss: float
    lr: float
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class FitResult:
    history: list[EpochStats]
    global_step: int
    stopped_by_max_steps: bool

    @property
    def final_loss(self) -> float:
        return self.history[-1].last_loss if self.history else math.nan


def fit(
    method: nn.Module,
    dataset: Dataset,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
    start_epoch: int = 0,
    global_step: int = 0,
    lr_at: Callable[[int], float] | None = None,
    accumulate: int = 1,
    num_workers: int = 0,
    max_steps: int = 0,
    log_every: int = 10,
    on_epoch_end: Callable[[EpochStats, int], None] | None = None,
) -> FitResult:
    """Train ``method`` from ``start_epoch`` to ``epochs``; return per-epoch statistics.

    Shuffling is seeded by ``(seed, epoch)`` and the last incomplete batch is dropped (MoCo
    uses ``drop_last=True``; BatchNorm needs more than one sample). With ``accumulate > 1``
    the loss is divided by ``accumulate`` and the optimiser steps every ``accumulate``
    micro-batches (and at the end of an epoch). ``max_steps`` > 0 stops after that many
    optimiser steps in total.
    """
    if len(dataset) < batch_size:  # type: ignore[arg-type]
        raise InputError(
            f"only {len(dataset)} training images for batch_size {batch_size}: "  # type: ignore[arg-type]
            "add images or lower batch_size"
        )
    if accumulate < 1:
        raise InputError(f"accumulate must be >= 1, got {accumulate}")
    method.to(device)
    history: list[EpochStats] = []
    after_step = getattr(method, "after_optimizer_step", None)
    stopped = False
    for epoch in range(start_epoch, epochs):
        if max_steps and global_step >= max_steps:
            stopped = True
            break
        lr = lr_at(epoch) if lr_at else optimizer.param_groups[0]["lr"]
        for group in optimizer.param_groups:
            group["lr"] = lr
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        gen = torch.Generator()
        gen.manual_seed(seed * 100_003 + epoch)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=RandomSampler(dataset, generator=gen),
            drop_last=True,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        n_micro = len(loader)
        method.train()
        optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        losses: list[float] = []
        sums: dict[str, float] = {}
        steps = 0
        for i, batch in enumerate(loader):
            batch = to_device(batch, device)
            loss, metrics = method.training_step(batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(
                    f"loss is {value} at epoch {epoch}, micro-batch {i} (step {global_step}); "
                    "lower lr or check the input images"
                )
            (loss / accumulate).backward()
            losses.append(value)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if (i + 1) % accumulate == 0 or i + 1 == n_micro:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if after_step is not None:
                    after_step()
                steps += 1
                global_step += 1
                if log_every and global_step % log_every == 0:
                    log.info("epoch %d step %d loss %.4f lr %.3g", epoch, global_step, value, lr)
                if max_steps and global_step >= max_steps:
                    stopped = True
                    break
        stats = EpochStats(
            epoch=epoch,
            steps=steps,
            mean_loss=float(np.mean(losses)) if losses else math.nan,
            last_loss=losses[-1] if losses else math.nan,
            lr=lr,
            seconds=time.perf_counter() - t0,
            metrics={k: v / max(len(losses), 1) for k, v in sums.items()},
        )
        history.append(stats)
        log.info(
            "epoch %d done: %d steps, mean loss %.4f (%.1f s)",
            epoch,
            steps,
            stats.mean_loss,
            stats.seconds,
        )
        if on_epoch_end is not None:
            on_epoch_end(stats, global_step)
        if stopped:
            break
    return FitResult(history=history, global_step=global_step, stopped_by_max_steps=stopped)
