"""Projection heads: MoCo's MLP and LoVT's BatchNorm MLPs (global and per-token)."""

from __future__ import annotations

import torch
from torch import nn


def moco_mlp_head(dim: int, out_dim: int = 128) -> nn.Sequential:
    """MoCo v2 ``--mlp`` head: Linear(d, d) -> ReLU -> Linear(d, out); keys ``0.*`` and ``2.*``."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=False), nn.Linear(dim, out_dim))


class ProjectionMLP(nn.Module):
    """LoVT projection: before -> BatchNorm1d -> ReLU -> after (METHODS 2.1).

    ``per_token=True`` is LoVT's SequenceMLP: the same layers as ``Conv1d(k=1)`` over a token axis,
    so the weights have LoVT's ``[out, in, 1]`` shapes. Input ``[B, D]`` or ``[B, L, D]``.
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, per_token: bool = False) -> None:
        super().__init__()
        self.per_token = per_token
        layer = (lambda i, o: nn.Conv1d(i, o, kernel_size=1)) if per_token else nn.Linear
        self.projection_before = layer(d_in, d_hidden)
        self.norm = nn.BatchNorm1d(d_hidden)
        self.projection_after = layer(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_token:
            x = x.transpose(1, 2)  # [B, D, L]
            x = self.projection_after(torch.relu(self.norm(self.projection_before(x))))
            return x.transpose(1, 2)
        return self.projection_after(torch.relu(self.norm(self.projection_before(x))))
