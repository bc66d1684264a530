"""The one door (``radzoo.load`` / ``radzoo.build``): each decision once, cheap refusals first, reasons kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import radzoo
from radzoo import zoo
from radzoo.errors import ArtifactError, InputError, ModelNotFoundError
from radzoo.zoo.tiny import tiny_specs

TINY = "tiny-random-mococxr"


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return zoo.save(radzoo.build(tiny_specs()[TINY], seed=3), tmp_path / "art")


def test_load_and_build_return_the_capable_model_class(saved: Path) -> None:
    loaded = radzoo.load(saved, runtime="torch")
    built = radzoo.build("prior_resnet50_imagetext")
    assert isinstance(loaded, radzoo.Model) and isinstance(built, radzoo.Model)
    assert loaded.capabilities == {"embed"} and "zero_shot" in built.capabilities
    assert built.random_init and built.config["provenance"]["random_init"] is True
    assert "zero_shot" in built.config  # the default prompt set travels with text models


def test_runtime_reason_is_recorded(saved: Path) -> None:
    assert radzoo.load(saved, runtime="torch").runtime.reason == "requested runtime='torch'"
    auto = radzoo.build("mococxr_resnet18", runtime="auto")
    assert auto.runtime.name in ("torch", "onnx") and auto.runtime.reason.startswith("auto")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'"),
        ({"threads": 0}, "threads must be an integer >= 1"),
        ({"runtime": "torch", "runtime_options": {"providers": ["CPUExecutionProvider"]}}, "apply to onnxruntime"),
        ({"tokenizer": "/tmp"}, "tokenizer= applies to random-weight builds"),
        ({"random_weights": True, "revision": "v1"}, "revision= names real weights"),
    ],
)
def test_bad_requests_are_refused_before_weights_are_read(kwargs: dict, match: str, monkeypatch) -> None:
    from radzoo.zoo import artifact

    def never(*_a, **_k):  # the refusal must come first
        raise AssertionError("weights were read before the request was checked")

    monkeypatch.setattr(artifact, "read_weights", never)
    with pytest.raises(InputError, match=match):
        radzoo.load("mococxr_resnet18", **kwargs)


def test_random_weights_refuse_an_artifact_folder(saved: Path) -> None:
    with pytest.raises(InputError, match="random_weights=True builds a model by name"):
        radzoo.load(saved, random_weights=True)
    with pytest.raises(InputError, match="ModelSpec has no weights"):
        radzoo.load(zoo.get_spec("mococxr_resnet18"))


def test_every_source_says_why_it_failed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RADZOO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError) as err:
        radzoo.load("mococxr_resnet18")
    msg = str(err.value)
    assert f"local zoo: not in {tmp_path / 'home' / 'models' / 'mococxr_resnet18'}" in msg
    assert "Hub: radzoo/mococxr_resnet18@v1 is not in the local HF cache" in msg
    assert "original release: not downloaded in offline mode" in msg
    with pytest.raises(ModelNotFoundError) as err:
        radzoo.load("lovt_resnet50")
    assert "original release: none was published for lovt" in str(err.value)
    assert "radzoo train lovt" in str(err.value)


def test_missing_path_and_unknown_name() -> None:
    with pytest.raises(ArtifactError, match="no artifact directory"):
        radzoo.load("./nowhere/at/all")
    with pytest.raises(ModelNotFoundError, match="mococxr_resnet18"):
        radzoo.load("mococxr_resnet81")


def test_threads_apply_to_torch(saved: Path) -> None:
    before = torch.get_num_threads()
    try:
        radzoo.load(saved, runtime="torch", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_zoo_load_and_build_are_the_same_door() -> None:
    """``from radzoo import zoo; zoo.load(...)`` is the promised interface: the very same functions."""
    import inspect

    assert zoo.load is radzoo.load and zoo.build is radzoo.build
    assert inspect.signature(zoo.load) == inspect.signature(radzoo.resolve.load)
    assert {"load", "build"} <= set(zoo.__all__)


def test_zoo_load_offline_prints_where_it_looked(tmp_path: Path) -> None:
    """The README's first Python line, run as a user would with the network cut: a clear error, no AttributeError."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "RADZOO_HOME": str(tmp_path / "home"), "RADZOO_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", "from radzoo import zoo; zoo.load('prior_resnet50')"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "AttributeError" not in proc.stderr
    assert "ModelNotFoundError" in proc.stderr
    for place in ("local zoo: not in", "Hub: ", "original release: "):
        assert place in proc.stderr, proc.stderr
