"""MoCo-CXR: full-size layouts of resnet18 / resnet50 / densenet121 (queue shrunk), converted and
compared against a plain torchvision model loaded with the stripped ``encoder_q`` weights."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import radzoo
from radzoo.converters import convert
from radzoo.converters.random_originals import write_checkpoint

QUEUE = {"module.queue": 256}


def _reference_trunk(arch: str, raw: dict[str, torch.Tensor]) -> nn.Module:
    model = getattr(torchvision.models, arch)(weights=None)
    head = "fc" if arch.startswith("resnet") else "classifier"
    setattr(model, head, nn.Identity())
    prefix = "module.encoder_q."
    stripped = OrderedDict(
        (k[len(prefix):], v) for k, v in raw.items() if k.startswith(prefix) and not k.startswith(prefix + head + ".")
    )
    # module versions travel in _metadata (torchvision's MNASNet refuses a dict without them)
    meta = getattr(raw, "_metadata", {})
    stripped._metadata = {k[len(prefix):]: v for k, v in meta.items() if k.startswith(prefix)}
    stripped._metadata[""] = meta.get(prefix[:-1], {})
    model.load_state_dict(stripped, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def moco_files(manifest, ckpt_dir: Path):
    files = {}
    for arch in ("resnet18", "resnet50", "densenet121", "mnasnet1_0"):
        files[arch] = write_checkpoint(
            manifest(f"mococxr_{arch}"), ckpt_dir / f"moco-{arch}-shrink-queue256.pth.tar", shrink=QUEUE, seed=1
        )
    return files


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "densenet121", "mnasnet1_0"])
def test_moco_converts_and_matches_torchvision(arch: str, moco_files, tmp_path: Path, image: np.ndarray) -> None:
    path = moco_files[arch]
    keep_head = arch == "resnet18"
    out = convert("moco_cxr", path, tmp_path / "artifact", keep_head=keep_head)
    model = radzoo.load(out)
    assert model.spec.name == f"mococxr_{arch}"
    assert set(model.outputs) == ({"trunk", "proj"} if keep_head else {"trunk"})

    raw = torch.load(path, weights_only=True)["state_dict"]
    ref = _reference_trunk(arch, raw)
    batch = model.prepare([image])
    with torch.inference_mode():
        expected = ref(batch).numpy()
    got = model.embed([image])
    assert got.shape == expected.shape == (1, model.dim)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    if keep_head:
        w0, b0 = raw["module.encoder_q.fc.0.weight"], raw["module.encoder_q.fc.0.bias"]
        w2, b2 = raw["module.encoder_q.fc.2.weight"], raw["module.encoder_q.fc.2.bias"]
        proj = torch.relu(torch.from_numpy(expected) @ w0.T + b0) @ w2.T + b2
        proj = torch.nn.functional.normalize(proj, dim=-1).numpy()
        np.testing.assert_allclose(model.embed([image], output="proj"), proj, rtol=1e-4, atol=1e-5)

    config = json.loads((out / "config.json").read_text())
    prov = config["provenance"]
    assert prov["source_file"] == path.name
    assert prov["source_sha256"] == zoo_sha(path)
    assert prov["converter"] == "radzoo.converters.mococxr_checkpoint" and prov["converter_version"]
    assert set(config["golden"]["outputs"]) == set(model.outputs)
    if keep_head:
        from radzoo.zoo.golden import check_golden

        assert max(check_golden(model).values()) < 1e-5


def zoo_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_densenet_classifier_head_is_dropped_explicitly(moco_files) -> None:
    from radzoo.converters import converted

    conv = converted("moco_cxr", moco_files["densenet121"])
    assert not any(k.startswith("image_proj") for k in conv.state)
    assert "module.encoder_q.classifier.0.weight" in conv.dropped
    assert "module.queue" in conv.dropped and "module.encoder_k.features.conv0.weight" in conv.dropped
    assert len(conv.state) == 725 - 0  # manifest: trunk 725 tensors (incl. num_batches_tracked)
