"""Operations on an artifact named by registry name or directory: ONNX export and verification.

They open the artifact through ``radzoo.load`` (torch, CPU: tracing and golden outputs are
defined there) and hand the model to ``radzoo.onnx``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from radzoo.errors import ArtifactError, InputError, WeightsError
from radzoo.resolve import load


def export_artifact(
    directory: str | os.PathLike[str],
    outputs: Iterable[str] | None = None,
    opset: int | None = None,
    parity_tol: float | None = None,
    precision: str = "fp32",
    calibration: Sequence[str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Export the graphs of the artifact in ``directory`` into its ``onnx/`` folder (``radzoo export``).

    ``precision="int8"`` also writes static-QDQ int8 graphs calibrated on ``calibration`` (image
    files/folders/globs; CT volumes for graph-CT), or on the packaged default set of the model's
    modality, and refuses (``PrecisionGateError``, nothing saved) when their cosine to fp32 on
    held-apart images is below the gate. Returns the ``onnx`` config section.
    """
    from radzoo.onnx.export import DEFAULT_OPSET, PARITY_TOL, export_model

    if precision not in ("fp32", "int8"):
        raise InputError(f"radzoo export writes fp32 or int8 graphs, got precision {precision!r} "
                         "(fp16 graphs are converted on the GPU machine at first load)")
    if calibration and precision != "int8":
        raise InputError("--calibration applies to --precision int8")
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ArtifactError(f"{path} is not an artifact directory")
    model = load(path, runtime="torch", device="cpu")
    if precision == "fp32" or outputs is not None or opset is not None or parity_tol is not None:
        section = export_model(model, outputs, opset=DEFAULT_OPSET if opset is None else opset,
                               parity_tol=PARITY_TOL if parity_tol is None else parity_tol)
        if precision == "fp32":
            return section
    from radzoo.onnx.export_cache import find_or_export, writable
    from radzoo.onnx.precision_graphs import ensure_int8

    if not writable(path):
        raise ArtifactError(f"{path} is read-only: radzoo export writes into the artifact folder")
    store = find_or_export(model, into_artifact=True)
    return ensure_int8(model, store, calibration=calibration, force=True).section


def verify_artifact(name_or_path: str | os.PathLike[str], runtime: str = "both", revision: str | None = None) -> Any:
    """Recompute the stored golden outputs of a name or directory (``radzoo verify``); a ``VerifyReport``.

    An artifact directory whose weights no longer load (changed file, wrong keys) gives a failed
    ``load`` check rather than an exception.
    """
    from radzoo.onnx.verify import RUNTIME_CHOICES, Check, VerifyReport, golden_of, verify_model
    from radzoo.zoo.artifact import read_config

    if runtime not in RUNTIME_CHOICES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {runtime!r}")
    source = os.fspath(name_or_path)
    path = Path(source).expanduser()
    report = VerifyReport(source=source, model=None)
    if path.is_dir():
        config = read_config(path)  # not an artifact at all -> ArtifactError (a usage error)
        report.model = config.get("spec", {}).get("name")
        golden_of(config, str(path))
    try:
        model = load(path if path.is_dir() else source, revision=revision, device="cpu", runtime="torch")
    except (ArtifactError, WeightsError) as exc:
        if not path.is_dir():
            raise
        report.checks.append(Check("torch", "load", False, note=str(exc)))
        return report
    return verify_model(model, runtime, report)


__all__ = ["export_artifact", "verify_artifact"]
