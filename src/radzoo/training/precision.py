"""Mixed precision: bf16 autocast on CPU and GPU, fp16 autocast with a GradScaler on GPU.

``precision`` is one of ``32`` (plain fp32), ``bf16``, ``fp16`` or ``auto``. ``auto`` is the
method's paper setting where the hardware has it (LoVT and PRIOR trained with native fp16 AMP,
``precision: 16``; MoCo-CXR in fp32) and fp32 on CPU, where fp16 autocast does not exist. Master
weights and optimiser state stay fp32 in every mode (``torch.autocast`` semantics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from radzoo.errors import InputError

PRECISIONS = ("auto", "32", "bf16", "fp16")


def resolve_precision(requested: str, device: torch.device, paper: str = "32") -> str:
    """The concrete precision (``32``, ``bf16`` or ``fp16``) for ``device``; ``paper`` is what
    ``auto`` means on a GPU."""
    requested = str(requested).lower()
    aliases = {"fp32": "32", "32-true": "32", "16": "fp16", "16-mixed": "fp16", "bf16-mixed": "bf16"}
    requested = aliases.get(requested, requested)
    if requested not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "auto":
        return paper if device.type == "cuda" else "32"
    if requested == "fp16" and device.type != "cuda":
        raise InputError(
            f"precision=fp16 needs a CUDA device (fp16 autocast with a GradScaler); on {device.type} use bf16 or 32"
        )
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("precision=bf16: this GPU does not support bfloat16; use fp16 or 32")
    return requested


class Precision:
    """Autocast context, loss scaling and the optimiser step for one precision on one device."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.name = precision
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16") if device.type == "cuda" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None and self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """One optimiser step; returns False when fp16 loss scaling skipped it (inf/NaN gradients)."""
        if self.scaler is not None and self.scaler.is_enabled():
            before = self.scaler.get_scale()
            self.scaler.step(optimizer)
            self.scaler.update()
            return self.scaler.get_scale() >= before
        optimizer.step()
        return True

    def state_dict(self) -> dict[str, Any]:
        if self.scaler is not None and self.scaler.is_enabled():
            return {"scaler": dict(self.scaler.state_dict())}
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
