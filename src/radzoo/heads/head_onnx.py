"""A head as its own tiny ONNX graph: ``embedding`` (N, D) float32 -> ``probability`` (N, L) float64
(calibrated) and ``decision_value`` (N, L), exported from a torch module that mirrors
``head_apply`` (standardise, linear or MLP, sigmoid or isotonic map) and checked for parity with
the numpy head before it is kept.

The isotonic map becomes a sum of clipped ramps, ``y0 + sum_k slope_k * clip(z - x_k, 0, x_{k+1}
- x_k)``: the same piecewise-linear function as ``np.interp`` (constant outside the thresholds),
built from Sub, Clip and MatMul. The graph computes in float64, as the numpy head does, so it
runs after any base-model graph (fp32, bf16, int8) and its thresholds mean the same.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from radzoo.errors import ArtifactError
from radzoo.heads.head_apply import decision_values, probabilities
from radzoo.heads.head_file import TaskHead

DEFAULT_OPSET = 17
PARITY_TOL = 1e-9
INPUT, OUTPUTS = "embedding", ("probability", "decision_value")


class _LabelHead(nn.Module):
    """One label: scaler, linear/MLP, calibration map, all float64."""

    def __init__(self, head: TaskHead, j: int) -> None:
        super().__init__()
        t, sec = head.tensors, head.label_section(head.labels[j])
        as64 = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        self.register_buffer("mean", as64(t[f"head{j}.mean"]))
        self.register_buffer("scale", as64(t[f"head{j}.scale"]))
        if sec["kind"] == "linear":
            self.layers = [(as64(t[f"head{j}.coef"]).reshape(-1, 1), as64(t[f"head{j}.intercept"]))]
        else:
            n = len(sec["hidden"]) + 1
            self.layers = [(as64(t[f"head{j}.mlp.{i}.weight"]).T.contiguous(), as64(t[f"head{j}.mlp.{i}.bias"]))
                           for i in range(n)]
        for i, (w, b) in enumerate(self.layers):
            self.register_buffer(f"w{i}", w)
            self.register_buffer(f"b{i}", b)
        cal = sec["calibration"]
        self.sigmoid = cal["method"] == "sigmoid"
        if self.sigmoid:
            self.register_buffer("a", torch.tensor(float(cal["a"]), dtype=torch.float64))
            self.register_buffer("b", torch.tensor(float(cal["b"]), dtype=torch.float64))
        else:
            x, y = np.asarray(cal["x"], dtype=np.float64), np.asarray(cal["y"], dtype=np.float64)
            width = np.diff(x)
            keep = width > 0
            slope = np.zeros_like(width)
            slope[keep] = np.diff(y)[keep] / width[keep]
            self.register_buffer("x0", as64(x[:-1][keep]).reshape(1, -1))
            self.register_buffer("width", as64(width[keep]).reshape(1, -1))
            self.register_buffer("slope", as64(slope[keep]).reshape(-1, 1))
            self.register_buffer("y0", torch.tensor(float(y[0]), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = (x - self.mean) / self.scale
        n = len(self.layers)
        for i in range(n):
            h = h @ getattr(self, f"w{i}") + getattr(self, f"b{i}")
            if i < n - 1:
                h = torch.relu(h)
        z = h  # (N, 1)
        if self.sigmoid:
            p = torch.sigmoid(-(self.a * z + self.b))
        else:
            ramps = torch.minimum(torch.clamp(z - self.x0, min=0.0), self.width)  # (N, K)
            p = torch.clamp(self.y0 + ramps @ self.slope, 0.0, 1.0)
        return p, z


class HeadModule(nn.Module):
    """Every label of a head: float32 embeddings in, float64 (probability, decision value) out."""

    def __init__(self, head: TaskHead) -> None:
        super().__init__()
        self.labels = nn.ModuleList(_LabelHead(head, j) for j in range(len(head.labels)))

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = embedding.to(torch.float64)
        parts = [m(x) for m in self.labels]
        return torch.cat([p for p, _ in parts], dim=1), torch.cat([z for _, z in parts], dim=1)


def head_parity(head: TaskHead, path: str | os.PathLike[str], embeddings: np.ndarray) -> float:
    """Max |difference| between the ONNX graph's outputs and the numpy head on ``embeddings``."""
    from radzoo.onnx.ort_runtime import make_session

    session = make_session(path, providers=["CPUExecutionProvider"])
    x = np.asarray(embeddings, dtype=np.float32)
    p, z = session.run(list(OUTPUTS), {INPUT: x})
    return float(max(np.max(np.abs(p - probabilities(head, x))), np.max(np.abs(z - decision_values(head, x)))))


def export_head_onnx(head: TaskHead, out: str | os.PathLike[str], *, embeddings: np.ndarray | None = None,
                     opset: int = DEFAULT_OPSET, tol: float = PARITY_TOL) -> tuple[Path, float]:
    """Write the head's ONNX graph to ``out`` (atomically) after a parity check against the numpy
    head on ``embeddings`` (default: 64 seeded Gaussian embeddings around the scaler's mean).
    Returns (path, max difference); a graph off by more than ``tol`` is not written."""
    from radzoo.extras import require_extra

    onnx = require_extra("onnx", "onnx", feature="exporting a task head to ONNX")

    out = Path(out)
    dim = int(head.base["dim"])
    if embeddings is None:
        rng = np.random.default_rng(0)
        t = head.tensors
        embeddings = (t["head0.mean"] + rng.standard_normal((64, dim)) * t["head0.scale"] * 2).astype(np.float32)
    module = HeadModule(head).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad():
            torch.onnx.export(module, (torch.zeros(2, dim),), str(tmp), dynamo=False, opset_version=opset,
                              input_names=[INPUT], output_names=list(OUTPUTS),
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUTS[0]: {0: "batch"}, OUTPUTS[1]: {0: "batch"}})
        graph = onnx.load(str(tmp))
        graph.metadata_props.add(key="radzoo_head_digest", value=head.digest)
        graph.metadata_props.add(key="radzoo_head_labels", value=",".join(head.labels))
        graph.metadata_props.add(key="radzoo_base", value=f"{head.base['model']}@{head.base['revision']}/"
                                                           f"{head.base['output']}")
        onnx.save(graph, str(tmp))
        onnx.checker.check_model(str(tmp))
        diff = head_parity(head, tmp, embeddings)
        if not diff <= tol:
            raise ArtifactError(f"head {head.name!r}: the ONNX graph differs from the numpy head by {diff:.3g} "
                                f"(> {tol:g}); nothing was written")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, diff


def run_head_onnx(path: str | os.PathLike[str], embeddings: Any) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, decision values) of an exported head graph."""
    from radzoo.onnx.ort_runtime import make_session

    session = make_session(path, providers=["CPUExecutionProvider"])
    p, z = session.run(list(OUTPUTS), {INPUT: np.asarray(embeddings, dtype=np.float32)})
    return p, z
