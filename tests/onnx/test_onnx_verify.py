"""``verify``: golden outputs recomputed with torch and ONNX; FAIL on changed weights or graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import radzoo
from conftest import TINY, save_with_golden
from radzoo import zoo
from radzoo.artifacts import export_artifact, verify_artifact
from radzoo.cli import main
from radzoo.errors import ArtifactError, InputError
from radzoo.onnx.verify import ONNX_TOL, TORCH_TOL
from radzoo.zoo.tiny import tiny_specs
from radzoo.zoo.weights import sha256_file


@pytest.mark.parametrize("name", TINY)
def test_verify_passes_on_exported_artifacts(name: str, exported) -> None:
    report = verify_artifact(exported(name))
    assert report.passed, report.format()
    golden = json.loads((exported(name) / "config.json").read_text())["golden"]["outputs"]
    torch_rows = {c.target for c in report.checks if c.runtime == "torch"}
    onnx_rows = {c.target for c in report.checks if c.runtime == "onnx" and c.max_abs_diff is not None}
    assert torch_rows == set(golden) and set(golden) <= onnx_rows
    assert report.max_deviation("torch") <= TORCH_TOL
    assert report.max_deviation("onnx") <= ONNX_TOL


def _perturb_weights(directory: Path, update_config: bool) -> None:
    path = directory / "model.safetensors"
    state = load_file(str(path))
    key = next(k for k, v in state.items() if v.dtype == torch.float32 and v.ndim == 4)  # first conv
    state[key] = state[key] + 0.05
    save_file(state, str(path), metadata={"format": "pt"})
    if update_config:  # as if someone rewrote the weights and "fixed" the hash
        config = json.loads((directory / "config.json").read_text())
        config["weights"]["sha256"] = sha256_file(path)
        (directory / "config.json").write_text(json.dumps(config))


def test_verify_fails_on_perturbed_weights(exported_copy) -> None:
    directory = exported_copy("tiny-random-mococxr")
    _perturb_weights(directory, update_config=False)
    report = verify_artifact(directory)
    assert not report.passed
    assert report.checks[0].target == "load" and "sha256 does not match" in report.checks[0].note

    _perturb_weights(directory, update_config=True)
    report = verify_artifact(directory, runtime="torch")
    assert not report.passed
    failed = {c.target for c in report.checks if not c.passed}
    assert failed == {"trunk", "proj"}
    assert report.max_deviation("torch") > 1e-3
    # the ONNX graphs now belong to other weights: reported, and their outputs still match golden
    report = verify_artifact(directory, runtime="onnx")
    notes = {c.target: c.note for c in report.checks}
    assert notes["image_trunk file"] == "exported from other weights" and not report.passed


def test_verify_fails_on_replaced_onnx_file(exported_copy, tmp_path: Path) -> None:
    directory = exported_copy("tiny-random-igcl")
    other = save_with_golden("tiny-random-igcl", tmp_path / "other", seed=1)  # different weights
    export_artifact(other, outputs=["global"])
    shutil.copyfile(other / "onnx" / "image_global.onnx", directory / "onnx" / "image_global.onnx")
    report = verify_artifact(directory, runtime="onnx")
    assert not report.passed
    rows = {c.target: c for c in report.checks}
    assert not rows["image_global file"].passed and "sha256" in rows["image_global file"].note
    assert not rows["global"].passed and rows["global"].max_abs_diff > ONNX_TOL
    assert rows["trunk"].passed and rows["image_trunk file"].passed
    assert verify_artifact(directory, runtime="torch").passed  # torch side is intact


def test_verify_graphct_detects_replaced_gnn(exported_copy, tmp_path: Path) -> None:
    directory = exported_copy("tiny-random-graphct")
    other = save_with_golden("tiny-random-graphct", tmp_path / "other", seed=3)
    export_artifact(other, outputs=["gnn"])
    shutil.copyfile(other / "onnx" / "gnn.onnx", directory / "onnx" / "gnn.onnx")
    report = verify_artifact(directory, runtime="onnx")
    rows = {c.target: c for c in report.checks}
    assert rows["patch"].passed and not rows["node"].passed and not rows["subject"].passed


def test_verify_without_golden_or_export(saved, tmp_path: Path) -> None:
    model = radzoo.build(tiny_specs()["tiny-random-mococxr"], device="cpu", runtime="torch")
    bare = zoo.save(model, tmp_path / "bare")
    with pytest.raises(ArtifactError, match="no 'golden' section.*compute_golden"):
        verify_artifact(bare)
    plain = saved("tiny-random-mococxr")
    both = verify_artifact(plain)  # no export: ONNX skipped, torch decides
    assert both.passed and any(c.note.startswith("skipped") for c in both.checks)
    only_onnx = verify_artifact(plain, runtime="onnx")
    assert not only_onnx.passed and "radzoo export" in only_onnx.checks[0].note
    with pytest.raises(InputError, match="runtime must be one of"):
        verify_artifact(plain, runtime="tensorrt")
    with pytest.raises(ArtifactError, match="not a radzoo artifact"):
        verify_artifact(tmp_path)


def test_cli_export_and_verify_exit_codes(saved, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "m"
    shutil.copytree(saved("tiny-random-mococxr"), directory)
    assert main(["verify", str(directory), "--runtime", "onnx"]) == 1
    assert "radzoo export" in capsys.readouterr().out

    assert main(["export", str(directory), "--outputs", "trunk", "proj"]) == 0
    out = capsys.readouterr().out
    assert "onnx/image_trunk.onnx" in out and "parity max abs diff" in out

    assert main(["verify", str(directory)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("RESULT: PASS") and "onnx   trunk" in out

    assert main(["verify", str(directory), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True

    _perturb_weights(directory, update_config=True)
    assert main(["verify", str(directory), "--runtime", "torch"]) == 1
    assert "FAIL" in capsys.readouterr().out

    assert main(["export", str(directory), "--outputs", "nope"]) == 1
    assert "no exportable graph or output 'nope'" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing")]) == 1
    assert "error" in capsys.readouterr().err
    bare = zoo.save(radzoo.load(directory, runtime="torch"), tmp_path / "bare")
    config = json.loads((bare / "config.json").read_text())
    config.pop("golden")
    (bare / "config.json").write_text(json.dumps(config))
    assert main(["verify", str(bare)]) == 1
    assert "no 'golden' section" in capsys.readouterr().err
