"""Contrastive objectives shared by the pretraining methods, written as small functions + modules.

* :func:`moco_info_nce`: MoCo InfoNCE, one positive key per query and a queue of negatives
  (METHODS 1.4).
* :func:`clip_loss` / :class:`CLIPLoss`: symmetric image-text cross-entropy with a learnable
  logit scale stored as ``log(1/T)`` (PRIOR 3.4 global loss, IGCL 4.4).
* :func:`nt_xent_cross_modal` / :class:`CrossModalNTXent`: LoVT's global NT-Xent, negatives from
  the other modality only, with separate ``a2b`` / ``b2a`` weights (METHODS 2.4).
* :func:`local_intra_sample_contrastive` with :func:`spatial_positive_weights` /
  :func:`identity_positive_weights`: LoVT's ``LocalIntraSampleContrastiveLoss`` (METHODS 2.4).
* PRIOR (METHODS 3.4, ``prior.py``): :func:`simsiam_loss`, :func:`intra_report_info_nce`,
  :func:`gumbel_prototypes` (the SPB in training, with its L1 reconstruction loss),
  :func:`prototype_kl`, :func:`hungarian_columns` + :func:`spg_loss`, :func:`image_recon_l1`.

All of them return scalar means; nothing here gathers across processes (callers pass
``distributed.gather_global_batch`` outputs to the batch-level losses).
"""

from __future__ import annotations

import math

import numpy as np
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


# --------------------------------------------------------------------------------- LoVT local


def spatial_positive_weights(
    height: int, width: int, threshold: float = 0.5, smooth: bool = True, smooth_lambda: float = 1.0
) -> torch.Tensor:
    """LoVT's image-side positives ``[H*W, H*W]`` (relative threshold, ``smooth_weights``).

    Region coordinates (row-major ``(h, w)``) are divided by the grid diagonal
    ``sqrt(H^2 + W^2)``; regions within distance ``threshold`` (0.5) are positives, weighted by
    ``exp(-lambda * distance)``. Rows are normalised later, per sample, after masking.
    """
    hh, ww = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([hh, ww]).float().view(2, -1).t() / math.sqrt(height**2 + width**2)
    dist = torch.cdist(coords, coords)
    positive = dist <= threshold
    return positive * torch.exp(-smooth_lambda * dist) if smooth else positive.float()


def identity_positive_weights(n: int) -> torch.Tensor:
    """LoVT's report-side positives: absolute threshold 0, so only the sentence itself."""
    return torch.eye(n)


