"""Momentum (EMA) key encoders and the FIFO queue of negative keys (MoCo, METHODS 1.4).

Both are training state only: the exported artifact holds the query encoder alone, so neither
the key encoder nor the queue ever reaches ``model.safetensors``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, m: float) -> None:
    """``key = m * key + (1 - m) * query`` for every parameter, in place.

    As in MoCo, only parameters move; the key encoder's BatchNorm running statistics are its own
    (collected from the key batches in train mode). Both modules must have identical structure.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {m}")
    kp = list(key.parameters())
    qp = list(query.parameters())
    if len(kp) != len(qp):
        raise ValueError(f"key and query encoders differ: {len(kp)} vs {len(qp)} parameters")
    for pk, pq in zip(kp, qp, strict=True):
        if pk.shape != pq.shape:
            raise ValueError(
                f"key/query parameter shapes differ: {tuple(pk.shape)} vs {tuple(pq.shape)}"
            )
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


def make_key_encoder(query: nn.Module) -> nn.Module:
    """A deep copy of ``query`` with gradients off: MoCo's ``encoder_k`` at step 0."""
    import copy

    key = copy.deepcopy(query)
    for p in key.parameters():
        p.requires_grad_(False)
    return key


class NegativeQueue(nn.Module):
    """A FIFO ring buffer of ``size`` L2-normalised keys ``[K, D]`` (MoCo's ``queue``).

    Initialised like MoCo with normalised Gaussian vectors. ``enqueue`` overwrites the oldest
    rows and wraps around the end, so ``K`` need not be a multiple of the batch size (the
    original asserts it is). Buffers move with ``.to(device)`` and are saved in resume
    checkpoints, never in the exported encoder.
    """

    queue: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got size={size}, dim={dim}")
        init = torch.randn(size, dim, generator=generator)
        self.register_buffer("queue", F.normalize(init, dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return int(self.queue.shape[0])

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys [B, D]`` at the pointer (oldest first out), wrapping around the end."""
        if keys.ndim != 2 or keys.shape[1] != self.queue.shape[1]:
            raise ValueError(f"keys must be [B, {self.queue.shape[1]}], got {tuple(keys.shape)}")
        keys = keys.detach().to(self.queue.dtype)
        if keys.shape[0] > self.size:  # only the newest K survive a batch larger than the queue
            start = int(self.ptr) + keys.shape[0] - self.size
            keys = keys[-self.size :]
        else:
            start = int(self.ptr)
        idx = (start + torch.arange(keys.shape[0], device=self.queue.device)) % self.size
        self.queue[idx] = keys
        self.ptr.fill_((start + keys.shape[0]) % self.size)

    def forward(self) -> torch.Tensor:
        """A detached snapshot of the negatives (a copy: ``enqueue`` writes in place after the loss
        has used them, and autograd needs the values the loss saw)."""
        return self.queue.detach().clone()
