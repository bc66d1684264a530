"""IGCL training on image / RadGraph pairs DERIVED from NIH labels (tests/derived_radgraph.py).

The reports and their RadGraph-format annotations are written from each image's label string by
fixed templates: they are not real reports and not real RadGraph annotations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import radzoo
from derived_radgraph import write_derived_set
from radzoo.cli import main
from radzoo.training.graph_hparams import IGCLConfig
from radzoo.training.hparams import resolve_config
from radzoo.training.run_log import read_metrics

TINY_IGCL = {"size": "tiny", "batch_size": "8", "epochs": "2", "val_size": "8", "image_freeze_batches": "3",
             "device": "cpu", "progress": "false", "log_every": "0"}
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def derived_set(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """32 NIH images with derived RadGraph entries, plus bad rows of every kind."""
    folder = tmp_path_factory.mktemp("igcl_data")
    pairs, radgraph = write_derived_set(shared_data, folder, n=32)
    graphs = json.loads(radgraph.read_text())
    first = next(iter(graphs.values()))
    graphs["bad/no_entities"] = {"text": "No acute findings .", "entities": {}}
    graphs["bad/dangling"] = {**first, "entities": {"1": {**first["entities"]["1"], "relations": [["modify", "42"]]}}}
    graphs["bad/label"] = {**first, "entities": {"1": {**first["entities"]["1"], "label": "ANAT-DA"}}}
    radgraph.write_text(json.dumps(graphs))
    image = next(line.split(",")[0] for line in pairs.read_text().splitlines()[1:])
    (folder / "not_an_image.png").write_text("text, not pixels")
    extra = [f"{image},bad/no_entities", f"{image},bad/dangling", f"{image},bad/label", f"{image},not/in/radgraph",
             f"{folder / 'missing.png'},nih/00000129_000", "not_an_image.png,nih/00000129_000"]
    pairs.write_text(pairs.read_text() + "\n".join(extra) + "\n")
    return pairs, radgraph


def test_pairs_skip_and_count_bad_rows(derived_set) -> None:
    from radzoo.training.igcl_pairs import read_graph_pairs

    pairs = read_graph_pairs(*derived_set)
    assert len(pairs.pairs) == 32
    assert pairs.skipped == {
        "bad RadGraph entry: no entities": 1,
        "bad RadGraph entry: dangling relation id": 1,
        "bad RadGraph entry: unknown label": 1,
        "report_id not in the RadGraph file": 1,
        "image missing or unreadable": 1,
        "not an image": 1,
    }


def test_clip_loss_and_image_freeze_match_the_original(derived_set) -> None:
    """The loss equals the original's formula computed by hand; frozen batches leave the image
    encoder exactly unchanged (AdamW skips it) while its projection and the graph tower train."""
    from radzoo.graphs import NodeTextTower, graph_data
    from radzoo.training.igcl_pairs import collate_pairs, read_graph_pairs
    from radzoo.training.methods.igcl_pretraining import IGCLMethod, igcl_spec, initial_net
    from radzoo.zoo.tiny import TINY_NODE_TEXT_CONFIG, write_test_vocab

    config = resolve_config(IGCLConfig, overrides=TINY_IGCL)
    spec = igcl_spec(config, "test")
    net = initial_net(config, spec)
    method = IGCLMethod(net, freeze_batches=2)
    vocab = write_test_vocab(Path(derived_set[0]).parent / "vocab", lowercase=True)
    tower = NodeTextTower.random(TINY_NODE_TEXT_CONFIG, vocab, seed=1)
    pairs = read_graph_pairs(*derived_set).pairs[:4]
    items = [{"image": torch.randn(3, 64, 64), "graph": graph_data(p.graph, tower.span_features(p.graph)), "replaced": 0}
             for p in pairs]
    batch = collate_pairs(items)
    method.train()
    torch.manual_seed(11)  # the same dropout masks (DRACON's transformer layer) in both computations
    loss, metrics = method(batch)
    torch.manual_seed(11)
    with torch.no_grad():
        img = net.image_proj(net.image_backbone(pixel_values=batch["image"]).pooler_output)
        gra = net.encode_graph(batch["x"], batch["edge_index"], batch["edge_type"], batch["batch"])
        img, gra = img / img.norm(dim=-1, keepdim=True), gra / gra.norm(dim=-1, keepdim=True)
        logits_per_image = net.logit_scale.exp() * img @ gra.t()
        labels = torch.arange(4)
        expected = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.t(), labels)) / 2
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    assert float(metrics["image_frozen"]) == 1.0 and abs(float(net.logit_scale.detach()) - np.log(1 / 0.07)) < 1e-6
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    backbone0 = {k: v.clone() for k, v in net.image_backbone.state_dict().items()}
    proj0 = net.image_proj.weight.clone()
    for step in range(3):
        opt.zero_grad()
        loss, metrics = method(batch)
        loss.backward()
        frozen = step < 2
        assert float(metrics["image_frozen"]) == float(frozen)
        assert all((p.grad is None) == frozen for p in net.image_backbone.parameters())
        opt.step()
        method.after_optimizer_step()
        moved = any(not torch.equal(v, backbone0[k]) for k, v in net.image_backbone.state_dict().items())
        assert moved == (not frozen)
    assert not torch.equal(net.image_proj.weight, proj0)
    assert int(method.batches_seen) == 3 and "batches_seen" in method.state_dict()


def test_validation_split_is_the_originals_random_split() -> None:
    """random_split(dataset, [n - 500, 500], generator=manual_seed(229)) == randperm(n) with that seed, cut."""
    n, val = 23, 5
    split = torch.utils.data.random_split(range(n), [n - val, val], generator=torch.Generator().manual_seed(229))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(229)).tolist()
    assert list(split[0].indices) == perm[: n - val] and list(split[1].indices) == perm[n - val :]


def _args(data: tuple[Path, Path], out: Path, **over: str) -> list[str]:
    cfg = {**TINY_IGCL, **over}
    return ["train", "igcl", "--data", str(data[0]), "--radgraph", str(data[1]), "--out", str(out)] + [
        f"--{k.replace('_', '-')}={v}" for k, v in cfg.items()
    ]


def _torchrun(args: list[str]) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1] / "src"), str(HERE.parent), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "radzoo.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def test_tiny_run_embeds_images_and_graphs_then_resumes_under_torchrun(derived_set, tmp_path: Path) -> None:
    """One process trains 2 epochs; ``torchrun --nproc-per-node 2`` (gloo, bf16 autocast) resumes it for a
    third: a change of world size and precision, the freeze counter and step count carried over."""
    out = tmp_path / "igcl"
    assert main(_args(derived_set, out)) == 0
    model = radzoo.load(out)  # strict load of the igcl_vitb32 layout (tiny geometry)
    assert model.spec.name == "igcl_tiny" and model.capabilities >= {"embed", "graph"}
    assert (out / "graph_text" / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    data = config["provenance"]["data"]
    assert data["pairs"] == 32 and data["train_pairs"] == 24 and data["val_pairs"] == 8 and sum(data["skipped"].values()) == 6
    assert "val_loss" in config["provenance"]["history"][-1]
    assert any("random BERT" in d for d in config["deviations"])
    metrics = read_metrics(tmp_path / "igcl.train")
    assert [m["image_frozen"] for m in metrics] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    nih = [line.split(",")[0] for line in derived_set[0].read_text().splitlines()[1:5]]
    emb = model.embed(nih)
    assert emb.shape == (4, 32) and np.isfinite(emb).all()
    good = {k: v for k, v in json.loads(derived_set[1].read_text()).items() if k.startswith("nih/")}
    graphs = model.embed_graphs(good)
    assert graphs.shape == (32, 32) and np.isfinite(graphs).all()
    # the same run resumed by two processes (node features are prepared, so torchrun may start)
    _torchrun(_args(derived_set, out, epochs="3", precision="bf16") + ["--resume"])
    metrics = read_metrics(tmp_path / "igcl.train")
    assert [m["step"] for m in metrics] == list(range(1, 10)) and [m["world_size"] for m in metrics[6:]] == [2] * 3
    assert [m["image_frozen"] for m in metrics[6:]] == [0.0] * 3
    prov = json.loads((out / "config.json").read_text())["provenance"]
    assert prov["world_size"] == 2 and prov["replicas"]["in_sync"] and prov["precision"] == "bf16"
    assert radzoo.load(out).embed_graphs(good["nih/00000129_000"]).shape == (1, 32)


def test_features_only_prepares_the_tower_and_cache(derived_set, tmp_path: Path) -> None:
    """``--features-only`` (run before torchrun, which refuses to start without them) writes the node-feature
    BERT and cache and trains nothing."""
    out = tmp_path / "igcl2"
    assert main(_args(derived_set, out) + ["--features-only"]) == 0
    run = tmp_path / "igcl2.train"
    assert (run / "node_features" / "manifest.json").is_file() and (run / "graph_text" / "model.safetensors").is_file()
    assert not out.exists() and not (run / "state.json").exists()


@pytest.mark.parametrize("layout", ["vision", "clip"])
def test_image_init_from_a_hugging_face_clip_directory(layout: str, tmp_path: Path) -> None:
    """``image_init=DIR``: a CLIPModel or CLIPVisionModel directory (as openai/clip-vit-base-patch32) starts the
    image tower; its weights land strictly in ``image_backbone``; projections stay the original's random init."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    from radzoo.training.methods.igcl_pretraining import igcl_spec, initial_net

    config = resolve_config(IGCLConfig, overrides=TINY_IGCL)
    spec = igcl_spec(config, "test")
    vision = dict(spec.arch_args["vision_config"])
    torch.manual_seed(3)
    if layout == "vision":
        hf = CLIPVisionModel(CLIPVisionConfig(**vision))
        tower = getattr(hf, "vision_model", hf)
    else:
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "vocab_size": 49408}
        hf = CLIPModel(CLIPConfig(vision_config=vision, text_config=text))
        tower = hf.vision_model
    hf.save_pretrained(str(tmp_path / "clip"))
    net = initial_net(resolve_config(IGCLConfig, overrides={**TINY_IGCL, "image_init": str(tmp_path / "clip")}), spec)
    ours = net.image_backbone.state_dict()
    for key, value in tower.state_dict().items():
        if not key.endswith("position_ids"):
            torch.testing.assert_close(ours[key], value)
    from radzoo.errors import InputError

    with pytest.raises(InputError, match="differs from igcl_vitb32"):
        big = resolve_config(IGCLConfig, overrides={**TINY_IGCL, "size": "full", "image_init": str(tmp_path / "clip")})
        initial_net(big, igcl_spec(big, "test"))
