"""Re-implementations of the pretraining methods that save what the zoo loads.

Implemented: MoCo-CXR (``train_mococxr``), plus the shared building blocks the other methods
will compose: ``losses`` (MoCo InfoNCE, CLIP with learnable scale, LoVT cross-modal NT-Xent),
``momentum`` (EMA key encoder, FIFO negative queue), ``augment``, ``config``, ``data``, ``loop``
and resumable safetensors ``checkpoint``s. Imports are lazy so ``import radzoo`` stays light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "MoCoCXRConfig": "radzoo.training.hparams",
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
