"""Execution backends behind ``ZooModel.embed``: torch here, onnxruntime in ``radzoo.onnx``."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from radzoo.nets.base import EncoderNet


class Runtime(Protocol):
    """An execution backend. ``name`` says which; ``reason`` says why it was picked."""

    name: str
    reason: str

    def run(self, batch: np.ndarray, output: str) -> np.ndarray:
        """Preprocessed batch ``[N, C, H, W]`` float32 -> embeddings ``[N, D]`` float32."""
        ...


class TorchRuntime:
    """Eager torch in inference mode on the model's device."""

    name = "torch"

    def __init__(self, net: EncoderNet, device: torch.device, reason: str = "default") -> None:
        self.net = net
        self.device = device
        self.reason = reason

    def run(self, batch: np.ndarray | torch.Tensor, output: str) -> np.ndarray:
        x = torch.as_tensor(batch, dtype=torch.float32).to(self.device)
        with torch.inference_mode():
            out = self.net.image_features(x, output)
        return out.float().cpu().numpy()
