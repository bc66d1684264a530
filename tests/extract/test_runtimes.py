"""torch and onnxruntime give the same embeddings through extraction (within ONNX tolerance)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from radzoo.extract import extract_features, read_table

pytest.importorskip("onnxruntime")


def test_onnx_runtime_matches_torch(tiny_model_dir: Path, png_subset: Path, tmp_path: Path) -> None:
    from radzoo.artifacts import export_artifact

    artifact = tmp_path / "model"
    shutil.copytree(tiny_model_dir, artifact)
    export_artifact(artifact, outputs=["trunk"])
    common = {"workers": 0, "threads": 1, "quiet": True, "batch_size": 5}
    t = extract_features(str(artifact), [png_subset], tmp_path / "torch", runtime="torch", **common)
    o = extract_features(str(artifact), [png_subset], tmp_path / "onnx", runtime="onnx", **common)
    assert t.ok and o.ok and o.manifest["runs"][-1]["options"]["runtime"] == "onnx"
    assert o.manifest["model"] == t.manifest["model"]  # same weights and preprocessing: same identity
    rows = lambda out: {r["path"]: np.asarray(r["embedding"]) for r in read_table(out, "embeddings").to_pylist()}  # noqa: E731
    a, b = rows(tmp_path / "torch"), rows(tmp_path / "onnx")
    assert sorted(a) == sorted(b) and len(a) == 12
    for p in a:
        np.testing.assert_allclose(b[p], a[p], rtol=1e-3, atol=1e-4)


def test_onnx_exports_on_first_use_when_the_artifact_has_none(tiny_model_dir: Path, png_subset: Path,
                                                              tmp_path: Path) -> None:
    from radzoo import load, zoo

    artifact = zoo.save(load(tiny_model_dir, runtime="torch"), tmp_path / "model")  # saved without ONNX graphs
    assert not (artifact / "onnx").exists()
    result = extract_features(str(artifact), [png_subset], tmp_path / "o", runtime="onnx", quiet=True)
    options = result.manifest["runs"][-1]["options"]
    assert result.ok and options["runtime"] == "onnx" and options["precision"] == "fp32"
    assert "exported now in the artifact's onnx/ folder" in options["runtime_reason"]
