"""Which runtime runs a model, decided once for every caller (part of ``radzoo.load``).

* ``"torch"``: eager torch on the model's device (training, Grad-CAM and CT always use it).
* ``"onnx"``: onnxruntime over the artifact's exported graphs; an error says why when it cannot.
* ``"auto"``: onnxruntime when it is installed and the artifact holds a parity-checked ONNX
  export of exactly these weights; torch otherwise. ``model.runtime.reason`` records why.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from radzoo.errors import ArtifactError, CapabilityError, InputError

if TYPE_CHECKING:
    from radzoo.zoo.model import ZooModel

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx")


def check_runtime_request(runtime: str, threads: int | None, options: dict[str, Any] | None) -> None:
    """Refuse malformed runtime requests before any weights are read."""
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be an integer >= 1, got {threads!r}")
    if options and runtime == "torch":
        raise InputError(f"runtime options {sorted(options)} apply to onnxruntime, not runtime='torch'")


def onnx_installed() -> bool:
    """Whether onnxruntime (CPU or GPU wheel) can be imported here."""
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_unavailable_reason(model: ZooModel) -> tuple[str, type[Exception]] | None:
    """Why ``model`` cannot run on onnxruntime now (with the error type to raise), or ``None``."""
    if not onnx_installed():
        return "onnxruntime is not installed (pip install 'radzoo[onnx]', or 'radzoo[gpu]' for CUDA)", CapabilityError
    if model.directory is None:
        return ("it was not loaded from an artifact directory (random weights have no ONNX export; save it and "
                "run `radzoo export DIR`)"), CapabilityError
    graphs = model.config.get("onnx", {}).get("graphs") or {}
    if not graphs:
        return f"the artifact has no ONNX export; run `radzoo export {model.directory}`", ArtifactError
    sha = model.config.get("weights", {}).get("sha256")
    if any(e.get("weights_sha256") and sha and e["weights_sha256"] != sha for e in graphs.values()):
        return f"the ONNX export is of other weights; run `radzoo export {model.directory}` again", ArtifactError
    return None


def choose_runtime(model: ZooModel, runtime: str) -> tuple[str, str]:
    """``(name, reason)`` for a request of ``runtime`` on ``model``; raises when ``onnx`` cannot run."""
    if runtime == "torch":
        return "torch", "requested runtime='torch'"
    why_not = onnx_unavailable_reason(model)
    if runtime == "onnx":
        if why_not:
            message, error = why_not
            raise error(f"model {model.name!r} cannot run on runtime='onnx': {message}")
        return "onnx", "requested runtime='onnx'"
    if "embed" not in model.capabilities:
        return "torch", f"auto: torch, because the {model.spec.method} pipeline runs its networks in torch"
    if why_not:
        return "torch", f"auto: torch, because {why_not[0]}"
    return "onnx", "auto: onnxruntime with the artifact's parity-checked ONNX export"


def apply_runtime(model: Any, runtime: str, *, threads: int | None = None, options: dict[str, Any] | None = None) -> Any:
    """Attach the chosen runtime (and thread count) to ``model``; returns the model."""
    name, reason = choose_runtime(model, runtime)
    options = dict(options or {})
    if name == "onnx":
        from radzoo.onnx.ort_runtime import onnx_runtime_for

        if threads is not None:
            options.setdefault("intra_op_num_threads", threads)
            options.setdefault("inter_op_num_threads", 1)
        model.use_runtime(onnx_runtime_for(model, reason=reason, **options))
    else:
        import torch

        from radzoo.zoo.torch_runtime import TorchRuntime

        if options:
            raise InputError(f"runtime options {sorted(options)} apply to onnxruntime, but {reason}")
        if threads is not None:
            torch.set_num_threads(threads)
        model.use_runtime(TorchRuntime(model.net, model.device, reason=reason))
    log.debug("%s: runtime %s (%s)", model.name, name, reason)
    return model
