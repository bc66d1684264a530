"""``export_artifact``: every graph exported with dynamic axes, parity recorded, atomic writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import onnx
import radzoo
from conftest import TINY, save_with_golden
from radzoo import zoo
from radzoo.artifacts import export_artifact
from radzoo.errors import InputError
from radzoo.onnx.export import ParityError
from radzoo.zoo.tiny import tiny_specs

EXPECTED_GRAPHS = {
    "tiny-random-mococxr": {"image_trunk", "image_proj"},
    "tiny-random-prior": {"image_trunk", "image_pooled", "image_global", "text_global"},
    "tiny-random-lovt": {"image_trunk", "image_pooled", "image_global", "text_global"},
    "tiny-random-igcl": {"image_trunk", "image_global", "graph_global"},
    "tiny-random-graphct": {"patch_encoder", "gnn"},
}


@pytest.mark.parametrize("name", TINY)
def test_every_graph_exported_with_parity(name: str, exported) -> None:
    directory = exported(name)
    config = json.loads((directory / "config.json").read_text())
    section = config["onnx"]
    assert set(section["graphs"]) == EXPECTED_GRAPHS[name]
    assert section["opset"] == 17 and "dynamo=False" in section["exporter"]
    assert section["onnxruntime_version"]
    for graph, entry in section["graphs"].items():
        path = directory / entry["file"]
        assert path.is_file() and entry["file"] == f"onnx/{graph}.onnx"
        assert 0.0 <= entry["parity_max_abs_diff"] <= 1e-4
        assert entry["weights_sha256"] == config["weights"]["sha256"]
        proto = onnx.load(str(path), load_external_data=False)
        assert proto.opset_import[0].version == 17
        # every declared dynamic axis is symbolic in the graph (batch / sequence / nodes / edges)
        for inp in proto.graph.input:
            dims = inp.type.tensor_type.shape.dim
            for axis, label in entry["dynamic_axes"][inp.name].items():
                assert dims[int(axis)].dim_param == label, (graph, inp.name, axis)
    # text graphs also have a dynamic sequence axis
    if "text_global" in section["graphs"]:
        assert section["graphs"]["text_global"]["inputs"]["input_ids"][:2] == ["batch", "sequence"]
    card = (directory / "README.md").read_text()
    assert "## ONNX" in card and "opset 17" in card
    assert config["golden"]  # other sections survive the export
    assert not [p for p in directory.iterdir() if p.name.startswith(".onnx-export-")]


def test_export_failing_parity_writes_nothing(tmp_path: Path) -> None:
    directory = save_with_golden("tiny-random-mococxr", tmp_path / "m")
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    with pytest.raises(ParityError, match="image_trunk.*tolerance 1e-12"):
        export_artifact(directory, outputs=["trunk"], parity_tol=1e-12)  # real diff ~1e-6 > tolerance
    after = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    assert after == before
    assert sorted(p.name for p in directory.iterdir()) == sorted(before)  # no onnx/ dir, no temp dir


def test_export_subset_then_rest_keeps_earlier_graphs(tmp_path: Path) -> None:
    directory = save_with_golden("tiny-random-mococxr", tmp_path / "m")
    first = export_artifact(directory, outputs=["trunk"])
    assert set(first["graphs"]) == {"image_trunk"}
    second = export_artifact(directory, outputs=["image_proj"])
    assert set(second["graphs"]) == {"image_trunk", "image_proj"}
    assert second["graphs"]["image_trunk"] == first["graphs"]["image_trunk"]
    with pytest.raises(InputError, match="no exportable graph or output 'pooled'.*image_trunk"):
        export_artifact(directory, outputs=["pooled"])
    with pytest.raises(InputError, match="parity_tol"):
        export_artifact(directory, parity_tol=-1.0)
    # re-saving the model drops the export: graphs belong to the weights file they came from
    zoo.save(radzoo.load(directory, runtime="torch"), tmp_path / "copy")
    assert "onnx" not in json.loads((tmp_path / "copy" / "config.json").read_text())


@pytest.mark.slow
def test_full_size_registry_model_parity(tmp_path: Path) -> None:
    """mococxr_resnet18 at its real 320 px input (random weights: no download here)."""
    model = radzoo.build("mococxr_resnet18", device="cpu", runtime="torch")
    directory = zoo.save(model, tmp_path / "mococxr_resnet18")
    start = time.perf_counter()
    section = export_artifact(directory)
    elapsed = time.perf_counter() - start
    entry = section["graphs"]["image_trunk"]
    assert entry["inputs"]["image"] == ["batch", 3, 320, 320]
    assert entry["parity_max_abs_diff"] <= 1e-4
    onnx_model = radzoo.load(directory, runtime="onnx")
    x = np.random.default_rng(5).standard_normal((1, 3, 320, 320)).astype(np.float32)
    with torch.inference_mode():
        ref = model.net.image_features(torch.from_numpy(x), "trunk").numpy()
    np.testing.assert_allclose(onnx_model.embed_batch(x), ref, atol=1e-4, rtol=0)
    assert elapsed < 60, f"export of a full-size ResNet18 took {elapsed:.0f} s"


def test_tiny_specs_cover_all_methods() -> None:
    assert {s.method for s in tiny_specs().values()} == {"mococxr", "prior", "lovt", "igcl", "graphct"}
