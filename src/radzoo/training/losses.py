"""Contrastive objectives shared by the pretraining methods, written as small functions + modules.

* :func:`moco_info_nce`: MoCo InfoNCE, one positive key per query and a queue of negatives
  (METHODS 1.4).
* :func:`clip_loss` / :class:`CLIPLoss`: symmetric image-text cross-entropy with a learnable
  logit scale stored as ``log(1/T)`` (PRIOR 3.4 global loss, IGCL 4.4).
* :func:`nt_xent_cross_modal` / :class:`CrossModalNTXent`: LoVT's global NT-Xent, negatives from
  the other modality only, with separate ``a2b`` / ``b2a`` weights (METHODS 2.4).

All of them return a scalar mean over the batch; nothing here gathers across processes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def moco_info_nce(
    q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo InfoNCE. ``q``, ``k``: ``[B, D]`` L2-normalised; ``negatives``: ``[K, D]``.

    Logits are ``[q.k+, q.negatives] / T`` (positive in column 0), cross-entropy against
    index 0. Returns ``(loss, logits [B, 1 + K])``; the caller must pass detached keys.
    """
    if q.ndim != 2 or q.shape != k.shape:
        raise ValueError(f"q and k must both be [B, D]; got {tuple(q.shape)} and {tuple(k.shape)}")
    if negatives.ndim != 2 or negatives.shape[1] != q.shape[1]:
        raise ValueError(f"negatives must be [K, {q.shape[1]}], got {tuple(negatives.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ negatives.t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels), logits


def clip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric CLIP loss of paired rows: ``(CE(s*a@b.T, i) + CE(s*b@a.T, i)) / 2``.

    ``a``, ``b``: ``[B, D]`` (normalised here); ``logit_scale``: the multiplier ``s = 1/T``
    itself (already exponentiated).
    """
    _check_pair(a, b)
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = logit_scale * (a @ b.t())
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


class CLIPLoss(nn.Module):
    """CLIP loss with a learnable temperature, stored like CLIP/PRIOR/IGCL as ``log(1/T)``.

    ``init_temperature`` 0.07 gives the CLIP/IGCL init (log scale 2.6593); 0.01 gives PRIOR's
    (scale 100, log 4.6052). The exponentiated scale is clamped at ``max_scale`` (CLIP's 100) so
    training cannot make the softmax arbitrarily sharp.
    """

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        if init_temperature <= 0:
            raise ValueError(f"init_temperature must be > 0, got {init_temperature}")
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / init_temperature), dtype=torch.float32)
        )
        self.max_scale = float(max_scale)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.max_scale)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return clip_loss(a, b, self.scale())


def nt_xent_cross_modal(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: float = 0.1,
    a2b_weight: float = 0.75,
    b2a_weight: float = 0.25,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LoVT ``GlobalNceLoss``: cosine similarities / T, negatives from the other modality only.

    ``a2b``: each row of ``a`` (image) must pick its own ``b`` (report) among all ``b`` of the
    batch; ``b2a`` the reverse. Total = ``a2b_weight * a2b + b2a_weight * b2a`` (LoVT: 0.75 / 0.25).
    Returns ``(total, {"a2b": ..., "b2a": ...})``.
    """
    _check_pair(a, b)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    a2b = F.cross_entropy(sim, labels)
    b2a = F.cross_entropy(sim.t(), labels)
    return a2b_weight * a2b + b2a_weight * b2a, {"a2b": a2b.detach(), "b2a": b2a.detach()}


class CrossModalNTXent(nn.Module):
    """:func:`nt_xent_cross_modal` with its hyperparameters bound (fixed temperature)."""

    def __init__(
        self, temperature: float = 0.1, a2b_weight: float = 0.75, b2a_weight: float = 0.25
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.a2b_weight = a2b_weight
        self.b2a_weight = b2a_weight

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return nt_xent_cross_modal(a, b, self.temperature, self.a2b_weight, self.b2a_weight)[0]


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"paired embeddings must both be [B, D]; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[0] < 2:
        raise ValueError(
            "a contrastive loss needs at least 2 pairs per batch (no negatives otherwise)"
        )
