"""Networks from specs: the output-width check every build and load passes, and seeded random init."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from radzoo.errors import ArtifactError
from radzoo.nets import EncoderNet, build_net
from radzoo.zoo.model import ZooModel
from radzoo.zoo.packaged import spec_assets
from radzoo.zoo.spec import ModelSpec


def output_widths(arch: str, arch_args: Mapping[str, Any]) -> dict[str, int]:
    """The named outputs (and widths) the network ``arch(**arch_args)`` produces.

    Built on the meta device: no memory, no weights, milliseconds; the net stays the one source.
    """
    try:
        with torch.device("meta"):
            return build_net(arch, arch_args).output_widths
    except ValueError as exc:
        raise ArtifactError(f"cannot build architecture {arch!r}: {exc}") from exc


def instantiate(spec: ModelSpec) -> EncoderNet:
    """The network of ``spec`` (random weights), refused when its output widths disagree with the spec.

    The net is the one source of output widths (``EncoderNet.output_widths``); a spec that lists
    other names or widths would mislabel every embedding it produces.
    """
    try:
        net = build_net(spec.arch, spec.arch_args)
    except ValueError as exc:
        raise ArtifactError(f"model {spec.name!r}: cannot build architecture: {exc}") from exc
    widths = net.output_widths
    if dict(spec.outputs) != widths:
        raise ArtifactError(
            f"model {spec.name!r}: the spec lists outputs {dict(spec.outputs)} but the {spec.arch} network "
            f"built from its arch_args produces {widths}"
        )
    return net


def build_random(
    spec: ModelSpec,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    config: dict[str, Any] | None = None,
    cls: type[ZooModel] = ZooModel,
) -> ZooModel:
    """The explicit, seeded random initialisation of ``spec``; the model is marked ``random_init``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = instantiate(spec)
    assets = spec_assets(spec)
    if tokenizer is not None:
        tok = Path(tokenizer)
        if not tok.is_dir():
            raise ArtifactError(f"tokenizer directory {tok} does not exist")
        assets["tokenizer"] = tok
    full = {"provenance": {"built_by": "radzoo.build", "seed": seed, "random_init": True}, **(config or {})}
    return cls(spec.with_(random_init=True), net, device=device, assets=assets, config=full)
