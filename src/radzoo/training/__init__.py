"""Re-implementations of the pretraining methods that save what the zoo loads.

Methods (``methods/``) are compositions of small parts: ``losses``, ``momentum`` (EMA key
encoder, FIFO negative queue), ``augment``, ``data``. They all run on one substrate:
``loop`` (the Trainer: phases, accumulation, NaN checks, validation, checkpoints),
``distributed`` (torchrun processes, gathers, the world-size-independent sampler), ``precision``
(bf16 / fp16 AMP), ``schedules``, ``resume`` (atomic safetensors checkpoints), ``run_log``
(metrics.jsonl, progress bars) and ``runner`` (output checks, resolved config, export as a zoo
artifact). Configs live in ``hparams``. Imports are lazy so ``import radzoo`` stays light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "MoCoCXRConfig": "radzoo.training.hparams",
    "LoVTConfig": "radzoo.training.hparams",
    "PriorConfig": "radzoo.training.hparams",
    "train_lovt": "radzoo.training.methods.lovt_pretraining",
    "train_prior": "radzoo.training.methods.prior_pretraining",
    "ConfigError": "radzoo.training.hparams",
    "resolve_config": "radzoo.training.hparams",
    "write_config": "radzoo.training.hparams",
    "train_mococxr": "radzoo.training.methods.mococxr_pretraining",
    "TrainingError": "radzoo.training.loop",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'radzoo.training' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
