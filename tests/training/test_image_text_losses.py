"""LoVT and PRIOR losses: hand-computed values on tiny tensors, and equality with an independent
plain-torch transcription of the ORIGINAL code's formula (lovt local_alignment.py /
global_alignment.py; PRIOR prior.py, spb.py, decoders/image.py) in float64."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from radzoo.training.losses import (
    gumbel_prototypes,
    hungarian_columns,
    identity_positive_weights,
    image_recon_l1,
    intra_report_info_nce,
    local_intra_sample_contrastive,
    nt_xent_cross_modal,
    prototype_kl,
    simsiam_loss,
    spatial_positive_weights,
    spg_loss,
)


def _rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------ LoVT: the original


def _lovt_original_local(zl_a, zl_b, binary_mask, weights, structure, threshold, relative, smooth, lam, temp):
    """lovt LocalIntraSampleContrastiveLoss.forward with negatives_from_same_modality=False,
    normalize_by_num_negatives=False, cross_sample_negatives=False, transcribed step by step."""
    b, n, _ = zl_a.shape
    if isinstance(structure, int):
        coords = torch.arange(structure).double()
        if relative:
            coords = coords / structure
        distances = (coords[:, None] - coords).abs()
    else:
        h, w = structure
        coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).double().view(2, -1).T
        if relative:
            coords = coords / math.sqrt(h**2 + w**2)
        distances = torch.cdist(coords, coords)
    pos_mask = distances <= threshold
    pos_weights = pos_mask * torch.exp(-lam * distances) if smooth else pos_mask.double()
    weights = zl_a.new_ones(b, n) if weights is None else weights
    if binary_mask is not None:
        weights = binary_mask * weights
        additive = torch.zeros(b, n, dtype=torch.float64).masked_fill(~binary_mask, float("-inf"))
    else:
        additive = zl_a.new_zeros(b, n)
    weights = weights / weights.sum(dim=1, keepdim=True)
    pos_weights = pos_weights[:n, :n].view(1, n, n).expand(b, n, n)
    if binary_mask is not None:
        pos_weights = pos_weights * binary_mask[:, None, :]
    pos_weights = pos_weights / pos_weights.sum(-1, keepdim=True).clamp_min(1e-12)
    zl_a, zl_b = F.normalize(zl_a, dim=-1), F.normalize(zl_b, dim=-1)
    all_ab = torch.bmm(zl_a, zl_b.transpose(-1, -2)) / temp
    all_ba = all_ab.transpose(-1, -2)
    pos_ab, pos_ba = pos_weights * all_ab, pos_weights * all_ba
    all_ab = all_ab + additive[:, None, :]
    all_ba = all_ba + additive[:, None, :]
    loss_ab = (weights * (-pos_ab.sum(-1) + torch.logsumexp(all_ab, dim=-1))).sum(-1).mean()
    loss_ba = (weights * (-pos_ba.sum(-1) + torch.logsumexp(all_ba, dim=-1))).sum(-1).mean()
    return loss_ab, loss_ba


def test_lovt_local_loss_by_hand():
    # B=1, N=2, T=1, identity positives: scores_ab = [[1, 1], [0, 0]]
    za = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    zb = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    l2att, att2l = local_intra_sample_contrastive(za, zb, identity_positive_weights(2).double(), temperature=1.0)
    assert l2att.item() == pytest.approx(math.log(2), abs=1e-12)  # both rows: log 2
    assert att2l.item() == pytest.approx(math.log(1 + math.e) - 0.5, abs=1e-12)
    # element weights (e.g. attention-pool weights) are normalised: [3, 1] -> [0.75, 0.25]
    l2att_w, att2l_w = local_intra_sample_contrastive(
        za, zb, identity_positive_weights(2).double(), temperature=1.0, weights=torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    )
    assert att2l_w.item() == pytest.approx(0.75 * (math.log(1 + math.e) - 1) + 0.25 * math.log(1 + math.e), abs=1e-12)


def test_lovt_spatial_positives_by_hand():
    w = spatial_positive_weights(2, 2)  # diagonal sqrt(8): neighbours at 0.354, opposite corner at 0.5
    d1, d2 = 1 / math.sqrt(8), math.sqrt(2) / math.sqrt(8)
    expected = torch.tensor([[1, math.exp(-d1), math.exp(-d1), math.exp(-d2)]], dtype=torch.float32)
    torch.testing.assert_close(w[0:1], expected)
    w3 = spatial_positive_weights(3, 3)
    assert w3[0, 8] == 0  # corner to corner: sqrt(8)/sqrt(18) = 0.67 > 0.5, not a positive
    assert w3[0, 4] == pytest.approx(math.exp(-math.sqrt(2) / math.sqrt(18)))


@pytest.mark.parametrize("seed", [0, 1])
def test_lovt_local_loss_equals_the_original_image_side(seed):
    za, zb = _rand(3, 9, 5, seed=seed), _rand(3, 9, 5, seed=seed + 10)
    weights = torch.softmax(_rand(3, 9, seed=seed + 20), dim=-1)
    ours = local_intra_sample_contrastive(za, zb, spatial_positive_weights(3, 3).double(), 0.3, None, weights)
    original = _lovt_original_local(za, zb, None, weights, (3, 3), 0.5, True, True, 1.0, 0.3)
    for a, b in zip(ours, original, strict=True):  # our positive weights are a float32 buffer
        assert a.item() == pytest.approx(b.item(), rel=1e-7)


def test_lovt_local_loss_equals_the_original_report_side_with_padding():
    za, zb = _rand(3, 4, 5, seed=3), _rand(3, 4, 5, seed=4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    weights = torch.softmax(_rand(3, 4, seed=5).masked_fill(~mask, float("-inf")), dim=-1)
    ours = local_intra_sample_contrastive(za, zb, identity_positive_weights(4).double(), 0.3, mask, weights)
    original = _lovt_original_local(za, zb, mask, weights, 512, 0.0, False, False, 1.0, 0.3)
    for a, b in zip(ours, original, strict=True):
        assert a.item() == pytest.approx(b.item(), abs=1e-12) and math.isfinite(a.item())
    # padded elements never contribute: changing them changes nothing
    za2 = za.clone()
    za2[1, 2:] = 100.0
    again = local_intra_sample_contrastive(za2, zb, identity_positive_weights(4).double(), 0.3, mask, weights)
    assert again[0].item() == pytest.approx(ours[0].item(), abs=1e-12)


def test_lovt_global_loss_equals_the_original_logits_layout():
    """lovt GlobalNceLoss (negatives_from_same_modality=False): [positive | other modality with the
    diagonal at -inf], cross-entropy against column 0."""
    a, b = _rand(5, 4, seed=6), _rand(5, 4, seed=7)
    t = 0.1
    za, zb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    both = torch.cat([za, zb])
    scores = both @ both.t() / t
    pos = scores[:5, 5:].diagonal()
    losses = []
    for block in (scores[:5, 5:], scores[5:, :5]):
        logits = torch.empty(5, 6, dtype=torch.float64)
        logits[:, 0] = pos
        logits[:, 1:] = block
        logits[:, 1:].diagonal().fill_(float("-inf"))
        losses.append(F.cross_entropy(logits, torch.zeros(5, dtype=torch.long)))
    total, parts = nt_xent_cross_modal(a, b, t, 0.75, 0.25)
    assert parts["a2b"].item() == pytest.approx(losses[0].item(), abs=1e-12)
    assert parts["b2a"].item() == pytest.approx(losses[1].item(), abs=1e-12)
    assert total.item() == pytest.approx(0.75 * losses[0].item() + 0.25 * losses[1].item(), abs=1e-12)


# ----------------------------------------------------------------------------------- PRIOR


class _Identity(nn.Module):
    def forward(self, x):
        return x


def test_prior_simsiam_by_hand_and_stop_gradient():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    loss = simsiam_loss(x, y, _Identity())
    c = 1 / math.sqrt(2)  # cos(x0, y0); cos(x1, y1) = 1
    assert loss.item() == pytest.approx(-((c + 1) / 2 + (c + 1) / 2) / 2, abs=1e-12)
    # the original's formula: -(cos(p(x), sg(y)).mean() + cos(p(y), sg(x)).mean()) / 2, any predictor
    pred = nn.Linear(2, 2).double()
    ours = simsiam_loss(x, y, pred)
    ref = -(F.cosine_similarity(pred(x), y.detach(), dim=-1).mean() + F.cosine_similarity(pred(y), x.detach(), dim=-1).mean()) * 0.5
    assert ours.item() == pytest.approx(ref.item(), abs=1e-12)
    gy = torch.autograd.grad(simsiam_loss(x, y, _Identity()), y)[0]
    gy_ref = torch.autograd.grad(-(F.cosine_similarity(y, x.detach(), dim=-1).mean()) * 0.5, y)[0]
    torch.testing.assert_close(gy, gy_ref)  # y gets gradient only through p(y), never as a target


def test_prior_intra_report_info_nce_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    scale = 2.0
    # logits_per_image = scale * v @ s.T = [[2, 0], [2, 0]]; logits_per_text = its transpose
    row = [-(2 - math.log(math.exp(2) + 1)), -(0 - math.log(math.exp(2) + 1))]
    col = [-(2 - math.log(math.exp(2) + math.exp(2))), -(0 - math.log(2))]
    expected = (sum(row) / 2 + sum(col) / 2) / 2
    assert intra_report_info_nce(s, v, scale).item() == pytest.approx(expected, abs=1e-12)


def test_prior_gumbel_prototypes_equal_the_spb_formula():
    x, bank = _rand(4, 3, seed=8), _rand(5, 3, seed=9)
    torch.manual_seed(123)
    out, loss, ind, logits = gumbel_prototypes(x, bank, tau=0.9)
    torch.manual_seed(123)  # SPB.forward: gumbel noise -log(Exp(1)), softmax((logits + g) / tau)
    dist = x @ bank.T
    gumbels = -torch.empty_like(dist).exponential_().log()
    soft = ((dist + gumbels) / 0.9).softmax(dim=1)
    torch.testing.assert_close(logits, dist)
    torch.testing.assert_close(out, soft @ bank)
    assert loss.item() == pytest.approx((soft @ bank - x).abs().mean().item(), abs=1e-12)
    assert torch.equal(ind, soft.argmax(1))


def test_prior_kl_by_hand():
    bank = torch.eye(2, dtype=torch.float64)
    generated = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # q = softmax([0, 1])
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # p = softmax([1, 0])
    p = [math.e / (1 + math.e), 1 / (1 + math.e)]
    q = [1 / (1 + math.e), math.e / (1 + math.e)]
    assert prototype_kl(generated, bank, target).item() == pytest.approx(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)), abs=1e-12)


def test_prior_hungarian_spg_keeps_the_original_reordering():
    targets = torch.tensor([[[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]]], dtype=torch.float64)
    generated = torch.tensor([[[5.0, 5.0], [10.0, 10.0], [0.0, 0.0]]], dtype=torch.float64)
    cols = hungarian_columns(generated[0], targets[0])
    # independent check of the assignment: brute force over all permutations of the L1 cost
    cost = torch.cdist(generated[0], targets[0], p=1)
    best = min(itertools.permutations(range(3)), key=lambda p: sum(cost[i, p[i]].item() for i in range(3)))
    assert list(cols) == list(best) == [1, 2, 0]  # a 3-cycle: its own inverse it is not
    mask = torch.tensor([[True, True, False]])
    loss, kept = spg_loss(generated, targets, mask)
    # prior.py: rearrange_logit = logit[inds[1]] -> rows [g1, g2, g0] against [t0, t1, t2]
    assert loss.item() == pytest.approx((10 + 10 + 5 + 5 + 5 + 5) / 6, abs=1e-12)
    assert len(kept) == 1 and torch.equal(kept[0], generated[0][[1, 2]])
    # an involution (a swap) reorders correctly and the loss vanishes
    swapped = targets[:, [1, 0, 2]]
    assert spg_loss(swapped, targets, mask)[0].item() == pytest.approx(0.0, abs=1e-12)


def _prior_spg_float64(generated: torch.Tensor, protos: torch.Tensor) -> tuple[float, list[list[int]]]:
    """prior.py's ``matching_label`` + ``spg_loss`` written out independently: L1 ``cdist`` in the
    inputs' dtype, scipy's assignment, ``logit[inds[1]]`` against the prototypes, batch mean."""
    from scipy.optimize import linear_sum_assignment

    total, cols = 0.0, []
    for logit, proto in zip(generated, protos, strict=True):
        inds = linear_sum_assignment(torch.cdist(logit, proto, p=1).numpy())
        total += (logit[torch.as_tensor(inds[1])] - proto).abs().mean().item()
        cols.append(list(inds[1]))
    return total / len(generated), cols


def test_prior_spg_matching_keeps_the_input_dtype_on_padded_ties():
    """Two real prototypes and two zero-padded slots, which tie exactly for every generated row.
    The float64 costs differ from each other by ~1e-12; rounded to float32 they tie and scipy picks
    another assignment (checked here, so the case stays discriminating), which through the
    original's ``logit[inds[1]]`` re-ordering gives another loss. radzoo must match float64."""
    from scipy.optimize import linear_sum_assignment

    d = 1e-12
    protos = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    generated = torch.tensor([[[2 + d, 1.0], [-d, d], [2 - d, 1 - d], [1 + d, 1.0]]], dtype=torch.float64)
    want_loss, want_cols = _prior_spg_float64(generated, protos)
    cast_cols = list(linear_sum_assignment(torch.cdist(generated[0].float(), protos[0].float(), p=1).numpy())[1])
    assert cast_cols != want_cols[0]  # a float32 cost would pick another tied slot
    cast_loss = (generated[0][torch.as_tensor(cast_cols)] - protos[0]).abs().mean().item()
    assert abs(cast_loss - want_loss) > 0.1  # ... and another loss

    assert list(hungarian_columns(generated[0], protos[0])) == want_cols[0]
    mask = torch.tensor([[True, True, False, False]])
    loss, kept = spg_loss(generated, protos, mask)
    assert loss.dtype == torch.float64 and loss.item() == pytest.approx(want_loss, abs=1e-15)
    assert torch.equal(kept[0], generated[0][torch.as_tensor(want_cols[0][:2])])
    # float32 inputs: the cost is float32, as the original computes it for float32 tensors
    g32, p32 = generated.float(), protos.float()
    want32, cols32 = _prior_spg_float64(g32, p32)
    assert list(hungarian_columns(g32[0], p32[0])) == cols32[0]
    assert spg_loss(g32, p32, mask)[0].item() == pytest.approx(want32, abs=1e-6)


