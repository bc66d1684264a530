"""Artifact format: bit-exact round trips, strict loading, and clear errors for bad artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import radzoo
from radzoo import zoo
from radzoo.errors import ArtifactError, DeviceError, InputError, SchemaVersionError, WeightsError
from radzoo.zoo.spec import SCHEMA_VERSION
from radzoo.zoo.tiny import tiny_specs


@pytest.fixture(scope="module")
def tiny_moco(tmp_path_factory) -> tuple[zoo.ZooModel, Path]:
    model = radzoo.build(tiny_specs()["tiny-random-mococxr"], seed=3)
    path = zoo.save(model, tmp_path_factory.mktemp("art") / "tiny-moco")
    return model, path


def _batch(shape=(3, 3, 64, 64)) -> np.ndarray:
    return np.random.default_rng(7).standard_normal(shape).astype(np.float32)


def test_artifact_layout_and_config(tiny_moco) -> None:
    _, path = tiny_moco
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["schema_version"] == SCHEMA_VERSION
    assert config["spec"]["name"] == "tiny-random-mococxr"
    assert config["spec"]["random_init"] is True
    assert len(config["weights"]["sha256"]) == 64
    card = (path / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-nc-4.0\nlibrary_name: radzoo\n")
    assert "Random weights" in card and "@inproceedings" in card


@pytest.mark.parametrize("name", sorted(tiny_specs()))
def test_save_load_round_trip_is_bit_exact(name: str, tmp_path: Path) -> None:
    model = radzoo.build(tiny_specs()[name], seed=5, runtime="torch")  # the weights round trip, not ONNX
    loaded = radzoo.load(zoo.save(model, tmp_path / name), runtime="torch")
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, loaded.net.state_dict()[key]), key
    assert loaded.spec == model.spec
    if model.spec.modality == "ct":
        assert set(loaded.assets) >= {"atlas_lung_mask.nii.gz", "atlas_patch_loc.npy"}
        assert (tmp_path / name / "assets" / "atlas_patch_loc.npy").read_bytes() == model.assets[
            "atlas_patch_loc.npy"
        ].read_bytes()
        return
    x = _batch((2, *_input(model)))
    for output in model.outputs:
        assert np.array_equal(model.embed_batch(x, output), loaded.embed_batch(x, output))


def _input(model: zoo.ZooModel) -> tuple[int, int, int]:
    from radzoo.zoo.golden import input_shape

    return input_shape(model.spec.preprocess)


def test_full_size_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = radzoo.build("mococxr_resnet18", seed=0, runtime="torch")
    loaded = radzoo.load(zoo.save(model, tmp_path / "r18"), runtime="torch")
    x = _batch((1, 3, 320, 320))
    assert np.array_equal(model.embed_batch(x), loaded.embed_batch(x))


def _rewrite_weights(path: Path, edit) -> None:
    state = load_file(str(path / "model.safetensors"))
    edit(state)
    save_file(state, str(path / "model.safetensors"))
    config = json.loads((path / "config.json").read_text())
    config["weights"].pop("sha256")  # simulate a hand-edited artifact: the key check must still catch it
    (path / "config.json").write_text(json.dumps(config))


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_key_is_named(tiny_moco, tmp_path: Path) -> None:
    path = _copy(tiny_moco[1], tmp_path / "a")
    _rewrite_weights(path, lambda s: s.pop("image_backbone.layer4.1.bn2.running_var"))
    with pytest.raises(WeightsError, match=r"missing keys \(1\): image_backbone.layer4.1.bn2.running_var") as err:
        radzoo.load(path)
    assert err.value.missing == ["image_backbone.layer4.1.bn2.running_var"]


def test_unexpected_key_is_named(tiny_moco, tmp_path: Path) -> None:
    path = _copy(tiny_moco[1], tmp_path / "b")
    _rewrite_weights(path, lambda s: s.__setitem__("image_backbone.fc.weight", torch.zeros(2, 2)))
    with pytest.raises(WeightsError, match=r"unexpected keys \(1\): image_backbone.fc.weight"):
        radzoo.load(path)


def test_shape_mismatch_is_named(tiny_moco, tmp_path: Path) -> None:
    path = _copy(tiny_moco[1], tmp_path / "c")
    _rewrite_weights(path, lambda s: s.__setitem__("image_proj.2.weight", torch.zeros(64, 512)))
    with pytest.raises(WeightsError, match=r"image_proj.2.weight: checkpoint \(64, 512\) vs model \(128, 512\)"):
        radzoo.load(path)


def test_corrupt_safetensors(tiny_moco, tmp_path: Path) -> None:
    path = _copy(tiny_moco[1], tmp_path / "d")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="sha256 does not match"):
        radzoo.load(path)
    config = json.loads((path / "config.json").read_text())
    config["weights"].pop("sha256")
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="corrupt or unreadable safetensors"):
        radzoo.load(path)


def test_directory_that_is_not_an_artifact(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ArtifactError, match="is not a radzoo artifact: no config.json"):
        radzoo.load(tmp_path)
    with pytest.raises(ArtifactError, match="no artifact directory"):
        radzoo.load(str(tmp_path / "missing") + "/")


def test_newer_schema_version_is_refused(tiny_moco, tmp_path: Path) -> None:
    path = _copy(tiny_moco[1], tmp_path / "e")
    config = json.loads((path / "config.json").read_text())
    config["schema_version"] = SCHEMA_VERSION + 1
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SchemaVersionError, match="upgrade radzoo"):
        radzoo.load(path)


def test_invalid_config_json(tiny_moco, tmp_path: Path) -> None:
    path = _copy(tiny_moco[1], tmp_path / "f")
    (path / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        radzoo.load(path)


def test_wrong_device_string(tiny_moco) -> None:
    with pytest.raises(DeviceError, match="invalid device 'gpu0'"):
        radzoo.load(tiny_moco[1], device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU is available"):
            radzoo.load(tiny_moco[1], device="cuda")


def test_unknown_output_and_empty_input(tiny_moco) -> None:
    model = radzoo.load(tiny_moco[1])
    with pytest.raises(InputError, match="has no output 'global'"):
        model.embed_batch(_batch(), "global")
    with pytest.raises(InputError, match="no images given"):
        model.embed([])


def test_save_refuses_to_clobber_and_leaves_nothing_partial(tiny_moco, tmp_path: Path) -> None:
    model, path = tiny_moco
    with pytest.raises(ArtifactError, match="exists and is not empty"):
        zoo.save(model, path)
    zoo.save(model, path, overwrite=True)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
