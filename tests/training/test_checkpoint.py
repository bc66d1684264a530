import pytest
import torch
from torch import nn

from radzoo.errors import ArtifactError, WeightsError
from radzoo.training.momentum import NegativeQueue
from radzoo.training.resume import has_training_state, load_training_state, save_training_state


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.queue = NegativeQueue(4, 2)


def _trained(seed: int) -> tuple[_Tiny, torch.optim.Adam]:
    torch.manual_seed(seed)
    m = _Tiny()
    opt = torch.optim.Adam(m.lin.parameters(), lr=1e-2, betas=(0.8, 0.9), weight_decay=1e-4)
    for _ in range(2):
        m.lin(torch.randn(5, 3)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    m.queue.enqueue(torch.randn(3, 2))
    return m, opt


def test_state_round_trips_through_safetensors_and_json(tmp_path):
    src, src_opt = _trained(0)
    save_training_state(tmp_path, src, src_opt, {"next_epoch": 3, "note": "x"})
    assert has_training_state(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state-00000001.safetensors", "state.json"]
    dst, dst_opt = _trained(1)
    meta = load_training_state(tmp_path, dst, dst_opt)
    assert meta == {"next_epoch": 3, "note": "x"}
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    s, d = src_opt.state_dict(), dst_opt.state_dict()
    assert d["param_groups"][0]["betas"] == (0.8, 0.9)
    for pid in s["state"]:
        for name, value in s["state"][pid].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(d["state"][pid][name])), name
    # both optimisers continue identically
    x = torch.randn(4, 3)
    for m, opt in ((src, src_opt), (dst, dst_opt)):
        m.lin(x).sum().backward()
        opt.step()
    assert torch.equal(src.lin.weight, dst.lin.weight)


def test_damaged_or_foreign_state_is_refused(tmp_path):
    src, opt = _trained(0)
    save_training_state(tmp_path, src, opt, {})
    other = nn.Linear(3, 3)
    with pytest.raises(WeightsError, match="resume checkpoint"):
        load_training_state(tmp_path, other, torch.optim.Adam(other.parameters()))
    data = bytearray((tmp_path / "state-00000001.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "state-00000001.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match"):
        load_training_state(tmp_path, *_trained(1))
    with pytest.raises(ArtifactError, match="no resume checkpoint"):
        load_training_state(tmp_path / "nothing", *_trained(1))
