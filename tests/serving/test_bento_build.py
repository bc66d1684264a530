"""``radzoo bento build``: one source of dependencies (pyproject.toml), and the GPU variant built
offline on CPU (checked from its generated files, not served; the CPU bento is served in
test_bento_fresh_env.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from radzoo.serving.bento_build import (
    read_constraints,
    render_bentofile,
    repository_bentofile,
    requirements,
)

REPO = Path(__file__).resolve().parents[2]
MOCO = "tiny-random-mococxr"


def names(lines: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(line).name.lower().replace("_", "-") for line in lines}


def test_repository_bentofile_is_generated_from_pyproject() -> None:
    text = (REPO / "bentofile.yaml").read_text()
    assert text == render_bentofile(repository_bentofile()), (
        "bentofile.yaml drifted from pyproject.toml: regenerate it with `radzoo bento bentofile --out bentofile.yaml`")
    packages = names(yaml.safe_load(text)["python"]["packages"])
    # the packages whose absence broke the shipped bento (dicom-sr answered 500)
    assert packages >= {"pyarrow", "highdicom", "dicomweb-client", "matplotlib", "onnxruntime", "bentoml", "torch"}


def test_requirements_are_pyproject_pinned_to_constraints() -> None:
    cpu, gpu = requirements(), requirements(gpu=True)
    pins = read_constraints(REPO / "constraints.txt")
    assert "torch==2.14.1" in cpu and f"pyarrow=={pins['pyarrow']}" in cpu
    assert "onnxruntime-gpu" in names(gpu) and "onnxruntime" not in names(gpu)  # never both: one module
    assert "onnxruntime" in names(cpu) and "onnxruntime-gpu" not in names(cpu)
    assert names(cpu) - {"onnxruntime"} == names(gpu) - {"onnxruntime-gpu"}


def test_gpu_bento_builds_offline_with_its_int8_graphs_inside(serving_home: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RADZOO_HOME": str(serving_home),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "PIP_NO_INDEX": "1",
        "UV_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run([sys.executable, "-m", "radzoo.cli", "bento", "build", "--models", MOCO, "--gpu",
                           "--precision", "int8", "--tag", "radzoo-gpu:ci"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.strip().endswith("radzoo-gpu:ci")
    bento = tmp_path / "bentoml" / "bentos" / "radzoo-gpu" / "ci"
    reqs = (bento / "env" / "python" / "requirements.txt").read_text().split()
    assert any(r.startswith("onnxruntime-gpu") for r in reqs) and not any(r.startswith("onnxruntime=") for r in reqs)
    assert "torch==2.14.1" in reqs and any(r.startswith("highdicom==") for r in reqs)
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM nvidia/cuda:12.8.1" in dockerfile and "RADZOO_DEVICE=cuda" in dockerfile
    meta = yaml.safe_load((bento / "bento.yaml").read_text())
    envs = {e["name"]: e["value"] for e in meta["envs"]}
    assert envs["RADZOO_DEVICE"] == "cuda" and envs["HF_HUB_OFFLINE"] == envs["RADZOO_OFFLINE"] == "1"
    assert meta["labels"] == {"project": "radzoo", "owner": "radzoo-developers", "variant": "gpu", "models": MOCO,
                              "precision": "int8", "random_weights": "true"}
    assert meta["args"]["radzoo_models"].startswith(f"{MOCO}=radzoo-{MOCO}:")
    # the model lives in BentoML's model store with its fp32 and int8 graphs: nothing to export at start-up
    (model_tag,) = [m["tag"] for m in meta["models"]]
    name, version = model_tag.split(":")
    folder = tmp_path / "bentoml" / "models" / name / version
    config = yaml.safe_load((folder / "config.json").read_text())
    fp32, int8 = config["onnx"]["graphs"], config["onnx"]["int8"]["graphs"]
    assert set(fp32) == set(int8) and all((folder / g["file"]).is_file() for g in [*fp32.values(), *int8.values()])
    assert (folder / "README.md").is_file() and (folder / "model.safetensors").is_file()
    model_meta = yaml.safe_load((folder / "model.yaml").read_text())
    assert model_meta["labels"]["random_weights"] == "true"


def test_bento_build_refuses_what_a_bento_cannot_hold(capsys: pytest.CaptureFixture[str]) -> None:
    from radzoo.cli import main

    with pytest.raises(SystemExit):
        main(["bento", "build", "--models", MOCO, "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
    assert main(["bento", "build", "--models", " , "]) == 1
    assert "name at least one model" in capsys.readouterr().err


def test_bento_arguments_set_models_and_precision_unless_the_environment_does(tmp_path: Path) -> None:
    from radzoo.errors import InputError
    from radzoo.serving.bento_models import parse_models_arg, with_bento
    from radzoo.serving.settings import ServeSettings

    assert parse_models_arg("a=radzoo-a:v1, b=radzoo-b:v2") == {"a": "radzoo-a:v1", "b": "radzoo-b:v2"}
    with pytest.raises(InputError, match="expected name=tag items, got 'a'"):
        parse_models_arg("a")
    args = {"radzoo_models": "a=radzoo-a:v1", "radzoo_precision": "int8"}
    paths = {"a": tmp_path}
    served = with_bento(ServeSettings(), args, paths, {})
    assert served.models == ("a",) and served.precision == "int8"
    chosen = with_bento(ServeSettings(models=("b",)), args, paths, {"RADZOO_MODELS": "b", "RADZOO_PRECISION": "fp32"})
    assert chosen.models == ("b",) and chosen.precision == "fp32"
    assert with_bento(ServeSettings(), {}, {}, {}) == ServeSettings()  # not a bento: nothing changes
