"""What a served model cannot do on this install because an optional package is absent.

``/models`` lists it per model (``unavailable``), so an operator sees ``pip install
'radzoo[dicom]'`` before a client meets the 501 that the route itself answers
(:class:`~radzoo.errors.MissingExtra`, raised by ``radzoo.extras.require_extra``).
"""

from __future__ import annotations

from typing import Any

from radzoo.extras import has_module, install_hint

#: (feature, capability it belongs to or None for every model, extra, module that extra provides)
FEATURES: tuple[tuple[str, str | None, str, str], ...] = (
    ("POST /zero_shot?format=dicom-sr", "zero_shot", "dicom", "highdicom"),
    ("POST /ground?format=dicom-pmap", "ground", "dicom", "highdicom"),
    ("runtime onnx (the default fast path) and precision int8", None, "onnx", "onnxruntime"),
)


def unavailable(capabilities: frozenset[str] | set[str]) -> list[dict[str, Any]]:
    """The features of a model with ``capabilities`` that this install cannot serve, and why."""
    rows = []
    for feature, capability, extra, module in FEATURES:
        if (capability is None or capability in capabilities) and not has_module(module):
            rows.append({"feature": feature, "extra": extra, "missing": module, "install": install_hint(extra)})
    return rows
