"""Bad input: wrong method, truncated file, missing/extra keys, unknown arch, unsafe pickles.
Every case names the problem and leaves nothing in the output directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from radzoo.cli import main
from radzoo.converters import convert
from radzoo.converters.pickles import CheckpointError, open_checkpoint
from radzoo.converters.random_originals import build_state_dict, write_checkpoint
from radzoo.errors import InputError, WeightsError


@pytest.fixture(scope="module")
def moco18(manifest, ckpt_dir: Path) -> Path:
    return write_checkpoint(manifest("mococxr_resnet18"), ckpt_dir / "neg-r8w-shrink-q16.pth.tar", shrink={"module.queue": 16})


def test_wrong_method_lists_offending_keys(moco18: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="state_dict.*wrong format"):
        convert("igcl", moco18, tmp_path / "out")
    flat = tmp_path / "flat.pt"
    torch.save(torch.load(moco18, weights_only=True)["state_dict"], flat)
    with pytest.raises(WeightsError, match="lacks every key.*module.queue.*right method/format") as err:
        convert("igcl", flat, tmp_path / "out")
    assert "visual.encoder.model.vision_model." in str(err.value)
    with pytest.raises(WeightsError, match="module.encoder_q"):
        convert("prior_image", flat, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_and_garbage_files(moco18: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(moco18.read_bytes()[: moco18.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        convert("moco_cxr", cut, tmp_path / "out")
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        convert("moco_cxr", junk, tmp_path / "out")
    with pytest.raises(CheckpointError, match="not found"):
        convert("moco_cxr", tmp_path / "absent.pth.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_extra_and_misshaped_keys(moco18: Path, tmp_path: Path) -> None:
    obj = torch.load(moco18, weights_only=True)
    sd = obj["state_dict"]
    missing = dict(sd)
    del missing["module.encoder_q.layer4.1.bn2.weight"]
    torch.save({**obj, "state_dict": missing}, tmp_path / "missing.pth.tar")
    with pytest.raises(WeightsError, match=r"missing keys \(1\): image_backbone.layer4.1.bn2.weight"):
        convert("moco_cxr", tmp_path / "missing.pth.tar", tmp_path / "out")
    extra = {**sd, "module.encoder_q.layer5.weight": torch.zeros(3), "module.extra_thing": torch.zeros(1)}
    torch.save({**obj, "state_dict": extra}, tmp_path / "extra.pth.tar")
    with pytest.raises(WeightsError, match="module.extra_thing"):
        convert("moco_cxr", tmp_path / "extra.pth.tar", tmp_path / "out")
    shaped = {**sd, "module.encoder_q.conv1.weight": torch.zeros(64, 1, 7, 7)}
    torch.save({**obj, "state_dict": shaped}, tmp_path / "shaped.pth.tar")
    with pytest.raises(WeightsError, match=r"image_backbone.conv1.weight: checkpoint \(64, 1, 7, 7\)"):
        convert("moco_cxr", tmp_path / "shaped.pth.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unknown_and_disagreeing_arch(moco18: Path, tmp_path: Path) -> None:
    obj = torch.load(moco18, weights_only=True)
    torch.save({**obj, "arch": "vgg16"}, tmp_path / "mnn.pth.tar")
    with pytest.raises(InputError, match="unsupported MoCo-CXR arch 'vgg16'"):
        convert("moco_cxr", tmp_path / "mnn.pth.tar", tmp_path / "out")
    with pytest.raises(InputError, match="disagrees"):
        convert("moco_cxr", moco18, tmp_path / "out", arch="resnet50")
    with pytest.raises(InputError, match="unknown checkpoint format"):
        convert("moco", moco18, tmp_path / "out")


def test_existing_output_is_not_clobbered(moco18: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    from radzoo.errors import ArtifactError

    with pytest.raises(ArtifactError, match="not empty"):
        convert("moco_cxr", moco18, out)
    assert (out / "keep.txt").read_text() == "mine"


_PICKLER = r"""
import sys, torch, types
mod = types.ModuleType("lightning_like_callbacks"); sys.modules["lightning_like_callbacks"] = mod
class ModelCheckpoint: pass
ModelCheckpoint.__module__ = "lightning_like_callbacks"; mod.ModelCheckpoint = ModelCheckpoint
sd = torch.load(sys.argv[1], weights_only=True)
torch.save({"state_dict": sd, "callbacks": {ModelCheckpoint: {"best": None}}, "pytorch-lightning_version": "1.5.9"}, sys.argv[2])
"""


def test_unsafe_pickle_needs_trust_pickle(manifest, tmp_path: Path) -> None:
    flat = tmp_path / "prior_resnet50.pt"
    torch.save(build_state_dict(manifest("prior_resnet50_image")), flat)
    wrapped = tmp_path / "with-class-keys.ckpt"
    subprocess.run([sys.executable, "-c", _PICKLER, str(flat), str(wrapped)], check=True)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        open_checkpoint(wrapped)
    obj = open_checkpoint(wrapped, trust_pickle=True)
    (cls,) = obj["callbacks"]
    assert "lightning_like_callbacks.ModelCheckpoint" in repr(cls()) and len(obj["state_dict"]) == 318


def test_cli_convert_reports_errors(moco18: Path, tmp_path: Path, capsys) -> None:
    rc = main(["convert", "moco_cxr", str(moco18), "--out", str(tmp_path / "o"), "--tokenizer", str(tmp_path)])
    assert rc == 1 and "unexpected keyword argument 'tokenizer'" in capsys.readouterr().err
    rc = main(["convert", "graph_ct", str(moco18), "--out", str(tmp_path / "o")])
    assert rc == 1 and "--graph" in capsys.readouterr().err
    rc = main(["convert", "moco_cxr", str(moco18), "--out", str(tmp_path / "o")])
    assert rc == 0 and "mococxr_resnet18" in capsys.readouterr().out
