"""Canonical architectures, one place for each. No I/O, no downloads: modules only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from radzoo.nets.base import EncoderNet, ImageOutput


def _archs() -> dict[str, type[EncoderNet]]:
    from radzoo.nets.graphct import GraphCTNet
    from radzoo.nets.igcl import IGCLNet
    from radzoo.nets.lovt import LoVTNet
    from radzoo.nets.mococxr import MoCoCXRNet
    from radzoo.nets.prior import PriorNet

    return {"mococxr": MoCoCXRNet, "prior": PriorNet, "lovt": LoVTNet, "igcl": IGCLNet, "graphct": GraphCTNet}


def build_net(arch: str, arch_args: Mapping[str, Any]) -> EncoderNet:
    """Instantiate the architecture ``arch`` with ``arch_args`` (random weights)."""
    archs = _archs()
    if arch not in archs:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(archs)}")
    try:
        return archs[arch](**dict(arch_args))
    except TypeError as exc:
        raise ValueError(f"bad arguments for architecture {arch!r}: {exc}") from exc


__all__ = ["EncoderNet", "ImageOutput", "build_net"]
