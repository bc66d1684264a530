"""``radzoo verify``: recompute an artifact's golden outputs with torch and ONNX, report pass/fail.

The golden section (written right after conversion, ``radzoo.zoo.golden``) holds embeddings of
fixed seeded inputs. Recomputing them proves that the weights file, the architecture code and
the exported graphs still produce what the converter produced. Tolerances: 1e-5 for torch
(same arithmetic, only thread scheduling may differ), 1e-4 for onnxruntime (fused kernels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import ArtifactError, InputError, RadzooError
from radzoo.zoo.golden import check_golden, golden_inputs
from radzoo.zoo.model import ZooModel

TORCH_TOL = 1e-5
ONNX_TOL = 1e-4
RUNTIME_CHOICES = ("torch", "onnx", "both")


@dataclass
class Check:
    """One verified quantity: a golden output under one runtime, a file hash, or the load itself."""

    runtime: str
    target: str
    passed: bool
    max_abs_diff: float | None = None
    tol: float | None = None
    note: str = ""

    def line(self) -> str:
        diff = "" if self.max_abs_diff is None else f"max |diff| {self.max_abs_diff:.3e}"
        tol = "" if self.tol is None else f"tol {self.tol:g}"
        status = "PASS" if self.passed else ("SKIP" if self.note.startswith("skipped") else "FAIL")
        text = f"  {self.runtime:<6} {self.target:<24} {diff:<22} {tol:<10} {status}"
        return text + (f"  ({self.note})" if self.note else "")


@dataclass
class VerifyReport:
    """Result of ``verify_model``: ``passed`` is True only if every non-skipped check passed."""

    source: str
    model: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        real = [c for c in self.checks if not c.note.startswith("skipped")]
        return bool(real) and all(c.passed for c in real)

    def max_deviation(self, runtime: str) -> float | None:
        diffs = [c.max_abs_diff for c in self.checks if c.runtime == runtime and c.max_abs_diff is not None]
        return max(diffs) if diffs else None

    def format(self) -> str:
        head = f"verify {self.model or '?'} ({self.source})"
        return "\n".join([head, *(c.line() for c in self.checks), f"RESULT: {'PASS' if self.passed else 'FAIL'}"])

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "model": self.model, "passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def _max_diff(ref: np.ndarray, got: np.ndarray) -> float:
    if ref.shape != got.shape:
        return float("inf")
    if not ref.size:
        return 0.0
    diff = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64))))
    return diff if np.isfinite(diff) else float("inf")


def golden_of(config: dict[str, Any], where: str) -> dict[str, Any]:
    golden = config.get("golden")
    if not golden or not golden.get("outputs"):
        raise ArtifactError(
            f"{where} has no 'golden' section, so there is nothing to verify against. Converted artifacts "
            "get one from `radzoo convert`; for a model you built, save it with "
            "zoo.save(model, DIR, sections={'golden': radzoo.zoo.golden.compute_golden(model)})"
        )
    return golden


def verify_model(model: ZooModel, runtime: str = "both", report: VerifyReport | None = None) -> VerifyReport:
    """Recompute ``model``'s stored golden outputs (torch and/or ONNX) and compare; see ``VerifyReport``.

    ``runtime="both"`` checks ONNX only when the artifact has an export (else reports it skipped);
    ``runtime="onnx"`` fails when there is none. ``radzoo.artifacts.verify_artifact`` does this for
    a name or directory, turning a failed strict load into a failed ``load`` check.
    """
    if runtime not in RUNTIME_CHOICES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {runtime!r}")
    report = report or VerifyReport(source=str(model.directory or model.name), model=model.name)
    report.model = model.name
    golden = golden_of(model.config, str(model.directory or model.name))
    if runtime in ("torch", "both"):
        for name, diff in check_golden(model, golden).items():
            report.checks.append(Check("torch", name, diff <= TORCH_TOL, diff, TORCH_TOL))
    if runtime in ("onnx", "both"):
        _verify_onnx(model, golden, report, required=runtime == "onnx")
    return report


def _verify_onnx(model: ZooModel, golden: dict[str, Any], report: VerifyReport, required: bool) -> None:
    from radzoo.onnx.ort_runtime import CPU, onnx_runtime_for
    from radzoo.zoo.weights import sha256_file

    section = model.config.get("onnx") or {}
    if not section.get("graphs"):
        where = model.directory or model.name
        if required:
            report.checks.append(Check("onnx", "export", False, note=f"no ONNX export; run `radzoo export {where}`"))
        else:
            report.checks.append(Check("onnx", "export", True, note="skipped: artifact has no ONNX export"))
        return
    for name, entry in section["graphs"].items():
        path = Path(model.directory) / entry["file"]
        if not path.is_file():
            report.checks.append(Check("onnx", f"{name} file", False, note=f"{path} is missing"))
        elif entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            report.checks.append(Check("onnx", f"{name} file", False, note="sha256 differs from config.json"))
        elif entry.get("weights_sha256") != model.config.get("weights", {}).get("sha256"):
            report.checks.append(Check("onnx", f"{name} file", False, note="exported from other weights"))
        else:
            report.checks.append(Check("onnx", f"{name} file", True, note="sha256 ok"))
    # hashes are reported above; recompute anyway so a changed graph also shows its deviation
    runtime = onnx_runtime_for(model, providers=[CPU], verify_files=False)
    graphs = section["graphs"]

    def attempt(target: str, compute: Any) -> None:
        try:
            diffs = compute()
        except RadzooError as exc:
            report.checks.append(Check("onnx", target, False, note=str(exc)))
            return
        except Exception as exc:  # onnxruntime failures on a replaced graph
            report.checks.append(Check("onnx", target, False, note=f"{type(exc).__name__}: {exc}"))
            return
        for name, diff in diffs.items():
            report.checks.append(Check("onnx", name, diff <= ONNX_TOL, diff, ONNX_TOL))

    stored = {k: np.asarray(v, dtype=np.float32) for k, v in golden["outputs"].items()}
    if model.spec.method == "graphct":

        def graph_ct() -> dict[str, float]:
            inputs = golden_inputs(model)
            patch = runtime.encode_patches(inputs["patches"])
            node = runtime.encode_graph(patch, inputs["edge_index"])
            got = {"patch": patch, "node": node, "subject": node.mean(axis=0, keepdims=True)}
            return {k: _max_diff(ref, got[k]) for k, ref in stored.items() if k in got}

        attempt("graph-ct", graph_ct)
    else:
        exported = {k: v for k, v in golden["outputs"].items() if f"image_{k}" in graphs}
        for name in golden["outputs"]:
            if name not in exported:
                report.checks.append(
                    Check("onnx", name, False, note=f"not exported; run `radzoo export {model.directory}`")
                )
        if exported:
            previous = model.runtime
            model.use_runtime(runtime)
            try:
                attempt("image", lambda: check_golden(model, {**golden, "outputs": exported}))
            finally:
                model.use_runtime(previous)
    if "text_global" in graphs:
        attempt("text_global", lambda: {"text_global (vs torch)": _torch_parity(model, "text_global", runtime.encode_text)})
    if "graph_global" in graphs:
        attempt("graph_global",
                lambda: {"graph_global (vs torch)": _torch_parity(model, "graph_global", runtime.encode_report_graphs)})


def _torch_parity(model: ZooModel, name: str, run: Any) -> float:
    """Text and report-graph graphs have no stored golden outputs: compare them with torch instead."""
    from radzoo.onnx.graphs import graph_defs, reference_outputs

    graph = next(d for d in graph_defs(model) if d.name == name)
    worst = 0.0
    for inputs in graph.parity_inputs:
        ref = reference_outputs(graph, inputs, model.device)
        got = run(*inputs)
        worst = max(worst, _max_diff(ref, got))
    return worst
