"""ONNX export of zoo models, the onnxruntime runtime, and golden-output verification.

``export_model(model)`` writes ``<artifact>/onnx/*.onnx`` with a parity proof;
``radzoo.load(DIR, runtime="onnx")`` then serves ``embed`` through onnxruntime;
``verify_model(model)`` recomputes the stored golden outputs with torch and ONNX. By name or
directory: ``radzoo.artifacts.export_artifact`` / ``verify_artifact``. Heavy imports (onnx,
onnxruntime) happen on call.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_model", "onnx_runtime_for", "verify_model"]


def __getattr__(name: str) -> Any:
    if name == "export_model":
        from radzoo.onnx.export import export_model

        return export_model
    if name == "onnx_runtime_for":
        from radzoo.onnx.ort_runtime import onnx_runtime_for

        return onnx_runtime_for
    if name == "verify_model":
        from radzoo.onnx.verify import verify_model

        return verify_model
    raise AttributeError(f"module 'radzoo.onnx' has no attribute {name!r}")
