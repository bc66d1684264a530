"""graph-CT: patch + graph files in all three torch_geometric layouts (queues shrunk), compared
with a functional re-computation from the raw original keys (conv3d/BN/ELU; normalised GCN)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import radzoo
from radzoo.converters import convert
from radzoo.converters.random_originals import write_checkpoint

Q = "module.encoder_q."
VARIANTS = [None, "pyg1.6.1-1.7.x", "pyg>=2.0"]


def _bn(x: torch.Tensor, raw: dict, p: str) -> torch.Tensor:
    return F.batch_norm(x, raw[p + "running_mean"], raw[p + "running_var"], raw[p + "weight"], raw[p + "bias"], False, 0.0, 1e-5)


def _conv_bn_elu(x, raw, conv, bn, stride=1):
    return F.elu(_bn(F.conv3d(x, raw[conv + "weight"], raw[conv + "bias"], stride=stride, padding=1), raw, bn))


def reference_patch(raw: dict, x: torch.Tensor) -> torch.Tensor:
    x = _conv_bn_elu(x, raw, Q + "conv1.", Q + "bn1.")
    x = _conv_bn_elu(x, raw, Q + "conv2.", Q + "bn2.", stride=2)
    for d in ("downsample1", "downsample2", "downsample3"):
        p = f"{Q}{d}."
        x = _conv_bn_elu(x, raw, p + "0.", p + "1.")
        x = _conv_bn_elu(x, raw, p + "3.", p + "4.")
        x = _conv_bn_elu(x, raw, p + "6.", p + "7.", stride=2)
    x = _conv_bn_elu(x, raw, Q + "conv3.", Q + "bn3.")
    x = _conv_bn_elu(x, raw, Q + "conv4.", Q + "bn4.", stride=2)
    return x.flatten(1)


def reference_gcn(raw: dict, variant: str | None, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """GCN with self-loops and symmetric normalisation, then BatchNorm (eval) and ELU."""
    w = raw[Q + "conv1.lin.weight"].T if variant == "pyg>=2.0" else raw[Q + "conv1.weight"]  # [in, out]
    n = x.shape[0]
    adj = torch.zeros(n, n)
    adj[edge_index[1], edge_index[0]] = 1.0
    adj += torch.eye(n)
    dinv = adj.sum(1).rsqrt()
    h = (dinv[:, None] * adj * dinv[None, :]) @ (x @ w) + raw[Q + "conv1.bias"]
    bn = Q + ("bn1." if variant is None else "bn1.module.")
    return F.elu(_bn(h, raw, bn))


@pytest.fixture(scope="module")
def patch_file(manifest, ckpt_dir: Path) -> Path:
    return write_checkpoint(manifest("graphct_patch"), ckpt_dir / "checkpoint_patch-shrink-queue8.pth.tar",
                            shrink={"module.queue": 8}, seed=3)


@pytest.mark.parametrize("variant", VARIANTS, ids=["pyg1.6.0", "pyg1.7", "pyg2"])
def test_graphct_converts_all_pyg_layouts(variant, manifest, patch_file: Path, ckpt_dir: Path, tmp_path: Path) -> None:
    graph_file = write_checkpoint(
        manifest("graphct_graph"), ckpt_dir / f"checkpoint_graph-{variant or 'pyg160'}-shrink-queue16.pth.tar".replace(">=", "ge"),
        variant=variant, shrink={"module.queue": 16}, seed=4,
    )
    out = convert("graph_ct", patch_file, tmp_path / "gct", graph=graph_file)
    model = radzoo.load(out)
    assert sorted(p.name for p in (out / "assets").iterdir()) == sorted(model.spec.assets)
    prov = model.config["provenance"]
    assert prov["graph_layout"] == (variant or "pyg<=1.6.0")
    assert [s["role"] for s in prov["sources"]] == ["patch", "graph"]

    raw_p = torch.load(patch_file, weights_only=True)["state_dict"]
    raw_g = torch.load(graph_file, weights_only=True)["state_dict"]
    gen = torch.Generator().manual_seed(0)
    patches = torch.rand(5, 1, 32, 32, 32, generator=gen) * 2 - 1
    edges = torch.tensor([[0, 1, 1, 2, 3, 4, 0, 2], [1, 0, 2, 1, 4, 3, 2, 0]])
    with torch.inference_mode():
        out_ = model.net(patches, edges)
        ref_patch = reference_patch(raw_p, patches)
        ref_node = reference_gcn(raw_g, variant, ref_patch, edges)
    torch.testing.assert_close(out_["patch"], ref_patch, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_["node"], ref_node, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_["subject"], ref_node.mean(0), rtol=1e-4, atol=1e-5)


def test_graphct_files_swapped_are_refused(manifest, patch_file: Path, ckpt_dir: Path, tmp_path: Path) -> None:
    from radzoo.errors import WeightsError

    graph_file = write_checkpoint(manifest("graphct_graph"), ckpt_dir / "g-shrink-q4.pth.tar", shrink={"module.queue": 4})
    with pytest.raises(WeightsError, match="GRAPH checkpoint"):
        convert("graph_ct", graph_file, tmp_path / "x", graph=patch_file)
    assert not (tmp_path / "x").exists()
