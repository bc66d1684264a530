"""Strict state-dict checks and safetensors I/O: the only way weights enter a zoo network."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from radzoo.errors import ArtifactError, WeightsError


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise ``WeightsError`` naming every missing, unexpected and wrongly shaped key."""
    target = module.state_dict()
    missing = set(target) - set(state)
    unexpected = set(state) - set(target)
    mismatched = [
        (k, tuple(state[k].shape), tuple(target[k].shape))
        for k in set(target) & set(state)
        if tuple(state[k].shape) != tuple(target[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise WeightsError(
            f"{what} does not match architecture {type(module).__name__}",
            missing=missing,
            unexpected=unexpected,
            mismatched=mismatched,
        )


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Check, then ``load_state_dict(strict=True)``; dtypes are cast to the module's."""
    check_state_dict(module, state, what)
    target = module.state_dict()
    module.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()}, strict=True)


def save_weights(module: nn.Module, path: Path) -> str:
    """Write the module's state dict as safetensors (contiguous CPU copies); return its sha256."""
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "producer": "radzoo"})
    return sha256_file(path)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning library errors into an ``ArtifactError`` naming the file."""
    if not path.is_file():
        raise ArtifactError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"corrupt or unreadable safetensors file {path}: {exc}") from exc


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
