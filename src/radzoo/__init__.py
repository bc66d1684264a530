"""radzoo: medical image representation models (MoCo-CXR, LoVT, PRIOR, IGCL, graph-CT).

``radzoo.load(name)`` gives a ready encoder with its preprocessing attached (real weights,
strictly loaded); ``radzoo.build(name)`` the explicit random initialisation. Both live in
``radzoo.resolve`` and are imported on first use, so ``import radzoo`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"load": "radzoo.resolve", "build": "radzoo.resolve", "Model": "radzoo.resolve", "spec_of": "radzoo.resolve"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'radzoo' has no attribute {name!r}")


__all__ = ["Model", "__version__", "build", "load", "spec_of"]