def local_intra_sample_contrastive(
    z_local: torch.Tensor,
    z_attended: torch.Tensor,
    positive_weights: torch.Tensor,
    temperature: float = 0.3,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LoVT ``LocalIntraSampleContrastiveLoss`` (negatives only from the same sample and the other
    "modality", no normalisation by the number of negatives): returns ``(l2att, att2l)``.

    ``z_local`` / ``z_attended``: ``[B, N, d]`` local embeddings and their cross-attended
    counterparts; ``positive_weights``: ``[N, N]``; ``mask``: ``[B, N]`` True for real elements;
    ``weights``: ``[B, N]`` per-element weights (LoVT: the attention-pool weights, detached).
    For anchor ``i`` the loss is ``-sum_j w+_ij s_ij + logsumexp_j s_ij`` over real ``j``, with
    ``s = cos / T`` and ``w+`` the row-normalised, column-masked positive weights; elements are
    weighted by the normalised ``weights``, summed, and averaged over the batch.
    """
    if z_local.shape != z_attended.shape or z_local.ndim != 3:
        raise ValueError(f"local embeddings must both be [B, N, d]; got {tuple(z_local.shape)} and {tuple(z_attended.shape)}")
    b, n, _ = z_local.shape
    if positive_weights.shape != (n, n):
        raise ValueError(f"positive weights must be [{n}, {n}], got {tuple(positive_weights.shape)}")
    w = z_local.new_ones(b, n) if weights is None else weights.to(z_local.dtype)
    pos = positive_weights.to(z_local.dtype).expand(b, n, n)
    if mask is not None:
        w = w * mask.to(w.dtype)
        pos = pos * mask[:, None, :].to(pos.dtype)
    w = w / w.sum(dim=1, keepdim=True)
    pos = pos / pos.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    a = F.normalize(z_local, dim=-1)
    att = F.normalize(z_attended, dim=-1)
    scores_ab = torch.bmm(a, att.transpose(1, 2)) / temperature
    scores_ba = scores_ab.transpose(1, 2)
    pos_ab = (pos * scores_ab).sum(-1)
    pos_ba = (pos * scores_ba).sum(-1)
    if mask is not None:
        pad = ~mask[:, None, :]
        scores_ab = scores_ab.masked_fill(pad, float("-inf"))
        scores_ba = scores_ba.masked_fill(pad, float("-inf"))
    loss_ab = (w * (torch.logsumexp(scores_ab, dim=-1) - pos_ab)).sum(-1).mean()
    loss_ba = (w * (torch.logsumexp(scores_ba, dim=-1) - pos_ba)).sum(-1).mean()
    return loss_ab, loss_ba


# ------------------------------------------------------------------------------------- PRIOR


def simsiam_loss(x: torch.Tensor, y: torch.Tensor, predictor: nn.Module) -> torch.Tensor:
    """PRIOR's image-side local loss: ``-(cos(p(x), sg(y)) + cos(p(y), sg(x))) / 2``, means over tokens."""
    px, py = predictor(x), predictor(y)
    return -(F.cosine_similarity(px, y.detach(), dim=-1).mean() + F.cosine_similarity(py, x.detach(), dim=-1).mean()) * 0.5


def intra_report_info_nce(sentences: torch.Tensor, attended: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """PRIOR's text-side local loss: InfoNCE among the sentences of ONE report (``[S, d]`` each),
    both directions averaged, logits scaled by ``exp(local_logit_scale)``."""
    a = F.normalize(sentences, dim=-1)
    b = F.normalize(attended, dim=-1)
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(scale * b @ a.t(), labels) + F.cross_entropy(scale * a @ b.t(), labels)) / 2


def gumbel_prototypes(
    x: torch.Tensor, prototypes: torch.Tensor, tau: float = 0.9
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PRIOR's sentence prototype bank in training (``SPB.forward``).

    ``logits = x E^T``; soft assignment ``gumbel_softmax(logits, tau, hard=False)`` (noise from the
    global RNG); output = assignment @ E. Returns ``(output, L1 reconstruction loss
    mean|output - x|, prototype index (argmax), logits)``; the logits are the "ground truth"
    distribution of :func:`prototype_kl`.
    """
    logits = x @ prototypes.t()
    soft = F.gumbel_softmax(logits, tau=tau, dim=1, hard=False)
    out = soft @ prototypes
    return out, (out - x).abs().mean(), soft.argmax(1), logits


def prototype_kl(generated: torch.Tensor, prototypes: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """PRIOR ``SPB.cal_loss``: ``KL(softmax(target) || softmax(generated E^T))``, batch mean."""
    log_pred = F.log_softmax(generated @ prototypes.t(), dim=-1)
    log_target = F.log_softmax(target_logits, dim=-1)
    return F.kl_div(log_pred, log_target, reduction="batchmean", log_target=True)


def hungarian_columns(outputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """``linear_sum_assignment`` on the L1 cost ``cdist(outputs, targets, p=1)``: the target column
    assigned to each output row (rows come back sorted, so this is indexed by output row).

    As in ``prior.py`` (``matching_label``) the cost is computed in the inputs' dtype: zero-padded
    target slots tie exactly, and rounding the cost to another precision changes which tied slot
    wins and so, through the re-ordering, the loss. Widening to float64 for scipy (which solves in
    float64 anyway) is exact."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(outputs.detach(), targets.detach(), p=1).cpu().double().numpy()
    _, cols = linear_sum_assignment(cost)
    return cols


def spg_loss(
    generated: torch.Tensor, prototypes: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """PRIOR's sentence prototype generation loss (``Prior.spg_loss``), unweighted.

    Per report: Hungarian matching of the ``Q`` generated vectors to the ``Q`` (zero-padded)
    target prototypes, then the L1 loss over all ``Q`` slots, padding included; averaged over
    the batch. As in the original, the generated rows are re-ordered as ``generated[cols]``
    (``cols`` = the target assigned to each output row), which is the inverse of the assignment's
    permutation unless that permutation is its own inverse. Also returns each report's first
    ``len`` re-ordered rows (``len`` = its real sentences), the input of the KL and GPA terms.
    """
    total = generated.new_zeros(())
    kept = []
    for gen, proto, m in zip(generated, prototypes, mask, strict=True):
        cols = torch.as_tensor(hungarian_columns(gen, proto), device=gen.device)
        arranged = gen[cols]
        total = total + F.l1_loss(arranged, proto)
        kept.append(arranged[: int(m.sum())])
    return total / generated.shape[0], kept


def image_recon_l1(reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """PRIOR ``ImageDecoder.loss_fn``: L1 to the input image, resized (bilinear, align_corners)
    to the decoder's output size when they differ."""
    if image.shape[-2:] != reconstruction.shape[-2:]:
        image = F.interpolate(image, size=reconstruction.shape[-2:], mode="bilinear", align_corners=True)
    return F.l1_loss(reconstruction, image)
