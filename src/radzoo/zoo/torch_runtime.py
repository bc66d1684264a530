"""Execution backends behind ``ZooModel.embed``: torch here, onnxruntime in ``radzoo.onnx``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch

from radzoo.nets.base import EncoderNet


class Runtime(Protocol):
    """An execution backend. ``name`` says which; ``reason`` says why it was picked;
    ``precision`` what arithmetic it runs (``fp32``, ``bf16``, ``fp16`` or ``int8``)."""

    name: str
    reason: str
    precision: str

    def run(self, batch: np.ndarray, output: str) -> np.ndarray:
        """Preprocessed batch ``[N, C, H, W]`` float32 -> embeddings ``[N, D]`` float32."""
        ...


def _channels_last_format(net: EncoderNet) -> torch.memory_format | None:
    """``channels_last`` for 2D conv nets, ``channels_last_3d`` for 3D ones (graph-CT), else None."""
    ranks = {p.dim() for p in net.parameters()}
    if 4 in ranks and 5 not in ranks:
        return torch.channels_last
    if 5 in ranks and 4 not in ranks:
        return torch.channels_last_3d
    return None


class TorchRuntime:
    """Torch in inference mode on the model's device.

    ``precision="bf16"`` (CPU) runs under ``torch.autocast`` with bfloat16, which oneDNN maps to
    AVX512-BF16 / AMX instructions; ``"fp16"`` (CUDA) under autocast with float16. Reduced
    precision and every CUDA run use the channels-last memory format, which oneDNN and cuDNN
    convolutions prefer. Outputs are always float32.
    """

    name = "torch"

    def __init__(self, net: EncoderNet, device: torch.device, reason: str = "default", precision: str = "fp32") -> None:
        self.net = net
        self.device = device
        self.reason = reason
        self.precision = precision
        self.memory_format = _channels_last_format(net) if precision != "fp32" or device.type == "cuda" else None
        if self.memory_format is not None:
            net.to(memory_format=self.memory_format)

    def __repr__(self) -> str:
        return f"TorchRuntime(device={self.device}, precision={self.precision})"

    @contextlib.contextmanager
    def _mode(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.precision in ("bf16", "fp16"):
                dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
                with torch.autocast(self.device.type, dtype=dtype):
                    yield
            else:
                yield

    def _input(self, batch: Any) -> torch.Tensor:
        x = torch.as_tensor(batch, dtype=torch.float32).to(self.device, non_blocking=True)
        if self.memory_format is torch.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        elif self.memory_format is torch.channels_last_3d and x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x

    def run(self, batch: np.ndarray | torch.Tensor, output: str) -> np.ndarray:
        x = self._input(batch)
        with self._mode():
            out = self.net.image_features(x, output)
        return out.float().cpu().numpy()

    def encode_patches(self, patches: Any) -> np.ndarray:
        """graph-CT: ``[N, 1, 32, 32, 32]`` normalised patches -> ``[N, 128]``."""
        x = self._input(patches)
        with self._mode():
            out = self.net.encode_patches(x)
        return out.float().cpu().numpy()

    def encode_graph(self, patch_embeddings: Any, edge_index: Any) -> np.ndarray:
        """graph-CT: node embeddings from patch embeddings and ``edge_index [2, E]`` (always fp32:
        the GCN is a few small matrix products)."""
        feats = torch.as_tensor(patch_embeddings, dtype=torch.float32).to(self.device)
        edges = torch.as_tensor(edge_index, dtype=torch.int64).to(self.device)
        with torch.inference_mode():
            out = self.net.encode_graph(feats, edges)
        return out.float().cpu().numpy()
