"""graph-CT's per-landmark MoCo queue and patch loss against direct computations of the original.

The reference is a plain replay of builder_patch.py: ``queue[:, ptr:ptr + B, l] = keys.T`` and
``ptr = (ptr + B) % K`` per landmark (element by element here, so wrapping is covered too), and
logits ``[q.k, q.queue[:, :, l]] / T`` with cross-entropy against column 0.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from radzoo.training.landmark_queue import LandmarkQueue


def _replay(init: torch.Tensor, writes: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, list[int]]:
    """The original's queue after ``writes`` [(landmark, keys [B, D])], one key at a time."""
    queue = init.clone()
    k = queue.shape[1]
    ptr = [0] * queue.shape[2]
    for landmark, keys in writes:
        for key in keys:
            queue[:, ptr[landmark], landmark] = key
            ptr[landmark] = (ptr[landmark] + 1) % k
    return queue, ptr


def test_queue_matches_a_replay_of_the_original() -> None:
    g = torch.Generator().manual_seed(0)
    q = LandmarkQueue(dim=4, size=6, landmarks=5, generator=g)
    init = q.queue.clone()
    torch.testing.assert_close(init.norm(dim=0), torch.ones(6, 5))  # normalised along dim, as the original
    writes = [(2, torch.randn(2, 4)), (2, torch.randn(3, 4)), (0, torch.randn(4, 4)), (2, torch.randn(4, 4)),
              (4, torch.randn(7, 4))]  # wraps at landmark 2; more keys than K at landmark 4
    for landmark, keys in writes:
        q.enqueue(keys, landmark)
    expected, ptr = _replay(init, writes)
    torch.testing.assert_close(q.queue, expected)
    assert q.ptr.tolist() == ptr == [4, 0, 3, 0, 1]
    # untouched landmarks keep their init; negatives of landmark l are queue[:, :, l].T (a copy)
    torch.testing.assert_close(q.queue[:, :, 1], init[:, :, 1])
    neg = q.negatives(2)
    torch.testing.assert_close(neg, expected[:, :, 2].t())
    neg += 1
    torch.testing.assert_close(q.queue[:, :, 2], expected[:, :, 2])
    with pytest.raises(IndexError):
        q.negatives(5)
    with pytest.raises(ValueError):
        q.enqueue(torch.randn(2, 3), 0)


def test_patch_moco_loss_uses_only_its_landmarks_negatives() -> None:
    from radzoo.training.methods.graphct_pretraining import PatchMoCo

    torch.manual_seed(0)
    method = PatchMoCo(dim=16, queue_size=8, landmarks=3, momentum=0.999, temperature=0.2,
                       generator=torch.Generator().manual_seed(1))
    landmark = 1
    other_queue = method.queue.queue[:, :, 0].clone()
    negatives = method.queue.queue[:, :, landmark].clone()
    batch = {
        "q": torch.randn(4, 1, 32, 32, 32),
        "k": torch.randn(4, 1, 32, 32, 32),
        "loc": torch.tensor([[0.2, 0.5, 0.7]]).repeat(4, 1),
        "landmark": torch.full((4,), landmark),
    }
    method.train()
    loss, metrics = method(batch)
    # direct computation, with the same encoders (BatchNorm in train mode, as in the step)
    method.encoder_q.train()
    method.encoder_k.train()
    with torch.no_grad():
        q = F.normalize(method.encoder_q(batch["q"], batch["loc"]), dim=1)
        k = F.normalize(method.encoder_k(batch["k"], batch["loc"]), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ negatives], dim=1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)
    # the keys went to landmark 1's queue only
    torch.testing.assert_close(method.queue.queue[:, :4, landmark].t(), k, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(method.queue.queue[:, :, 0], other_queue)
    assert method.queue.ptr.tolist() == [0, 4, 0]
    assert 0.0 <= float(metrics["acc1"]) <= 1.0
    with pytest.raises(RuntimeError, match="one landmark"):
        method({**batch, "landmark": torch.tensor([0, 1, 1, 1])})
