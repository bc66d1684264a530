"""Start-up cost: what a job imports is what it needs (heavy stacks load with the models that use them)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "torch_geometric", "transformers", "onnxruntime", "bentoml", "ray")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=300)


def _loaded_after(code: str) -> tuple[set[str], str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = _run(probe)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1])), proc.stderr


def test_building_a_cnn_imports_no_graph_or_text_stack_and_warns_nothing() -> None:
    loaded, err = _loaded_after("import radzoo\nradzoo.build('mococxr_resnet18')")
    assert "torch" in loaded
    assert not loaded & {"torch_geometric", "transformers", "onnx", "onnxruntime"}, loaded & set(HEAVY)
    assert err == ""


def test_listing_models_imports_no_heavy_stack() -> None:
    loaded, err = _loaded_after("from radzoo.cli import main\nmain(['models', '--json'])")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    assert err == ""


def test_text_and_graph_models_pull_their_stacks_only_when_built() -> None:
    loaded, _ = _loaded_after("import radzoo\nradzoo.build('prior_resnet50_imagetext')")
    assert "transformers" in loaded and "torch_geometric" not in loaded
