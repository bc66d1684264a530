"""Golden outputs: embeddings of fixed, seeded inputs, stored in an artifact to prove nothing changed.

Inputs live in the *preprocessed* space (what the network receives), so the check isolates the
weights and the runtime from image decoding. ``verify`` recomputes them with torch and ONNX.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from radzoo.zoo.model import ZooModel
from radzoo.zoo.spec import Preprocess

GOLDEN_SEED = 0
GOLDEN_N = 2
GRAPH_NODES = 8  # graph-CT golden graph: a chain of 8 patches (the GCN is size-agnostic)


def input_shape(preprocess: Preprocess) -> tuple[int, int, int]:
    """``(C, H, W)`` the network receives, read from the last size-setting step."""
    size: tuple[int, int] | None = None
    for step in preprocess.steps:
        if step["op"] in ("resize", "center_crop", "pad_center") and (
            step["op"] != "resize" or step.get("mode") == "exact"
        ):
            s = step["size"]
            size = (int(s[0]), int(s[1])) if isinstance(s, (list, tuple)) else (int(s), int(s))
    if size is None:
        raise ValueError("preprocessing does not fix the input size")
    return (preprocess.channels, *size)


def golden_inputs(model: ZooModel, n: int = GOLDEN_N) -> dict[str, np.ndarray]:
    """Seeded inputs: ``image`` [n, C, H, W] for 2D models; ``patches`` and ``edge_index`` for graph-CT."""
    rng = np.random.default_rng(GOLDEN_SEED)
    if model.spec.method == "graphct":
        patches = rng.uniform(-1.0, 1.0, size=(GRAPH_NODES, 1, 32, 32, 32)).astype(np.float32)
        src = np.arange(GRAPH_NODES - 1)
        edges = np.concatenate([np.stack([src, src + 1]), np.stack([src + 1, src])], axis=1).astype(np.int64)
        return {"patches": patches, "edge_index": edges}
    return {"image": rng.standard_normal((n, *input_shape(model.spec.preprocess))).astype(np.float32)}


def _torch_outputs(model: ZooModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    net = model.net
    with torch.inference_mode():
        if model.spec.method == "graphct":
            out = net(
                torch.from_numpy(inputs["patches"]).to(model.device),
                torch.from_numpy(inputs["edge_index"]).to(model.device),
            )
            return {k: v.float().cpu().numpy().reshape(-1, 128 if v.ndim else 1) for k, v in out.items()}
    return {name: model.embed_batch(inputs["image"], name) for name in model.spec.outputs}


def compute_golden(model: ZooModel) -> dict[str, Any]:
    """The ``golden`` config section: seed, input recipe and every output as nested lists."""
    inputs = golden_inputs(model)
    outputs = _torch_outputs(model, inputs)
    return {
        "seed": GOLDEN_SEED,
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "outputs": {k: v.astype(np.float32).tolist() for k, v in outputs.items()},
    }


def check_golden(model: ZooModel, golden: dict[str, Any] | None = None) -> dict[str, float]:
    """Max abs deviation per output between the stored golden outputs and a recomputation.

    Uses the model's current runtime for 2D image outputs (so an ONNX-backed model checks ONNX).
    """
    golden = golden or model.config.get("golden")
    if not golden:
        raise ValueError(f"model {model.name!r} has no golden outputs recorded")
    inputs = golden_inputs(model)
    current = _torch_outputs(model, inputs)
    devs = {}
    for name, stored in golden["outputs"].items():
        ref = np.asarray(stored, dtype=np.float32)
        got = current[name]
        if ref.shape != got.shape:
            devs[name] = float("inf")
        else:
            devs[name] = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    return devs
