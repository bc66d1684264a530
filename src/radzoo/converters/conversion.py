"""What every converter produces (a canonical state dict + the spec it loads into) and how it is written.

Writing is shared so every format gets the same guarantees: strict load into the canonical net,
golden outputs computed right after conversion, provenance, and an atomic ``zoo.save`` (temp dir,
then rename: nothing partial is left in the output directory on any error).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from radzoo import __version__
from radzoo.zoo.artifact import save_artifact
from radzoo.zoo.instantiate import instantiate
from radzoo.zoo.model import ZooModel
from radzoo.zoo.packaged import spec_assets
from radzoo.zoo.spec import ModelSpec
from radzoo.zoo.weights import load_strict


@dataclass
class SourceFile:
    """One original file that went into an artifact."""

    path: Path
    sha256: str
    role: str = "checkpoint"

    def to_dict(self) -> dict[str, str]:
        return {"file": self.path.name, "sha256": self.sha256, "role": self.role}


@dataclass
class Converted:
    """A converted checkpoint, not yet written."""

    spec: ModelSpec
    state: Mapping[str, torch.Tensor]
    converter: str  # module path, e.g. radzoo.converters.mococxr_checkpoint
    converter_version: str
    format: str
    sources: list[SourceFile]
    dropped: list[str] = field(default_factory=list)
    tokenizer: Path | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_file(
        cls,
        path: Path,
        base: ModelSpec,
        remapped: Any,
        *,
        module: str,
        version: str,
        format: str,
        name: str | None = None,
        arch_args: Mapping[str, Any] | None = None,
        tokenizer: Path | None = None,
        notes: list[str] | None = None,
        details: dict[str, Any] | None = None,
        **spec_fields: Any,
    ) -> Converted:
        """The conversion of one original file: ``base`` renamed, with ``arch_args`` (output widths
        derived from them) and real weights, the file's sha256 and the remap's dropped keys."""
        from radzoo.zoo.instantiate import output_widths
        from radzoo.zoo.weights import sha256_file

        if arch_args is not None:
            spec_fields.update(arch_args=dict(arch_args), outputs=output_widths(base.arch, dict(arch_args)))
        return cls(
            spec=base.with_(name=name or base.name, random_init=False, **spec_fields),
            state=remapped.state,
            converter=module,
            converter_version=version,
            format=format,
            sources=[SourceFile(path, sha256_file(path))],
            dropped=remapped.dropped,
            tokenizer=tokenizer,
            notes=list(notes or []),
            details=dict(details or {}),
        )

    def provenance(self) -> dict[str, Any]:
        first = self.sources[0]
        prov: dict[str, Any] = {
            "source_file": first.path.name,
            "source_sha256": first.sha256,
            "converter": self.converter,
            "converter_version": self.converter_version,
            "radzoo_version": __version__,
            "format": self.format,
            "sources": [s.to_dict() for s in self.sources],
            "dropped_keys": len(self.dropped),
        }
        if self.notes:
            prov["notes"] = list(self.notes)
        prov.update(self.details)
        return prov


def to_model(conv: Converted, device: str | torch.device | None = "cpu") -> ZooModel:
    """Build the canonical net from the spec (output widths checked) and load the converted weights strictly."""
    net = instantiate(conv.spec)
    load_strict(net, conv.state, f"converted {conv.format} checkpoint {conv.sources[0].path.name}")
    assets = spec_assets(conv.spec)
    if conv.tokenizer is not None:
        assets["tokenizer"] = conv.tokenizer
    return ZooModel(conv.spec, net, device=device, assets=assets, config={"provenance": conv.provenance()})


def write_converted(conv: Converted, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Strict load, golden outputs, atomic save. Returns the artifact directory."""
    from radzoo.zoo.golden import compute_golden

    model = to_model(conv)
    golden = compute_golden(model)
    return save_artifact(model, Path(out), overwrite=overwrite, provenance=conv.provenance(), sections={"golden": golden})
