import pytest
import torch
from torch import nn

from radzoo.training.momentum import NegativeQueue, make_key_encoder, momentum_update


def test_momentum_update_is_exact_ema_of_parameters_only():
    torch.manual_seed(0)
    query = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    key = make_key_encoder(query)
    assert all(not p.requires_grad for p in key.parameters())
    with torch.no_grad():
        for p in query.parameters():
            p.add_(torch.randn_like(p))
        key[1].running_mean.fill_(0.25)
    before_k = {n: p.clone() for n, p in key.named_parameters()}
    m = 0.9
    momentum_update(key, query, m)
    for name, p in key.named_parameters():
        q = dict(query.named_parameters())[name]
        torch.testing.assert_close(p, m * before_k[name] + (1 - m) * q, rtol=0, atol=1e-15)
    assert torch.all(key[1].running_mean == 0.25)  # buffers are the key encoder's own
    momentum_update(key, query, 0.0)
    for (_, pk), (_, pq) in zip(key.named_parameters(), query.named_parameters(), strict=True):
        assert torch.equal(pk, pq)


def test_momentum_update_rejects_bad_input():
    with pytest.raises(ValueError, match="momentum"):
        momentum_update(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="differ"):
        momentum_update(nn.Linear(2, 2), nn.Linear(2, 3), 0.5)


def test_queue_is_fifo_and_wraps_around():
    q = NegativeQueue(5, 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(q.queue.norm(dim=1), torch.ones(5))  # normalised init

    def rows(start: int, n: int) -> torch.Tensor:
        return torch.arange(start, start + n, dtype=torch.float32)[:, None].repeat(1, 2)

    q.enqueue(rows(0, 3))
    assert int(q.ptr) == 3
    q.enqueue(rows(3, 3))  # 3, 4 at the end, 5 wraps to slot 0
    assert int(q.ptr) == 1
    assert q.queue[:, 0].tolist() == [5, 1, 2, 3, 4]
    q.enqueue(
        rows(6, 7)
    )  # larger than the queue: only the newest 5 (8..12) survive, oldest slot first
    assert sorted(q.queue[:, 0].tolist()) == [8, 9, 10, 11, 12]
    assert int(q.ptr) == (1 + 7) % 5
    assert q.queue[int(q.ptr) - 1, 0].item() == 12  # the newest sits just before the pointer
    snap = q()
    q.enqueue(rows(20, 1))
    assert 20 not in snap[:, 0].tolist()  # snapshots do not change under later writes
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        q.enqueue(torch.zeros(2, 3))


def test_queue_is_not_a_parameter_and_moves_with_the_module():
    q = NegativeQueue(4, 3)
    assert list(q.parameters()) == []
    assert set(q.state_dict()) == {"queue", "ptr"}
    assert q.double().queue.dtype == torch.float64
