"""Strict state-dict checks and safetensors I/O: the only way weights enter a zoo network."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
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
    cast = OrderedDict((k, v.to(target[k].dtype)) for k, v in state.items())
    # Module versions (state_dict._metadata) are not stored in safetensors; the keys and shapes
    # were just checked against this very module, so its own versions apply (torchvision's
    # MNASNet refuses a dict without them, METHODS 0.4).
    cast._metadata = getattr(state, "_metadata", None) or target._metadata  # type: ignore[attr-defined]
    module.load_state_dict(cast, strict=True)


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
