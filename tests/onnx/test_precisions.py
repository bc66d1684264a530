"""Precisions: int8 (static QDQ, calibrated on real images, gated by cosine to fp32), bf16 (torch),
and the GPU-only paths' clear errors on this CPU machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import radzoo
from conftest import save_with_golden
from radzoo.cli import main
from radzoo.errors import CapabilityError, DeviceError, InputError
from radzoo.onnx.export_cache import cache_folder, find_or_export
from radzoo.onnx.precision_graphs import PrecisionGateError, cosines, ensure_int8
from radzoo.zoo.tiny import tiny_specs

MOCO = "tiny-random-mococxr"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("RADZOO_HOME", str(path))
    return path


def _cxr_batch(model, files: list[Path]) -> np.ndarray:
    return model.prepare([str(f) for f in files]).numpy()


def test_int8_on_load_calibrates_on_the_packaged_cxrs_and_passes_its_gate(home: Path, shared_data: Path) -> None:
    spec = tiny_specs()[MOCO]
    model = radzoo.build(spec, device="cpu", precision="int8")
    assert model.runtime.name == "onnx" and model.runtime.precision == "int8"
    assert "int8 QDQ graphs (cosine gate passed)" in model.runtime.reason
    record = json.loads((cache_folder(model) / "onnx.json").read_text())["int8"]
    cal = record["calibration"]
    assert cal["source"].startswith("packaged example chest X-rays") and len(cal["digest"]) == 64
    assert (cal["calibration_inputs"], cal["held_apart_inputs"]) == (4, 2)
    for entry in record["graphs"].values():
        assert entry["gate"]["cosine_mean"] >= 0.99 and entry["gate"]["cosine_min"] >= 0.98
    # independent check on other real CXRs: int8 embeddings point where fp32 ones do
    files = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[:8]
    fp32 = radzoo.build(spec, device="cpu", runtime="torch")
    x = _cxr_batch(fp32, files)
    cos = cosines(fp32.embed_batch(x), model.embed_batch(x))
    assert cos.min() > 0.98, cos
    assert "Q" in "".join(n.op_type[:1] for n in __import__("onnx").load(
        str(cache_folder(model) / record["graphs"]["image_trunk"]["file"])).graph.node)  # QuantizeLinear nodes
    again = radzoo.build(spec, device="cpu", precision="int8")
    assert "found in the ONNX cache" in again.runtime.reason


def test_int8_gate_refuses_with_the_measured_cosine(home: Path) -> None:
    model = radzoo.build(tiny_specs()[MOCO], device="cpu", runtime="torch")
    store = find_or_export(model)
    with pytest.raises(PrecisionGateError) as err:
        ensure_int8(model, store, thresholds=(1.0, 1.0))  # an exact match is impossible after quantisation
    message = str(err.value)
    assert "int8 refused for tiny-random-mococxr graph 'image_trunk'" in message
    assert "cosine to fp32 on 2 held-apart inputs is mean 0.99" in message and "nothing was saved" in message
    assert "int8" not in json.loads((store.root / "onnx.json").read_text())
    assert not list((store.root / "onnx").glob("*.int8.onnx"))


def test_cli_export_int8_with_calibration_images(tmp_path: Path, home: Path, shared_data: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    directory = save_with_golden(MOCO, tmp_path / "m")
    images = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[:9]
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in images:
        shutil.copy(f, calib / f.name)
    assert main(["export", str(directory), "--precision", "int8", "--calibration", str(calib)]) == 0
    out = capsys.readouterr().out
    assert "int8 calibrated on 6 inputs from 9 image(s) given with --calibration" in out
    assert "onnx/image_trunk.int8.onnx" in out and "mean 0.99" in out
    config = json.loads((directory / "config.json").read_text())
    assert set(config["onnx"]["int8"]["graphs"]) == {"image_trunk", "image_proj"}
    assert config["onnx"]["int8"]["calibration"]["held_apart_inputs"] == 3
    card = (directory / "README.md").read_text()
    assert "### int8 (static QDQ" in card and config["onnx"]["int8"]["calibration"]["digest"][:16] in card
    loaded = radzoo.load(directory, precision="int8")  # uses the artifact's int8 graphs, no new calibration
    assert "found in the artifact" in loaded.runtime.reason and loaded.runtime.precision == "int8"
    # the refusal is a clear CLI error, and an empty calibration folder is named
    (tmp_path / "empty").mkdir()
    assert main(["export", str(directory), "--precision", "int8", "--calibration", str(tmp_path / "empty")]) == 1
    assert "no calibration files found" in capsys.readouterr().err
    assert main(["export", str(directory), "--calibration", str(calib)]) == 1
    assert "--calibration applies to --precision int8" in capsys.readouterr().err


def test_ct_patch_encoder_int8_needs_ct_volumes_and_calibrates_on_them(tmp_path: Path, home: Path,
                                                                      shared_data: Path) -> None:
    directory = save_with_golden("tiny-random-graphct", tmp_path / "ct")
    with pytest.raises(InputError, match="no default int8 calibration set for 'ct' models"):
        radzoo.load(directory, precision="int8")
    volume = shared_data / "ct" / "totalseg_example_ct_sm.nii.gz"
    from radzoo.artifacts import export_artifact

    section = export_artifact(directory, precision="int8", calibration=[volume])
    assert set(section["int8"]["graphs"]) == {"patch_encoder"}  # the GCN stays fp32
    cal = section["int8"]["calibration"]
    assert cal["files"] == 1 and "every 3rd patch held apart" in cal["notes"][0]
    model = radzoo.load(directory, precision="int8")
    patches = np.random.default_rng(0).uniform(-1, 1, size=(4, 1, 32, 32, 32)).astype(np.float32)
    fp32 = radzoo.load(directory, runtime="torch")
    assert cosines(fp32.runtime.encode_patches(patches), model.runtime.encode_patches(patches)).min() > 0.95
    edges = np.array([[0, 1, 2], [1, 2, 3]])
    assert model.runtime.encode_graph(fp32.runtime.encode_patches(patches), edges).shape == (4, 128)


def test_bf16_runs_in_torch_with_autocast(home: Path) -> None:
    spec = tiny_specs()[MOCO]
    model = radzoo.build(spec, device="cpu", precision="bf16")
    assert model.runtime.name == "torch" and model.runtime.precision == "bf16"
    assert "oneDNN bf16 autocast" in model.runtime.reason and not (home / "onnx-cache").exists()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    ref = radzoo.build(spec, device="cpu", runtime="torch").embed_batch(x)
    got = model.embed_batch(x)
    assert got.dtype == np.float32 and cosines(ref, got).min() > 0.99
    assert not np.array_equal(ref, got)  # it really computed in bf16
    with pytest.raises(CapabilityError, match="bf16' on a CPU runs in torch"):
        radzoo.build(spec, device="cpu", precision="bf16", runtime="onnx")
    with pytest.raises(InputError, match="int8' runs on onnxruntime"):
        radzoo.build(spec, device="cpu", precision="int8", runtime="torch")
    with pytest.raises(InputError, match="fp16' is the GPU half precision"):
        radzoo.build(spec, device="cpu", precision="fp16")
    with pytest.raises(InputError, match="unknown precision 'fp8'"):
        radzoo.build(spec, device="cpu", precision="fp8")


def test_cuda_without_gpu_or_onnxruntime_gpu_names_what_is_missing(tmp_path: Path, home: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """This machine has no GPU and the CPU onnxruntime wheel: both are named, before any weights load."""
    import torch

    from radzoo.onnx.ort_runtime import gpu_providers

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the GPU path runs in benchmarks/gpu_check.sh")
    spec = tiny_specs()[MOCO]
    with pytest.raises(DeviceError) as err:
        radzoo.build(spec, device="cuda")
    text = str(err.value)
    assert "device 'cuda' requested, but no CUDA GPU is available (torch.cuda.is_available() is False" in text
    assert "has no CUDAExecutionProvider" in text and "onnxruntime-gpu" in text and "radzoo[gpu]" in text
    with pytest.raises(DeviceError) as err:
        radzoo.build(spec, device="cuda:0", runtime="torch")  # torch alone does not need onnxruntime-gpu
    assert "no CUDA GPU is available" in str(err.value) and "onnxruntime-gpu" not in str(err.value)
    with pytest.raises(CapabilityError, match="onnxruntime cannot use the GPU: .*onnxruntime-gpu"):
        gpu_providers(0, "fp16")
    directory = save_with_golden(MOCO, tmp_path / "m")
    images = tmp_path / "img"
    images.mkdir()
    assert main(["extract", str(images), "--model", str(directory), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 1
    err_text = capsys.readouterr().err
    assert "no CUDA GPU is available" in err_text and "onnxruntime-gpu" in err_text
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_extraction_records_the_precision_and_never_mixes_two(tmp_path: Path, home: Path, shared_data: Path) -> None:
    from radzoo.extract import extract_features, read_table

    directory = save_with_golden(MOCO, tmp_path / "m")
    images = tmp_path / "png"
    images.mkdir()
    for f in sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[:5]:
        shutil.copy(f, images / f.name)
    out = tmp_path / "out"
    result = extract_features(str(directory), [images], out, precision="int8", batch_size=2, quiet=True)
    assert result.ok and result.counts.written == 5
    run = result.manifest["runs"][-1]["options"]
    assert run["precision"] == "int8" and run["runtime"] == "onnx" and "int8 QDQ" in run["runtime_reason"]
    assert result.manifest["model"]["precision"] == "int8"
    rows = read_table(out, "embeddings").to_pylist()
    assert {r["precision"] for r in rows} == {"int8"}
    with pytest.raises(InputError, match="precision=int8.*precision=fp32"):
        extract_features(str(directory), [images], out, quiet=True)  # fp32 into an int8 folder
    fp32 = extract_features(str(directory), [images], tmp_path / "fp32", batch_size=2, quiet=True)
    assert fp32.manifest["runs"][-1]["options"]["runtime_reason"].startswith("auto: onnxruntime with parity-checked")
    ref = {r["path"]: np.asarray(r["embedding"]) for r in read_table(tmp_path / "fp32", "embeddings").to_pylist()}
    got = {r["path"]: np.asarray(r["embedding"]) for r in rows}
    paths = sorted(ref)
    assert cosines(np.stack([ref[p] for p in paths]), np.stack([got[p] for p in paths])).min() > 0.98
