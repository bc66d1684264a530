"""The model zoo: specs and registry (pure data), artifacts on disk and on the Hub, ``ZooModel``.

The zoo sits below everything that opens models: ``radzoo.load`` / ``radzoo.build`` (the one
door, in ``radzoo.resolve``) decide where weights come from and which runtime runs them.
``zoo.load`` / ``zoo.build`` are that same door (the same function objects, so the same signature),
kept because ``from radzoo import zoo; zoo.load("prior_resnet50")`` is the interface users were
promised. Attributes are imported on first use, so listing the registry never imports torch and
the zoo's own modules never import the layer above them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CAPABILITIES": "radzoo.zoo.spec",
    "SCHEMA_VERSION": "radzoo.zoo.spec",
    "ModelSpec": "radzoo.zoo.spec",
    "Preprocess": "radzoo.zoo.spec",
    "Source": "radzoo.zoo.spec",
    "ZooModel": "radzoo.zoo.model",
    "get_spec": "radzoo.zoo.registry",
    "list_models": "radzoo.zoo.registry",
    "local_models": "radzoo.zoo.home",
    "local_zoo_dir": "radzoo.zoo.home",
    "radzoo_home": "radzoo.zoo.home",
}


#: The one door, re-exported by name (resolved on first use: ``radzoo.resolve`` sits above the zoo,
#: and importing it lazily from here keeps the import graph one-way; tests/test_layering.py checks
#: that this facade points nowhere else).
DOOR = {"load": "radzoo.resolve", "build": "radzoo.resolve"}


def save(model: Any, directory: Any, **kwargs: Any) -> Any:
    """Write ``model`` as an artifact directory, atomically (``radzoo.zoo.artifact.save_artifact``)."""
    from radzoo.zoo.artifact import save_artifact

    return save_artifact(model, directory, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in DOOR:
        return getattr(importlib.import_module(DOOR[name]), name)
    raise AttributeError(f"module 'radzoo.zoo' has no attribute {name!r}")


__all__ = sorted([*_EXPORTS, *DOOR, "save"])
