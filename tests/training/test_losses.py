import math

import pytest
import torch
import torch.nn.functional as F

from radzoo.training.losses import (
    CLIPLoss,
    CrossModalNTXent,
    clip_loss,
    moco_info_nce,
    nt_xent_cross_modal,
)


def _unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def _ce(row: list[float], target: int) -> float:
    return -row[target] + math.log(sum(math.exp(v) for v in row))


def test_moco_info_nce_equals_hand_computation():
    q, k, neg = _unit(3, 4, seed=0), _unit(3, 4, seed=1), _unit(5, 4, seed=2)
    t = 0.2
    loss, logits = moco_info_nce(q, k, neg, t)
    expected = []
    for i in range(3):
        pos = sum(float(q[i, d] * k[i, d]) for d in range(4)) / t
        negs = [sum(float(q[i, d] * neg[j, d]) for d in range(4)) / t for j in range(5)]
        expected.append(_ce([pos, *negs], 0))
        assert logits[i, 0].item() == pytest.approx(pos, abs=1e-12)
    assert logits.shape == (3, 6)
    assert loss.item() == pytest.approx(sum(expected) / 3, abs=1e-12)


def test_moco_info_nce_rejects_bad_shapes():
    with pytest.raises(ValueError, match="negatives must be"):
        moco_info_nce(_unit(2, 4, seed=0), _unit(2, 4, seed=1), _unit(5, 3, seed=2), 0.2)
    with pytest.raises(ValueError, match="temperature"):
        moco_info_nce(_unit(2, 4, seed=0), _unit(2, 4, seed=1), _unit(5, 4, seed=2), 0.0)


def test_clip_loss_equals_hand_computation_and_is_symmetric():
    a, b = _unit(4, 3, seed=3), _unit(4, 3, seed=4)
    s = 7.5
    sim = [
        [s * sum(float(a[i, d] * b[j, d]) for d in range(3)) for j in range(4)] for i in range(4)
    ]
    rows = sum(_ce(sim[i], i) for i in range(4)) / 4
    cols = sum(_ce([sim[j][i] for j in range(4)], i) for i in range(4)) / 4
    assert clip_loss(a, b, s).item() == pytest.approx((rows + cols) / 2, abs=1e-12)
    assert clip_loss(b, a, s).item() == pytest.approx(clip_loss(a, b, s).item(), abs=1e-12)
    # un-normalised inputs are normalised first
    assert clip_loss(3 * a, 0.5 * b, s).item() == pytest.approx((rows + cols) / 2, abs=1e-12)


def test_clip_loss_module_learns_its_scale_with_the_checkpoint_inits():
    # METHODS manifests: IGCL logit_scale 2.659260036932778 = log(1/0.07); PRIOR 4.605170185988092 = log(100)
    assert CLIPLoss(0.07).logit_scale.item() == pytest.approx(2.659260036932778, abs=1e-6)
    assert CLIPLoss(0.01).logit_scale.item() == pytest.approx(4.605170185988092, abs=1e-6)
    module = CLIPLoss(0.07)
    a, b = _unit(4, 3, seed=5).float(), _unit(4, 3, seed=6).float()
    loss = module(a, b)
    assert loss.item() == pytest.approx(clip_loss(a, b, 1 / 0.07).item(), rel=1e-5)
    loss.backward()
    assert module.logit_scale.grad is not None and module.logit_scale.grad.abs().item() > 0
    with torch.no_grad():
        module.logit_scale.fill_(10.0)
    assert module.scale().item() == pytest.approx(100.0)  # clamped like CLIP


def test_nt_xent_cross_modal_weights_and_directions():
    a, b = _unit(3, 5, seed=7), _unit(3, 5, seed=8)
    t = 0.1
    sim = [
        [sum(float(a[i, d] * b[j, d]) for d in range(5)) / t for j in range(3)] for i in range(3)
    ]
    a2b = sum(_ce(sim[i], i) for i in range(3)) / 3
    b2a = sum(_ce([sim[j][i] for j in range(3)], i) for i in range(3)) / 3
    total, parts = nt_xent_cross_modal(a, b, t, 0.75, 0.25)
    assert parts["a2b"].item() == pytest.approx(a2b, abs=1e-12)
    assert parts["b2a"].item() == pytest.approx(b2a, abs=1e-12)
    assert total.item() == pytest.approx(0.75 * a2b + 0.25 * b2a, abs=1e-12)
    assert a2b != pytest.approx(b2a)  # the directions really differ, so the weights matter
    # equal weights = CLIP with a fixed scale 1/T
    assert nt_xent_cross_modal(a, b, t, 0.5, 0.5)[0].item() == pytest.approx(
        clip_loss(a, b, 1 / t).item(), abs=1e-12
    )
    assert CrossModalNTXent()(a, b).item() == pytest.approx(total.item(), abs=1e-12)


def test_pair_losses_need_matching_pairs():
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        clip_loss(_unit(3, 4, seed=0), _unit(2, 4, seed=1), 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent_cross_modal(_unit(1, 4, seed=0), _unit(1, 4, seed=1))
