"""Canonical architectures, one place for each. No I/O, no downloads: modules only.

Each architecture module is imported only when that architecture is built, so building a
MoCo-CXR trunk never imports torch_geometric (graph-CT, IGCL) or transformers (text towers).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from radzoo.nets.base import EncoderNet, ImageOutput

#: architecture name -> (module, class); the registry's ``arch`` values.
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "mococxr": ("radzoo.nets.mococxr", "MoCoCXRNet"),
    "prior": ("radzoo.nets.prior", "PriorNet"),
    "lovt": ("radzoo.nets.lovt", "LoVTNet"),
    "igcl": ("radzoo.nets.igcl", "IGCLNet"),
    "graphct": ("radzoo.nets.graphct", "GraphCTNet"),
}


def net_class(arch: str) -> type[EncoderNet]:
    """The class of architecture ``arch`` (imports only its module)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    module, name = ARCHITECTURES[arch]
    return getattr(importlib.import_module(module), name)


def build_net(arch: str, arch_args: Mapping[str, Any]) -> EncoderNet:
    """Instantiate the architecture ``arch`` with ``arch_args`` (random weights)."""
    cls = net_class(arch)
    try:
        return cls(**dict(arch_args))
    except TypeError as exc:
        raise ValueError(f"bad arguments for architecture {arch!r}: {exc}") from exc


__all__ = ["ARCHITECTURES", "EncoderNet", "ImageOutput", "build_net", "net_class"]