def test_prior_image_reconstruction_l1():
    rec = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    image = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)
    # align_corners bilinear 4x4 -> 2x2 keeps the four corners: 0, 3, 12, 15
    assert image_recon_l1(rec, image).item() == pytest.approx((0 + 3 + 12 + 15) / 4, abs=1e-12)
    same = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    assert image_recon_l1(same, same).item() == 0.0


def test_prior_global_loss_equals_the_original_per_rank_layout():
    """prior.py global_alignment_loss at world size 2: each rank's image rows against ALL gathered
    texts (labels offset by rank), averaged over ranks by DDP; radzoo's full-batch clip_loss over
    the gathered batch is the same number (and, with the world-size-scaled local gradient, the
    same gradient)."""
    from radzoo.training.losses import clip_loss

    img, txt = _rand(6, 4, seed=11), _rand(6, 4, seed=12)
    scale = math.exp(math.log(1 / 0.01)) / 10  # a moderate scale keeps the numbers readable
    img_n, txt_n = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    per_rank = []
    for rank in range(2):
        rows = slice(3 * rank, 3 * rank + 3)
        labels = 3 * rank + torch.arange(3)
        li = scale * img_n[rows] @ txt_n.t()
        lt = scale * txt_n[rows] @ img_n.t()
        per_rank.append((F.cross_entropy(li, labels) + F.cross_entropy(lt, labels)) / 2)
    assert clip_loss(img, txt, scale).item() == pytest.approx(sum(per_rank).item() / 2, abs=1e-12)


def test_prior_text_local_and_kl_equal_the_original_formulas():
    s, v = _rand(5, 4, seed=13), _rand(5, 4, seed=14)
    scale = 7.0
    # prior.py text_local_loss_fn, transcribed
    a, b = F.normalize(s, dim=-1, p=2), F.normalize(v, dim=-1, p=2)
    lbl = torch.arange(5)
    ref = (F.cross_entropy(scale * b @ a.t(), lbl) + F.cross_entropy(scale * a @ b.t(), lbl)) / 2
    assert intra_report_info_nce(s, v, scale).item() == pytest.approx(ref.item(), abs=1e-12)
    # spb.py cal_loss: KL(softmax(gt) || softmax(gen E^T)), batchmean, written out as sums
    bank, gen, gt = _rand(6, 4, seed=15), _rand(5, 4, seed=16), _rand(5, 6, seed=17)
    p = torch.softmax(gt, dim=-1)
    q = torch.softmax(gen @ bank.t(), dim=-1)
    expected = (p * (p.log() - q.log())).sum() / 5
    assert prototype_kl(gen, bank, gt).item() == pytest.approx(expected.item(), abs=1e-12)
