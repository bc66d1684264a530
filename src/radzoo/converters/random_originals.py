"""Checkpoints in the EXACT original layouts, with random weights, built from the key manifests.

``shared/specs/checkpoints/*.json`` lists, per original format, every key in saved order with its
shape and dtype, the top-level entries, ``_metadata`` module versions and layout variants. Tests
write such files, convert them and compare against an independent computation from the raw keys.

Queues may be shrunk along the manifest's ``shrink_dim`` (``shrink={"module.queue": 1024}``); the
file name must then say so (contain ``shrink``). Text/vision towers can be swapped for a tiny
config with ``blocks={prefix: tiny_module.state_dict()}``: keys under ``prefix`` keep the manifest's
order but only those the tiny module has (plus ``embeddings.position_ids``), with its shapes.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "bool": torch.bool}


def load_manifest(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def manifest_layout(manifest: Mapping[str, Any], variant: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """(tensors in saved order, module versions) of the primary layout or of ``variant``."""
    if variant is None:
        return dict(manifest["tensors"]), dict(manifest.get("module_versions", {}))
    variants = manifest.get("variants", {})
    if variant not in variants:
        raise KeyError(f"manifest has no variant {variant!r}; it has {sorted(variants)}")
    v = variants[variant]
    return dict(v["tensors"]), dict(v.get("module_versions", manifest.get("module_versions", {})))


def _init(key: str, spec: Mapping[str, Any], shape: list[int], gen: torch.Generator) -> torch.Tensor:
    dtype = _DTYPES[spec["dtype"]]
    kind = spec.get("init")
    if kind == "zeros" or (kind is None and not dtype.is_floating_point):
        return torch.zeros(shape, dtype=dtype)
    if kind == "count":
        return torch.full(shape, 1000, dtype=dtype)
    if kind == "arange":
        return torch.arange(shape[-1], dtype=dtype).expand(shape).clone()
    if kind == "value":
        return torch.tensor(spec["value"], dtype=dtype).expand(shape).clone()
    if kind == "small":
        return (0.1 * torch.randn(shape, generator=gen)).to(dtype)
    if kind == "positive":
        return (0.75 + 0.5 * torch.rand(shape, generator=gen)).to(dtype)
    if kind == "unit_columns":
        t = torch.randn(shape, generator=gen)
        return (t / t.norm(dim=0, keepdim=True)).to(dtype)
    if len(shape) >= 2:  # weights: variance-preserving scale keeps deep random nets finite
        fan_in = math.prod(shape[1:])
        return (torch.randn(shape, generator=gen) / math.sqrt(fan_in)).to(dtype)
    if len(shape) == 1 and key.endswith("weight"):  # norm scales
        return (1.0 + 0.1 * torch.randn(shape, generator=gen)).to(dtype)
    return (0.1 * torch.randn(shape, generator=gen)).to(dtype)


def build_state_dict(
    manifest: Mapping[str, Any],
    *,
    variant: str | None = None,
    shrink: Mapping[str, int] | None = None,
    blocks: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    seed: int = 0,
) -> OrderedDict[str, torch.Tensor]:
    """The state dict of the manifest's layout, random weights, saved key order, ``_metadata`` set."""
    tensors, versions = manifest_layout(manifest, variant)
    shrink = dict(shrink or {})
    blocks = dict(blocks or {})
    gen = torch.Generator().manual_seed(seed)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for prefix, block in blocks.items():
        extra = [k for k in block if prefix + k not in tensors]
        if extra:
            raise ValueError(f"tiny block {prefix!r} has keys the manifest lacks: {extra[:5]}")
    for key, spec in tensors.items():
        shape = list(spec["shape"])
        block_prefix = next((p for p in blocks if key.startswith(p)), None)
        if block_prefix is not None:
            sub = key[len(block_prefix) :]
            if sub.endswith("embeddings.position_ids") and sub not in blocks[block_prefix]:
                pos = next(v for k, v in blocks[block_prefix].items() if k.endswith("position_embeddings.weight")
                           or k.endswith("position_embedding.weight"))
                shape = [1, int(pos.shape[0])]
            elif sub in blocks[block_prefix]:
                shape = list(blocks[block_prefix][sub].shape)
            else:
                continue  # a layer the tiny config does not have
        if key in shrink:
            dim = spec.get("shrink_dim")
            if dim is None:
                raise ValueError(f"manifest does not allow shrinking {key!r}")
            shape[dim] = int(shrink.pop(key))
        out[key] = _init(key, spec, shape, gen)
    if shrink:
        raise KeyError(f"shrink names keys not in the layout: {sorted(shrink)}")
    meta: OrderedDict[str, Any] = OrderedDict()
    for path, version in versions.items():
        meta[path] = {"version": int(version)}
    out._metadata = meta  # type: ignore[attr-defined]
    return out


def write_checkpoint(
    manifest: Mapping[str, Any] | str | Path,
    out: str | Path,
    *,
    variant: str | None = None,
    shrink: Mapping[str, int] | None = None,
    blocks: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    seed: int = 0,
    top_level: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint file in the manifest's exact layout (``torch.save``); returns its path.

    ``top_level`` overrides entries of the wrapper dict (e.g. ``{"arch": "resnet50"}``).
    """
    if not isinstance(manifest, Mapping):
        manifest = load_manifest(manifest)
    out = Path(out)
    if shrink and "shrink" not in out.name:
        raise ValueError(f"{out.name}: files with shrunk queues must say so in their name (contain 'shrink')")
    state = build_state_dict(manifest, variant=variant, shrink=shrink, blocks=blocks, seed=seed)
    location = manifest.get("state_dict_location")
    if location is None:
        obj: Any = state
    else:
        example = manifest.get("top_level_example", {})
        obj = {}
        for key in manifest["top_level"]:
            obj[key] = state if key == location else example.get(key)
        obj.update(top_level or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, out)
    return out
