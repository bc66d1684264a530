"""ONNX export of zoo artifacts, the onnxruntime runtime, and golden-output verification.

``export_artifact(DIR)`` writes ``DIR/onnx/*.onnx`` with a parity proof; ``zoo.load(DIR,
runtime="onnx")`` then serves ``embed`` through onnxruntime; ``verify_artifact(DIR)`` recomputes
the stored golden outputs with torch and ONNX. Heavy imports (onnx, onnxruntime) happen on call.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_artifact", "onnx_runtime_for", "verify_artifact"]


def __getattr__(name: str) -> Any:
    if name == "export_artifact":
        from radzoo.onnx.export import export_artifact

        return export_artifact
    if name == "onnx_runtime_for":
        from radzoo.onnx.ort_runtime import onnx_runtime_for

        return onnx_runtime_for
    if name == "verify_artifact":
        from radzoo.onnx.verify import verify_artifact

        return verify_artifact
    raise AttributeError(f"module 'radzoo.onnx' has no attribute {name!r}")
