"""Optional packages: the one place that imports them and says which extra to install.

radzoo's core (``pip install radzoo``) loads and runs every model with torch. Other features sit
behind extras (``pyproject.toml``): ``radzoo[dicom]`` for DICOM SR / Parametric Map results and
DICOMweb, ``radzoo[extract]`` for Parquet tables, ``radzoo[onnx]`` for onnxruntime... Code that
needs one of them imports it with :func:`require_extra`, so a missing package is a
:class:`~radzoo.errors.MissingExtra` naming the pip command (HTTP 501, CLI exit 1), never a bare
``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from radzoo.errors import MissingExtra

#: What to add to the pip command for extras with alternatives.
_ALTERNATIVES = {"onnx": " (CPU), or 'radzoo[gpu]' on CUDA machines"}


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``."""
    return f"pip install 'radzoo[{extra}]'" + _ALTERNATIVES.get(extra, "")


def require_extra(extra: str, module: str, *, feature: str | None = None) -> ModuleType:
    """``module`` imported, or ``MissingExtra`` saying ``feature`` needs ``pip install 'radzoo[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        what = feature or f"this feature ({module})"
        raise MissingExtra(
            f"{what} needs the optional package {missing!r}, which cannot be imported here ({exc}): "
            f"{install_hint(extra)}",
            extra=extra, module=missing,
        ) from exc


def has_module(module: str) -> bool:
    """Whether ``module`` can be imported here (found on the path), without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


__all__ = ["has_module", "install_hint", "require_extra"]
