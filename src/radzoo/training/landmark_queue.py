"""graph-CT's location-conditioned negatives: one MoCo queue per atlas landmark (METHODS 5.4).

batmanlab/Context_Aware_SSL: model/builder_patch.py keeps ``queue`` as ``[dim, K, num_locations]``
(L2-normalised along ``dim`` at init) and ``queue_ptr`` as ``[num_locations]``. A batch of
patches from landmark ``l`` is contrasted only with ``queue[:, :, l]`` (keys of the same landmark
from other subjects), then its keys (gathered over all processes) replace the oldest ``B`` columns
of that landmark's queue. The other landmarks' queues do not move.

Kept: the layout (so resume state and a converted original checkpoint have the same shape),
the init, the per-landmark pointers. Changed: the pointer wraps around instead of asserting
``K % B == 0`` (as ``radzoo.training.momentum.NegativeQueue`` does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LandmarkQueue(nn.Module):
    """``queue [dim, K, landmarks]`` and ``ptr [landmarks]``: per-landmark FIFO rings of negatives."""

    queue: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, dim: int, size: int, landmarks: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if min(dim, size, landmarks) < 1:
            raise ValueError(f"queue dim, size and landmarks must be >= 1, got {dim}, {size}, {landmarks}")
        init = torch.randn(dim, size, landmarks, generator=generator)
        self.register_buffer("queue", F.normalize(init, dim=0))
        self.register_buffer("ptr", torch.zeros(landmarks, dtype=torch.long))

    @property
    def size(self) -> int:
        return int(self.queue.shape[1])

    @property
    def landmarks(self) -> int:
        return int(self.queue.shape[2])

    def negatives(self, landmark: int) -> torch.Tensor:
        """``[K, dim]``: a detached copy of landmark ``landmark``'s negatives (``queue[:, :, l].T``)."""
        self._check(landmark)
        return self.queue[:, :, landmark].t().detach().clone()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, landmark: int) -> None:
        """Write ``keys [B, dim]`` (all processes' keys) into landmark ``landmark``'s ring."""
        self._check(landmark)
        if keys.ndim != 2 or keys.shape[1] != self.queue.shape[0]:
            raise ValueError(f"keys must be [B, {self.queue.shape[0]}], got {tuple(keys.shape)}")
        keys = keys.detach().to(self.queue.dtype)
        start = int(self.ptr[landmark])
        if keys.shape[0] > self.size:  # only the newest K survive a batch larger than the queue
            start += keys.shape[0] - self.size
            keys = keys[-self.size :]
        idx = (start + torch.arange(keys.shape[0], device=self.queue.device)) % self.size
        self.queue[:, idx, landmark] = keys.t()
        self.ptr[landmark] = (start + keys.shape[0]) % self.size

    def _check(self, landmark: int) -> None:
        if not 0 <= int(landmark) < self.landmarks:
            raise IndexError(f"landmark {landmark} outside 0..{self.landmarks - 1}")
