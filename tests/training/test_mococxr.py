"""MoCo-CXR end to end on real NIH images: tiny (resnet18, 64 px, K=64, batch 4), CPU only."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import radzoo
from radzoo.cli import main
from radzoo.errors import ArtifactError, InputError
from radzoo.io import read_image
from radzoo.nets.mococxr import MoCoCXRNet
from radzoo.training.augment import MoCoCXRAugment
from radzoo.training.hparams import MoCoCXRConfig, resolve_config
from radzoo.training.methods.mococxr_pretraining import (
    MoCo,
    checkpoint_dir,
    initial_encoder,
    train_mococxr,
)

from .conftest import TINY


def test_moco_step_moves_query_key_and_queue_exactly(nih_paths):
    torch.manual_seed(0)
    aug = MoCoCXRAugment(size=64)
    pixels = [read_image(p).pixels for p in nih_paths[:4]]
    g = torch.Generator().manual_seed(0)
    im_q = torch.stack([aug(p, g) for p in pixels])
    im_k = torch.stack([aug(p, g) for p in pixels])
    moco = MoCo(MoCoCXRNet("resnet18", proj_dim=128), queue_size=64, momentum=0.9, temperature=0.2)
    moco.train()
    opt = torch.optim.Adam(moco.encoder_q.parameters(), lr=1e-3)
    q0 = {k: v.clone() for k, v in moco.encoder_q.named_parameters()}
    k0 = {k: v.clone() for k, v in moco.encoder_k.named_parameters()}
    queue0 = moco.queue.queue.clone()

    loss, metrics = moco((im_q, im_k))
    assert math.isfinite(loss.item()) and 0 <= metrics["acc1"] <= 1
    assert loss.item() > 0
    loss.backward()
    assert all(p.grad is None for p in moco.encoder_k.parameters())  # keys get no gradient
    opt.step()
    moco.after_optimizer_step()

    q1 = dict(moco.encoder_q.named_parameters())
    assert any(not torch.equal(q0[k], q1[k]) for k in q0)
    for name, p in moco.encoder_k.named_parameters():
        torch.testing.assert_close(p, 0.9 * k0[name] + 0.1 * q1[name], rtol=0, atol=1e-6)
    assert int(moco.queue.ptr) == 4
    new = moco.queue.queue[:4]
    assert not torch.equal(new, queue0[:4]) and torch.equal(moco.queue.queue[4:], queue0[4:])
    torch.testing.assert_close(new.norm(dim=1), torch.ones(4))  # the keys are unit vectors

    for _ in range(1):  # keeps training: finite losses
        opt.zero_grad()
        loss, _ = moco((im_q, im_k))
        loss.backward()
        opt.step()
        moco.after_optimizer_step()
        assert math.isfinite(loss.item())
    assert int(moco.queue.ptr) == 8


@pytest.fixture(scope="module")
def trained(nih_list: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MoCoCXRConfig]:
    config = resolve_config(MoCoCXRConfig, None, {**TINY, "epochs": "1"})
    out = tmp_path_factory.mktemp("run") / "moco_tiny"
    train_mococxr(config, nih_list, out)
    return out, config


def test_trained_artifact_loads_strictly_and_embeds(trained, nih_paths):
    out, config = trained
    model = radzoo.load(out, device="cpu")
    assert model.spec.name == "mococxr_resnet18" and not model.random_init
    assert model.spec.sources == () and model.spec.hub_repo is None
    assert model.outputs == {"trunk": 512}
    emb = model.embed([str(p) for p in nih_paths[:2]])
    assert emb.shape == (2, 512) and np.isfinite(emb).all()
    # only the query encoder's canonical keys: no key encoder, no queue, no head
    keys = set(load_file(str(out / "model.safetensors")))
    assert keys and all(k.startswith("image_backbone.") for k in keys)
    # the weights moved away from the seeded random init
    init = initial_encoder(config).image_backbone.state_dict()
    trained_state = model.net.image_backbone.state_dict()
    assert any(
        not torch.equal(init[k], trained_state[k]) for k in init if init[k].is_floating_point()
    )

    prov = model.config["provenance"]
    assert prov["trained_by"] == "radzoo.training" and prov["method"] == "mococxr"
    assert prov["epochs"] == 1 and prov["steps"] == 2  # 8 images / batch 4
    assert prov["data"]["images"] == 8 and math.isfinite(prov["final_loss"])
    assert prov["config"]["moco_k"] == 64
    assert any("64 px" in d for d in model.config["deviations"])
    # the resolved config travels with the artifact and beside it, and reads back identically
    assert resolve_config(MoCoCXRConfig, out / "training" / "config.json") == config
    assert resolve_config(MoCoCXRConfig, checkpoint_dir(out) / "config.json") == config
    assert (checkpoint_dir(out) / "state.json").is_file()


def test_resume_continues_and_refuses_a_changed_config(trained, nih_list, tmp_path):
    out, config = trained
    art, ckpt = tmp_path / "moco_tiny", tmp_path / "moco_tiny.train"
    shutil.copytree(out, art)
    shutil.copytree(checkpoint_dir(out), ckpt)
    with pytest.raises(ArtifactError, match="exists and is not empty"):
        train_mococxr(config, nih_list, art)
    changed = resolve_config(MoCoCXRConfig, None, {**TINY, "epochs": "2", "lr": "0.001"})
    with pytest.raises(InputError, match=r"cannot resume .*lr: 0.0001 -> 0.001"):
        train_mococxr(changed, nih_list, art, resume=True)
    longer = resolve_config(MoCoCXRConfig, None, {**TINY, "epochs": "2"})
    train_mococxr(longer, nih_list, art, resume=True)
    prov = json.loads((art / "config.json").read_text())["provenance"]
    assert prov["epochs"] == 2 and prov["steps"] == 4
    assert [h["epoch"] for h in prov["history"]] == [0, 1]
    assert json.loads((ckpt / "state.json").read_text())["loop"]["epoch"] == 2
    with pytest.raises(InputError, match="nothing to train"):
        train_mococxr(longer, nih_list, art, resume=True)


def test_cli_trains_end_to_end_in_a_subprocess(trained, nih_paths, tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    for p in nih_paths:
        shutil.copyfile(p, data / p.name)
    settings = tmp_path / "run.toml"
    settings.write_text('image_size = 64\nbatch_size = 4\nmoco_k = 64\ndevice = "cpu"\n')
    out = tmp_path / "cli_art"
    cmd = [
        sys.executable,
        "-m",
        "radzoo.cli",
        "train",
        "mococxr",
        "--data",
        str(data),
        "--out",
        str(out),
        "--config",
        str(settings),
        f"--init={trained[0]}",
        "--keep-head=true",
        "--max_steps=1",
        "--moco-t=0.1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout
    model = radzoo.load(out, device="cpu")
    assert model.outputs == {"trunk": 512, "proj": 128}
    proj = model.embed([str(nih_paths[0])], output="proj")
    np.testing.assert_allclose(np.linalg.norm(proj, axis=1), 1.0, rtol=1e-5)
    prov = model.config["provenance"]
    assert prov["steps"] == 1 and prov["stopped_by_max_steps"] is True
    assert prov["config"]["moco_t"] == 0.1 and prov["config"]["init"] == str(trained[0])
    written = resolve_config(MoCoCXRConfig, tmp_path / "cli_art.train" / "config.json")
    assert (written.image_size, written.moco_k, written.keep_head, written.max_steps) == (
        64,
        64,
        True,
        1,
    )


def test_cli_names_bad_keys_and_inputs(tmp_path, capsys, nih_list):
    base = ["train", "mococxr", "--data", str(nih_list), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exc:
        main([*base, "--lrr=0.1"])
    assert exc.value.code == 2 and "--lrr=0.1" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"momentum": 0.9}')
    assert main([*base, "--config", str(bad)]) == 1
    assert "unknown mococxr config key 'momentum'" in capsys.readouterr().err
    assert main([*base, "--epochs=two"]) == 1
    assert "epochs in overrides: expected an integer, got 'two'" in capsys.readouterr().err
    assert main([*base, "--init-random", "--init=imagenet"]) == 1
    assert "--init-random conflicts" in capsys.readouterr().err
    missing = [
        "train",
        "mococxr",
        "--data",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "o"),
        "--init-random",
    ]
    assert main(missing) == 1
    assert "does not exist" in capsys.readouterr().err
    init_wrong = [
        *base,
        "--init",
        str(tmp_path / "not_an_artifact"),
        "--image_size=64",
        "--batch_size=4",
    ]
    assert main(init_wrong) == 1
    assert "no artifact directory" in capsys.readouterr().err
