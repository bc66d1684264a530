"""The one training loop every method runs: distributed, mixed precision, resumable.

A *method* is an ``nn.Module`` whose ``forward(batch)`` returns ``(loss, metrics)``; it may also
define ``after_optimizer_step()`` (MoCo's momentum update), ``set_phase(name)`` (PRIOR's stages)
and ``find_unused_parameters`` (True when some parameters get no gradient in some steps). The
:class:`Trainer` owns everything the methods would otherwise repeat:

* ``torchrun`` processes (:mod:`radzoo.training.distributed`): DDP around the method, a
  :class:`~radzoo.training.distributed.ResumableDistributedSampler`, per-process batch =
  global batch / world size, SyncBatchNorm on GPUs when asked;
* phases (:class:`Phase`): a new optimiser and LR schedule at each phase start (PRIOR's stages),
  the LR set from the schedule before every optimiser step;
* AMP (:mod:`radzoo.training.precision`), gradient accumulation (DDP ``no_sync`` on the
  micro-batches that do not step), ``max_steps``;
* a NaN/inf loss stops every rank with one clear error; noise (dropout, Gumbel) is re-seeded per
  micro-batch from ``(seed, epoch, micro-batch, rank)`` so a resumed run draws the same noise;
* validation loss each epoch and early stopping (LoVT), keeping the best weights;
* input decoding in DataLoader worker processes (:func:`loader_options`: by default as many as
  the cores per process allow, pinned memory on CUDA, workers kept across epochs); every sample's
  augmentation is seeded by ``(seed, epoch, index)`` and the epoch travels with each index
  (:class:`EpochKeys`), so batches do not depend on the worker count and resume exactly;
* rank 0 alone writes: per-step ``metrics.jsonl``, a progress bar, atomic resume checkpoints
  (each epoch, or every N steps) that resume at any world size, mid-epoch included.

The device always comes from the :class:`~radzoo.training.distributed.DistContext`; nothing here
assumes CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from radzoo.errors import ArtifactError, InputError, RadzooError
from radzoo.training import distributed as D
from radzoo.training.precision import Precision
from radzoo.training.resume import (
    has_training_state,
    load_training_state,
    read_training_meta,
    save_training_state,
)
from radzoo.training.run_log import RunLog
from radzoo.training.schedules import LRSchedule

log = logging.getLogger(__name__)

BEST = "best.safetensors"


class TrainingError(RadzooError):
    """Training cannot go on (e.g. the loss became NaN/inf); the message says when and what to try."""


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


def loader_options(num_workers: int, device: torch.device) -> dict[str, Any]:
    """The DataLoader's worker and memory settings (written to ``resolved.json``).

    ``num_workers = -1`` resolves from the machine (:func:`~radzoo.training.distributed.auto_num_workers`):
    decoding in the training process starves a GPU. Pinned memory makes the host-to-GPU copy
    asynchronous; persistent workers are not re-spawned (re-importing, re-opening files) each epoch.
    """
    workers = D.auto_num_workers() if num_workers < 0 else int(num_workers)
    return {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0}


class EpochKeys(Sampler):
    """Wraps a sampler to yield ``(epoch, index)``: workers that outlive an epoch learn it with
    every sample (a ``set_epoch`` on the main process's dataset never reaches them)."""

    def __init__(self, sampler: D.ResumableDistributedSampler) -> None:
        self.sampler = sampler

    def __iter__(self):
        epoch = self.sampler.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochDataset(Dataset):
    """Reads ``dataset[index]`` for an :class:`EpochKeys` key, calling ``dataset.set_epoch`` (when it
    has one) first whenever the epoch changes, in whichever process it runs."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self.epoch:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            self.epoch = epoch
        return self.dataset[index]


@dataclass
class Phase:
    """A span of epochs trained with one optimiser and one LR schedule.

    ``make_optimizer(params)`` builds a fresh optimiser (its state starts empty: PRIOR re-creates
    its optimiser at each stage); ``lr_at(step_in_phase, epoch)`` gives the rate before each step.
    """

    name: str
    epochs: int
    make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    lr_at: LRSchedule


@dataclass
class Settings:
    """The loop's knobs (each method's config dataclass supplies them)."""

    epochs: int
    batch_size: int  # the global batch: summed over all processes
    seed: int = 0
    accumulate: int = 1
    max_steps: int = 0
    num_workers: int = -1  # -1 = auto (loader_options)
    log_every: int = 10
    checkpoint_every: int = 1  # epochs; 0 = only at the end
    checkpoint_every_steps: int = 0  # optimiser steps; 0 = off
    early_stop_patience: int = 0  # validation epochs without improvement; 0 = off
    early_stop_min_delta: float = 0.0
    sync_bn: bool = False
    progress: bool = True
    save_checkpoints: bool = True  # False: throwaway runs (benchmarks) write no resume state


@dataclass
class LoopState:
    """Where training stands; saved in every checkpoint (JSON), independent of the world size."""

    epoch: int = 0  # the epoch being trained (or next to train)
    step: int = 0  # optimiser steps taken in total
    phase: str = ""
    phase_step: int = 0  # optimiser steps since the current phase began
    sample_in_epoch: int = 0  # samples of the current epoch already trained on (global)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False


@dataclass
class FitResult:
    state: LoopState
    stopped_by_max_steps: bool
    world_size: int
    best_weights: Path | None
    replica_digests: list[str] = field(default_factory=list)  # sha256 of each rank's parameters

    @property
    def replicas(self) -> dict[str, Any]:
        """For provenance: every process ended with the same weights (DDP kept them in sync)."""
        return {
            "world_size": self.world_size,
            "parameters_sha256": self.replica_digests[0] if self.replica_digests else None,
            "in_sync": len(set(self.replica_digests)) == 1,
        }

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    @property
    def global_step(self) -> int:
        return self.state.step

    @property
    def final_loss(self) -> float:
        return self.history[-1]["last_loss"] if self.history else math.nan


class Trainer:
    """Runs one method on one dataset under one :class:`~radzoo.training.distributed.DistContext`."""

    def __init__(
        self,
        method: nn.Module,
        train_set: Dataset,
        phases: Callable[[int], list[Phase]],
        settings: Settings,
        ctx: D.DistContext,
        precision: Precision,
        run_dir: Path,
        *,
        collate: Callable[[list[Any]], Any] | None = None,
        val_set: Dataset | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.train_set = train_set
        self.settings = settings
        self.ctx = ctx
        self.precision = precision
        self.run_dir = Path(run_dir)
        self.collate = collate
        self.val_set = val_set
        self.meta = dict(meta or {})
        s = settings
        if s.accumulate < 1:
            raise InputError(f"accumulate must be >= 1, got {s.accumulate}")
        self.local_batch = D.per_rank_batch(s.batch_size, ctx.world_size)
        n = len(train_set)  # type: ignore[arg-type]
        if n < s.batch_size:
            raise InputError(
                f"only {n} training samples for the global batch_size {s.batch_size}: add data or lower batch_size"
            )
        self.micro_per_epoch = n // s.batch_size
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / s.accumulate)
        self.phases = phases(self.steps_per_epoch)
        if sum(p.epochs for p in self.phases) != s.epochs:
            raise InputError(f"phases cover {sum(p.epochs for p in self.phases)} epochs, config says {s.epochs}")
        self.log = RunLog(self.run_dir, enabled=ctx.is_main, progress=s.progress)

    # ---- phases -----------------------------------------------------------------------------
    def phase_of(self, epoch: int) -> Phase:
        start = 0
        for p in self.phases:
            if epoch < start + p.epochs:
                return p
            start += p.epochs
        return self.phases[-1]

    def _params(self) -> list[nn.Parameter]:
        return [p for p in self.method.parameters() if p.requires_grad]

    # ---- checkpoints ------------------------------------------------------------------------
    def _save(self, state: LoopState, optimizer: torch.optim.Optimizer) -> None:
        """Rank 0 writes; every rank learns whether it worked (no rank hangs on a failed write)."""
        if not self.settings.save_checkpoints:
            return
        error: str | None = None
        if self.ctx.is_main:
            try:
                meta = {**self.meta, "loop": asdict(state), "precision": self.precision.state_dict(), "world_size": self.ctx.world_size}
                save_training_state(self.run_dir, self.method, optimizer, meta)
            except ArtifactError as exc:
                error = str(exc)
        if not D.all_agree(error is None, self.ctx.device):
            raise ArtifactError(error or "rank 0 could not write the resume checkpoint (see its log)")

    def _restore(self) -> tuple[LoopState, torch.optim.Optimizer | None]:
        record = read_training_meta(self.run_dir)
        state = LoopState(**record["loop"])
        if state.phase not in {p.name for p in self.phases}:
            raise ArtifactError(f"checkpoint in {self.run_dir} is in phase {state.phase!r}, unknown to this method")
        phase = next(p for p in self.phases if p.name == state.phase)
        if hasattr(self.method, "set_phase"):
            self.method.set_phase(phase.name)
        optimizer = phase.make_optimizer(self._params())
        load_training_state(self.run_dir, self.method, optimizer)
        self.precision.load_state_dict(record.get("precision", {}))
        saved_ws = record.get("world_size", 1)
        log.info(
            "resuming %s at epoch %d, step %d (phase %s, step %d in phase; saved with %d process(es), now %d)",
            self.run_dir, state.epoch, state.step, state.phase, state.phase_step, saved_ws, self.ctx.world_size,
        )
        return state, optimizer

    def _save_best(self) -> None:
        """Rank 0 keeps the best weights so far (atomically); every rank learns whether it worked."""
        error: str | None = None
        if self.ctx.is_main:
            from safetensors import SafetensorError
            from safetensors.torch import save_file

            tmp = self.run_dir / (BEST + ".tmp")
            try:
                state = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.method.state_dict().items()}
                save_file(state, str(tmp))
                tmp.replace(self.run_dir / BEST)
            except (OSError, SafetensorError) as exc:
                tmp.unlink(missing_ok=True)
                error = f"could not write the best weights {self.run_dir / BEST}: {exc}"
        if not D.all_agree(error is None, self.ctx.device):
            raise ArtifactError(error or "rank 0 could not write the best weights (see its log)")

    # ---- data -------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, sampler: D.ResumableDistributedSampler, batch: int, *, keep: bool) -> DataLoader:
        """``keep``: one loader for the whole run, its workers persisting across epochs (training);
        otherwise workers end with the pass (validation)."""
        options = loader_options(self.settings.num_workers, self.ctx.device)
        options["persistent_workers"] &= keep
        # the workers' own seeds (torch, random, numpy: base + worker id) come from this generator,
        # not from the training process's RNG state
        seeds = torch.Generator().manual_seed(D.step_seed(self.settings.seed, int(keep), self.ctx.rank))
        return DataLoader(
            EpochDataset(dataset),
            batch_size=batch,
            sampler=EpochKeys(sampler),
            drop_last=True,
            collate_fn=self.collate,
            generator=seeds,
            **options,
        )

    # ---- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Mean validation loss over whole global batches (eval mode, no augmentation)."""
        if self.val_set is None:
            return None
        ws = self.ctx.world_size
        n = len(self.val_set)  # type: ignore[arg-type]
        global_batch = min(self.settings.batch_size, (n // ws) * ws)
        if global_batch < max(2, ws):
            raise InputError(f"validation set has {n} samples: too few for one batch of >= 2 per step")
        sampler = D.ResumableDistributedSampler(self.val_set, global_batch, shuffle=False, seed=self.settings.seed)
        self.method.eval()
        sums: dict[str, float] = {}
        count = 0
        try:
            for batch in self._loader(self.val_set, sampler, global_batch // ws, keep=False):
                batch = to_device(batch, self.ctx.device)
                with self.precision.autocast():
                    loss, metrics = self.method(batch)
                sums["loss"] = sums.get("loss", 0.0) + float(loss)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
        finally:
            self.method.train()
        means = {f"val_{k}": v / max(count, 1) for k, v in sums.items()}
        return D.mean_over_ranks(means, self.ctx.device)

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        s, ctx = self.settings, self.ctx
        method = self.method.to(ctx.device)
        if s.sync_bn and ctx.distributed:
            if ctx.device.type == "cuda":
                method = self.method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
            else:
                log.warning("sync_bn: SyncBatchNorm needs GPUs; on CPU each process keeps its own batch statistics")
        optimizer: torch.optim.Optimizer | None = None
        state = LoopState()
        if resume and has_training_state(self.run_dir):
            state, optimizer = self._restore()
        if state.epoch >= s.epochs and not state.sample_in_epoch:
            raise InputError(f"nothing to train: checkpoint {self.run_dir} already reached epoch {state.epoch}; raise epochs")
        if s.max_steps and state.step >= s.max_steps:
            raise InputError(f"nothing to train: checkpoint {self.run_dir} already took {state.step} steps (max_steps {s.max_steps})")
        model: nn.Module = method
        if ctx.distributed:
            model = nn.parallel.DistributedDataParallel(
                method,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(method, "find_unused_parameters", False)),
            )
        sampler = D.ResumableDistributedSampler(self.train_set, s.batch_size, seed=s.seed)
        loader = self._loader(self.train_set, sampler, self.local_batch, keep=True)
        after_step = getattr(method, "after_optimizer_step", None)
        stopped = False
        best_path = self.run_dir / BEST if (self.run_dir / BEST).is_file() else None
        try:
            for epoch in range(state.epoch, s.epochs):
                phase = self.phase_of(epoch)
                if optimizer is None or phase.name != state.phase:
                    if hasattr(method, "set_phase"):
                        method.set_phase(phase.name)
                    optimizer = phase.make_optimizer(self._params())
                    state.phase, state.phase_step = phase.name, 0
                    log.info("epoch %d: phase %s starts with a new optimiser", epoch, phase.name)
                if hasattr(self.train_set, "set_epoch"):
                    self.train_set.set_epoch(epoch)
                sampler.set_epoch(epoch)
                sampler.set_start(state.sample_in_epoch)
                first_micro = state.sample_in_epoch // s.batch_size
                stats, stopped = self._epoch(model, method, optimizer, phase, epoch, first_micro, loader, state, after_step)
                if stats is not None:
                    state.history.append(stats)
                if stopped and state.sample_in_epoch < self.micro_per_epoch * s.batch_size:
                    break
                state.epoch, state.sample_in_epoch = epoch + 1, 0
                val = self.validate()
                if val is not None and state.history:
                    state.history[-1].update(val)
                    if self._improved(val["val_loss"], state):
                        self._save_best()
                        best_path = self.run_dir / BEST
                    if s.early_stop_patience and state.bad_epochs >= s.early_stop_patience:
                        state.stopped_early = True
                        log.info("early stopping after epoch %d: no validation improvement for %d epochs", epoch, state.bad_epochs)
                last = epoch + 1 == s.epochs or state.stopped_early or stopped
                if last or (s.checkpoint_every and (epoch + 1) % s.checkpoint_every == 0):
                    self._save(state, optimizer)
                if state.stopped_early or stopped:
                    break
            if stopped and optimizer is not None and state.sample_in_epoch:
                self._save(state, optimizer)
        finally:
            self.log.close()
        if not state.history:
            raise InputError(f"nothing to train: no complete batch in epochs {state.epoch}..{s.epochs - 1}")
        digests = [str(d) for d in D.all_gather_object(D.parameter_digest(self.method))]
        if len(set(digests)) != 1:
            raise TrainingError(f"the {ctx.world_size} processes ended with different weights (parameter sha256 {digests}); this is a bug")
        return FitResult(
            state=state, stopped_by_max_steps=stopped, world_size=ctx.world_size, best_weights=best_path, replica_digests=digests
        )

    def _improved(self, value: float, state: LoopState) -> bool:
        if state.best_val is None or value < state.best_val - self.settings.early_stop_min_delta:
            state.best_val, state.best_epoch, state.bad_epochs = value, state.epoch - 1, 0
            return True
        state.bad_epochs += 1
        return False

    def _epoch(
        self,
        model: nn.Module,
        method: nn.Module,
        optimizer: torch.optim.Optimizer,
        phase: Phase,
        epoch: int,
        first_micro: int,
        loader: DataLoader,
        state: LoopState,
        after_step: Callable[[], None] | None,
    ) -> tuple[dict[str, Any] | None, bool]:
        s, ctx = self.settings, self.ctx
        method.train()
        optimizer.zero_grad(set_to_none=True)
        total_steps = self.steps_per_epoch
        done_steps = first_micro // s.accumulate
        bar = self.log.bar(total_steps, done_steps, f"epoch {epoch} ({phase.name})")
        t_epoch = time.perf_counter()
        t_step = time.perf_counter()
        losses: list[float] = []
        sums: dict[str, float] = {}
        step_losses: list[float] = []
        step_sums: dict[str, float] = {}
        steps = 0
        stopped = False
        lr = phase.lr_at(state.phase_step, epoch)
        for i, batch in enumerate(loader, start=first_micro):
            torch.manual_seed(D.step_seed(s.seed, epoch, i, ctx.rank))
            if hasattr(method, "shared_seed"):  # equal on every rank (e.g. MoCo's shuffle-BN permutation)
                method.shared_seed = D.step_seed(s.seed, epoch, i)
            steps_now = (i + 1) % s.accumulate == 0 or i + 1 == self.micro_per_epoch
            lr = phase.lr_at(state.phase_step, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = to_device(batch, ctx.device)
            sync = contextlib.nullcontext() if steps_now or not ctx.distributed else model.no_sync()
            with sync:
                with self.precision.autocast():
                    loss, metrics = model(batch)
                value = float(loss.detach())
                if not D.all_agree(math.isfinite(value), ctx.device):
                    where = f"epoch {epoch}, micro-batch {i}, step {state.step}"
                    if math.isfinite(value):
                        raise TrainingError(f"the loss became NaN/inf on another process at {where}; see its log")
                    raise TrainingError(
                        f"loss is {value} at {where} (rank {ctx.rank}); lower lr, check the input data, "
                        f"or train with precision=32 (now {self.precision.name})"
                    )
                self.precision.backward(loss / s.accumulate)
            losses.append(value)
            step_losses.append(value)
            for k, v in metrics.items():
                fv = float(v)
                sums[k] = sums.get(k, 0.0) + fv
                step_sums[k] = step_sums.get(k, 0.0) + fv
            if not steps_now:
                continue
            self.precision.step(optimizer)
            optimizer.zero_grad(set_to_none=True)
            if after_step is not None:
                after_step()
            state.step += 1
            state.phase_step += 1
            state.sample_in_epoch = (i + 1) * s.batch_size
            steps += 1
            now = time.perf_counter()
            record = {
                "step": state.step,
                "epoch": epoch,
                "phase": phase.name,
                "lr": lr,
                "loss": float(np.mean(step_losses)),
                **{k: v / len(step_losses) for k, v in step_sums.items()},
                "samples": len(step_losses) * s.batch_size,
                "samples_per_s": len(step_losses) * s.batch_size / max(now - t_step, 1e-9),
                "world_size": ctx.world_size,
            }
            self.log.write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
            if s.log_every and state.step % s.log_every == 0:
                log.info("epoch %d step %d loss %.4f lr %.3g", epoch, state.step, record["loss"], lr)
            step_losses, step_sums, t_step = [], {}, now
            if s.max_steps and state.step >= s.max_steps:
                stopped = True
                break
            if s.checkpoint_every_steps and state.step % s.checkpoint_every_steps == 0 and i + 1 < self.micro_per_epoch:
                self._save(state, optimizer)
        bar.close()
        if not losses:
            return None, stopped
        seconds = time.perf_counter() - t_epoch
        stats = {
            "epoch": epoch,
            "phase": phase.name,
            "steps": steps,
            "mean_loss": float(np.mean(losses)),
            "last_loss": losses[-1],
            "lr": lr,
            "seconds": round(seconds, 3),
            **{k: v / len(losses) for k, v in sums.items()},
        }
        log.info("epoch %d done: %d steps, mean loss %.4f (%.1f s)", epoch, steps, stats["mean_loss"], seconds)
        return stats, stopped
