"""What every ``train_<method>`` does around the loop: output checks, processes, provenance, export.

A method module builds its network, data and phases; this module does the rest the same way for
all of them: refuse to clobber a previous run, start (or join) the process group, resolve the
precision, write the resolved config (with world size and global batch) beside the artifact,
and let rank 0 alone export the trained network as a zoo artifact that ``radzoo.load`` reads
strictly.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from radzoo import __version__
from radzoo.errors import ArtifactError, InputError
from radzoo.training import distributed as D
from radzoo.training.hparams import RESUMABLE_KEYS, RunConfig, config_dict, write_config
from radzoo.training.loop import FitResult, Settings, loader_options
from radzoo.training.precision import Precision, resolve_precision
from radzoo.training.resume import has_training_state, read_training_meta
from radzoo.training.run_log import RESOLVED, write_json_atomic

log = logging.getLogger(__name__)


def checkpoint_dir(out: str | os.PathLike[str]) -> Path:
    """The run directory: ``<out>/../<out name>.train/`` (beside, never inside, the artifact).

    It holds the resume checkpoint, ``metrics.jsonl``, ``config.json`` and ``resolved.json``.
    """
    out = Path(out)
    return out.parent / f"{out.name}.train"


@dataclass
class Run:
    """One training run as this process sees it."""

    config: RunConfig
    out: Path
    run_dir: Path
    ctx: D.DistContext
    precision: Precision
    resume: bool

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main


def start_run(config: RunConfig, out: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> Run:
    """Check the output, join the process group and resolve device and precision.

    ``out`` must be on a filesystem every process sees (a resumed run reads the checkpoint on
    every rank).
    """
    out = Path(out)
    run_dir = checkpoint_dir(out)
    if out.exists() and out.is_dir() and any(out.iterdir()) and not (overwrite or resume):
        raise ArtifactError(f"output {out} exists and is not empty; pass --overwrite to replace it")
    if not resume and has_training_state(run_dir) and not overwrite:
        raise ArtifactError(f"{run_dir} holds a previous run's checkpoint; pass --resume to continue it or --overwrite")
    ctx = D.setup(config.device, config.dist_backend)
    try:
        if overwrite and not resume and ctx.is_main:
            for stale in list(run_dir.glob("state*")) + [run_dir / "metrics.jsonl", run_dir / "best.safetensors"]:
                if stale.is_file():
                    stale.unlink()
        D.barrier()
        if resume and has_training_state(run_dir):
            check_resumable(read_training_meta(run_dir).get("config", {}), config, run_dir)
        precision = Precision(
            resolve_precision(config.precision, ctx.device, getattr(config, "paper_precision", "32")), ctx.device
        )
    except BaseException:
        D.teardown(ctx)
        raise
    return Run(config, out, run_dir, ctx, precision, resume)


def check_resumable(saved: dict[str, Any], config: RunConfig, run_dir: Path) -> None:
    """Refuse to resume with a different method config (run settings such as device may change)."""
    current = config_dict(config)
    changed = sorted(k for k in current if k not in RESUMABLE_KEYS and saved.get(k) != current[k])
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise InputError(
            f"cannot resume {run_dir} with a different config ({detail}); only {sorted(RESUMABLE_KEYS)} may change"
        )


def settings_for(config: Any, **extra: Any) -> Settings:
    """The loop settings from a method config (fields the config lacks keep the loop's defaults)."""
    names = ("epochs", "batch_size", "seed", "accumulate", "max_steps", "num_workers", "log_every",
             "checkpoint_every", "checkpoint_every_steps", "sync_bn", "progress",
             "early_stop_patience", "early_stop_min_delta")
    values = {n: getattr(config, n) for n in names if hasattr(config, n)}
    values.update(extra)
    return Settings(**values)


def write_resolved(run: Run, extra: dict[str, Any] | None = None) -> Path:
    """``config.json`` (re-readable by ``resolve_config``) and ``resolved.json`` (config + execution)."""
    write_config(run.config, run.run_dir / "config.json")
    batch = int(getattr(run.config, "batch_size", 0))
    resolved = {
        "method": run.config.method,
        "config": config_dict(run.config),
        "world_size": run.ctx.world_size,
        "global_batch": batch,
        "per_process_batch": batch // run.ctx.world_size if batch else None,
        "accumulate": int(getattr(run.config, "accumulate", 1)),
        "samples_per_optimizer_step": batch * int(getattr(run.config, "accumulate", 1)),
        "precision": run.precision.name,
        "device": str(run.ctx.device),
        "backend": run.ctx.backend or "none",
        "data_loader": loader_options(int(getattr(run.config, "num_workers", -1)), run.ctx.device),
        "torch": torch.__version__,
        "radzoo": __version__,
        **(extra or {}),
    }
    return write_json_atomic(run.run_dir / RESOLVED, resolved)


def provenance(run: Run, result: FitResult, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The artifact's ``provenance`` section for a model trained here."""
    history = result.history
    return {
        "trained_by": "radzoo.training",
        "method": run.config.method,
        "config": config_dict(run.config),
        "epochs": history[-1]["epoch"] + 1 if history else 0,
        "steps": result.global_step,
        "stopped_by_max_steps": result.stopped_by_max_steps,
        "stopped_early": result.state.stopped_early,
        "data": data,
        "final_loss": result.final_loss,
        "history": history,
        "world_size": result.world_size,
        "replicas": result.replicas,
        "global_batch": getattr(run.config, "batch_size", None),
        "precision": run.precision.name,
        "device": str(run.ctx.device),
        "radzoo_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        **extra,
    }


def save_artifact(
    run: Run,
    net: torch.nn.Module,
    spec: Any,
    *,
    provenance: dict[str, Any],
    sections: dict[str, Any],
    extra_files: dict[str, Path] | None = None,
    assets: dict[str, Path] | None = None,
) -> Path:
    """Rank 0 writes ``net`` as a zoo artifact (atomic temp dir + rename); other ranks wait for it.

    ``net`` must be the exact network ``radzoo.load`` builds from ``spec``; the files of the run
    directory (config, resolved config) travel inside the artifact under ``training/``.
    """
    from radzoo import zoo
    from radzoo.zoo.model import ZooModel

    failure: Exception | None = None
    if run.is_main:
        try:
            files = {
                "training/config.json": run.run_dir / "config.json",
                "training/resolved.json": run.run_dir / RESOLVED,
                **(extra_files or {}),
            }
            model = ZooModel(spec, net.to("cpu"), device="cpu", assets=dict(assets or {}))
            zoo.save(
                model,
                run.out,
                overwrite=run.out.exists(),
                provenance=provenance,
                sections=sections,
                extra_files=files,
            )
            log.info("saved %s (final loss %.4f)", run.out, provenance.get("final_loss", float("nan")))
        except Exception as exc:  # noqa: BLE001 - every rank learns of it below; rank 0 re-raises it
            failure = exc
    if not D.all_agree(failure is None, run.ctx.device):
        if failure is not None:
            raise failure
        raise ArtifactError(f"rank 0 could not write the artifact {run.out} (see its log)")
    return run.out
