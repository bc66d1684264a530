"""Which runtime and precision run a model, decided once for every caller (part of ``radzoo.load``).

Runtimes:

* ``"auto"`` (the default everywhere): onnxruntime when it is installed and the model's graphs
  export with parity (the first use of each graph exports it once and keeps the ONNX file, see
  ``radzoo.onnx.export_cache`` and ``DeferredOnnxRuntime``); torch otherwise. Training, Grad-CAM and the text towers use
  the torch network directly and never go through this choice.
* ``"torch"``: torch on the model's device.
* ``"onnx"``: onnxruntime; an error says why when it cannot.

Precisions (``precision=``):

* ``"fp32"`` (default).
* ``"bf16"``: on CPUs, **torch** with oneDNN bfloat16 autocast. It is the only backend here with
  bf16 kernels: onnxruntime's CPU provider has none (a bf16 ``Conv`` is not even a valid graph
  at opset 17 and a bf16 ``MatMul`` finds no CPU kernel, checked with onnxruntime 1.32), so a
  bf16 request on a CPU runs in torch whatever ``runtime`` says, and ``runtime="onnx"`` with
  bf16 on a CPU is refused. Whether bf16 beats onnxruntime fp32 depends on the CPU (oneDNN
  uses AVX512-BF16 / AMX); ``radzoo bench --precision fp32 bf16`` measures both. Measured on
  this project's 2-core AMD EPYC (AVX512-BF16 and VNNI, no AMX; ``benchmarks/bench_runtime.py``,
  one run, quiet machine): bf16 autocast was 1.16-1.35x onnxruntime fp32 for ResNet-50, 1.0-1.57x
  for DenseNet-121 and 1.06-1.65x for ViT-B/32, cosine to fp32 1.0000 on real CXRs. It stays
  opt-in: fp32 is what reproduces the originals' numbers. On a CPU without AVX512-BF16/AMX bf16
  is emulated: it still runs (the reason says so) but is slower.
  On CUDA, ``bf16`` runs as fp16 (the GPU path's half precision, ``model.runtime.precision ==
  "fp16"``).
* ``"fp16"``: CUDA only; onnxruntime (CUDA EP with IO binding, TensorRT EP when present) with
  a converted fp16 graph, else torch CUDA autocast + channels-last.
* ``"int8"``: onnxruntime with a static QDQ graph calibrated on real images and gated by its
  cosine to fp32 (``radzoo.onnx.precision_graphs``); never torch.

``model.runtime.name`` / ``.precision`` say what was picked and ``model.runtime.reason`` why.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radzoo.errors import ArtifactError, CapabilityError, DeviceError, InputError

if TYPE_CHECKING:
    from radzoo.zoo.model import ZooModel

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")

#: Why bf16 on a CPU runs in torch (see the module docs); shown in ``model.runtime.reason``.
BF16_CPU_BACKEND = "torch with oneDNN bf16 autocast (onnxruntime's CPU provider has no bf16 conv/GEMM kernels)"


def check_runtime_request(runtime: str, threads: int | None, options: dict[str, Any] | None,
                          precision: str = "fp32") -> None:
    """Refuse malformed runtime requests before any weights are read."""
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be an integer >= 1, got {threads!r}")
    if options and runtime == "torch":
        raise InputError(f"runtime options {sorted(options)} apply to onnxruntime, not runtime='torch'")
    if precision == "int8" and runtime == "torch":
        raise InputError("precision 'int8' runs on onnxruntime (static QDQ graphs); use runtime 'auto' or 'onnx'")


def check_device_request(device: Any, runtime: str, precision: str) -> None:
    """Refuse a device this machine cannot serve, naming everything that is missing (before weights)."""
    import torch

    text = str(device) if device is not None else "auto"
    if text == "auto" or not text.startswith("cuda"):
        if precision == "fp16" and text != "auto":
            raise InputError("precision 'fp16' is the GPU half precision; on a CPU use precision 'bf16'")
        return
    missing = []
    if not torch.cuda.is_available():
        cuda = getattr(torch.version, "cuda", None)
        build = f"this torch {torch.__version__} is a CUDA {cuda} build" if cuda else f"this torch {torch.__version__} is a CPU-only build"
        missing.append(f"no CUDA GPU is available (torch.cuda.is_available() is False; {build})")
    if runtime != "torch" and onnx_installed():
        from radzoo.onnx.ort_runtime import cuda_provider_missing

        why = cuda_provider_missing()
        if why:
            missing.append(why)
    if missing:
        raise DeviceError(f"device {text!r} requested, but " + "; and ".join(missing))


def onnx_installed() -> bool:
    """Whether onnxruntime (CPU or GPU wheel) is installed (found, not imported: a load that never
    embeds does not pay for importing it; a broken install is caught on first use)."""
    return importlib.util.find_spec("onnxruntime") is not None


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU executes bfloat16 natively (AVX512-BF16 or AMX), as oneDNN sees it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch without oneDNN
        return False


def effective_precision(precision: str, device_type: str) -> tuple[str, str]:
    """``(precision that runs, note)``: bf16 on CUDA runs as fp16; fp16 needs CUDA."""
    if device_type == "cuda" and precision == "bf16":
        return "fp16", "bf16 requested on a GPU runs as fp16, the GPU path's half precision"
    if device_type != "cuda" and precision == "fp16":
        raise InputError("precision 'fp16' is the GPU half precision; on a CPU use precision 'bf16'")
    return precision, ""


class Choice:
    """What ``choose_runtime`` decided: runtime name, precision and reason; for onnxruntime the
    graph store when the graphs are already at hand (``None``: found or exported on first use)."""

    def __init__(self, name: str, precision: str, reason: str, store: Any = None, requested: str = "auto") -> None:
        self.name, self.precision, self.reason, self.store, self.requested = name, precision, reason, store, requested

    def __iter__(self):  # noqa: ANN204 - ``name, reason = choose_runtime(...)``
        return iter((self.name, self.reason))


def _unsupported_pipeline(model: ZooModel) -> str | None:
    if "embed" in model.capabilities or "ct" in model.capabilities:
        return None
    return f"the {model.spec.method} pipeline runs its networks in torch"


def _how(runtime: str) -> str:
    return "requested runtime='onnx'" if runtime == "onnx" else "auto: onnxruntime"


def choose_runtime(model: ZooModel, runtime: str, precision: str = "fp32", *, into_artifact: bool = True) -> Choice:
    """The runtime for ``runtime`` x ``precision`` on ``model``.

    fp32 graphs that the artifact does not already hold are found in the cache or exported on
    first use of each graph (``DeferredOnnxRuntime``), so a load that never embeds exports
    nothing; int8 and fp16 graphs are built (calibrated, gated) here, at load. Raises when the
    request cannot be honoured: ``runtime="onnx"`` without onnxruntime, int8 without
    onnxruntime or failing its gate, bf16 on onnxruntime on a CPU, fp16 on a CPU.
    """
    device = model.device.type
    precision, note = effective_precision(precision, device)
    prefix = f"{note}; " if note else ""
    if runtime == "torch":
        return Choice("torch", precision, prefix + "requested runtime='torch'" + _bf16_note(precision, device), requested=runtime)
    if precision == "bf16":  # CPU: see BF16_CPU_BACKEND
        if runtime == "onnx":
            raise CapabilityError(
                f"precision 'bf16' on a CPU runs in torch: {BF16_CPU_BACKEND}; use runtime 'auto' or 'torch'"
            )
        return Choice("torch", "bf16", f"auto: bf16 on a CPU runs in {BF16_CPU_BACKEND}" + _bf16_note("bf16", device))
    why_not = _unsupported_pipeline(model)
    if not onnx_installed():
        why_not = why_not or NOT_INSTALLED
    if why_not:
        if runtime == "onnx" or precision == "int8":
            raise CapabilityError(f"model {model.name!r} cannot run on onnxruntime ({precision}): {why_not}")
        return Choice("torch", precision, f"{prefix}auto: torch, because {why_not}", requested=runtime)

    from radzoo.onnx.export_cache import (
        ExportUnavailable,
        find_or_export,
        needed_graphs,
        section_problem,
        weights_sha256,
    )

    if precision in ("int8", "fp16"):  # asked for explicitly: build and gate now
        from radzoo.extras import require_extra

        require_extra("onnx", "onnxruntime", feature=f"model {model.name!r} at {precision}")
        try:
            store = find_or_export(model, into_artifact=into_artifact)
        except ExportUnavailable as exc:
            raise ArtifactError(f"model {model.name!r} cannot run on onnxruntime: its graphs do not export "
                                f"with parity: {exc}") from exc
        store = _with_variant(model, store, precision)
        what = "int8 QDQ graphs (cosine gate passed)" if precision == "int8" else "fp16 graphs"
        return Choice("onnx", precision, f"{prefix}{_how(runtime)} with {what} {store.describe()}", store, runtime)
    if model.directory is not None:
        from radzoo.onnx.export_cache import GraphStore

        sha = weights_sha256(model)
        if section_problem(Path(model.directory), model.config.get("onnx"), needed_graphs(model), sha) is None:
            store = GraphStore(Path(model.directory), model.config["onnx"], "artifact", False, sha)
            return Choice("onnx", precision, f"{prefix}{_how(runtime)} with parity-checked ONNX graphs {store.describe()}",
                          store, runtime)
    where = "the artifact's onnx/ folder" if model.directory is not None and into_artifact else "the ONNX cache"
    return Choice("onnx", precision, f"{prefix}{_how(runtime)}; its ONNX graphs are found in or exported to {where} "
                  "on first use (parity-checked; torch if they do not export)", None, runtime)


NOT_INSTALLED = "onnxruntime is not installed (pip install 'radzoo[onnx]', or 'radzoo[gpu]' for CUDA)"


def _with_variant(model: ZooModel, store: Any, precision: str) -> Any:
    from radzoo.onnx.export_cache import find_or_export, section_problem, weights_sha256, writable
    from radzoo.onnx.precision_graphs import ensure_fp16, ensure_int8, int8_graph_names

    graphs = int8_graph_names(model)
    present = section_problem(store.root, store.section, graphs, weights_sha256(model), variant=precision) is None
    if not present and store.where == "artifact" and not writable(store.root):
        store = find_or_export(model, cache_only=True)  # a read-only artifact: derive in the cache
    return ensure_int8(model, store) if precision == "int8" else ensure_fp16(model, store)


def _bf16_note(precision: str, device_type: str) -> str:
    if precision == "bf16" and device_type == "cpu" and not cpu_has_bf16():
        return " (this CPU has no AVX512-BF16/AMX: bf16 is emulated and slower than fp32)"
    return ""


class DeferredOnnxRuntime:
    """onnxruntime whose fp32 graphs are found or exported on first use of each graph.

    The first ``run(batch, output)`` (or ``encode_patches`` / ``encode_graph``) of a graph finds
    it in the artifact or the cache, or exports it once (``radzoo.onnx.export_cache``); later
    calls go straight to its session. When a graph does not export with parity (or onnxruntime
    cannot be imported), ``auto`` switches this model to torch for good: ``name`` becomes
    ``"torch"`` and ``reason`` says why; ``runtime="onnx"`` raises instead. ``prepare(graph)``
    does the first-use work ahead of time (batch extraction, before writing its manifest).
    """

    def __init__(self, model: Any, choice: Choice, options: dict[str, Any], into_artifact: bool) -> None:
        self.model = model
        self.requested = choice.requested
        self.precision = choice.precision
        self.reason = choice.reason
        self._options = options
        self._into_artifact = into_artifact
        self._lock = threading.RLock()
        self._by_graph: dict[str, Any] = {}  # graph -> OnnxRuntime over the store holding it
        self._by_root: dict[Any, Any] = {}
        self._torch: Any = None

    @property
    def name(self) -> str:
        return "torch" if self._torch is not None else "onnx"

    def __repr__(self) -> str:
        return f"DeferredOnnxRuntime(name={self.name}, precision={self.precision}, graphs={sorted(self._by_graph)})"

    def prepare(self, graph: str) -> None:
        self._backend(graph)

    def _backend(self, graph: str) -> Any:
        ready = self._by_graph.get(graph)
        if ready is not None and self._torch is None:
            return ready
        with self._lock:
            if self._torch is not None:
                return self._torch
            if graph in self._by_graph:
                return self._by_graph[graph]
            from radzoo.onnx.export_cache import ExportUnavailable, find_or_export
            from radzoo.onnx.ort_runtime import runtime_for_store

            try:
                from radzoo.extras import require_extra

                require_extra("onnx", "onnxruntime", feature="the onnx runtime")  # found here, on first use
                store = find_or_export(self.model, [graph], into_artifact=self._into_artifact)
            except (ExportUnavailable, ImportError) as exc:
                why = (f"the ONNX export failed its parity check ({exc})" if isinstance(exc, ExportUnavailable)
                       else f"onnxruntime cannot be imported ({exc})")
                if self.requested == "onnx":
                    raise ArtifactError(f"model {self.model.name!r} cannot run on onnxruntime: {why}") from exc
                from radzoo.zoo.torch_runtime import TorchRuntime

                self.reason = f"auto: torch, because {why}"
                self._torch = TorchRuntime(self.model.net, self.model.device, reason=self.reason, precision=self.precision)
                log.warning("%s: %s", self.model.name, self.reason)
                return self._torch
            runtime = self._by_root.get(store.root)
            if runtime is None:
                runtime = runtime_for_store(self.model, store, precision=self.precision, reason="", **self._options)
                self._by_root[store.root] = runtime
            else:
                runtime.section = store.section
            self.reason = f"{_how(self.requested)} with parity-checked ONNX graphs {store.describe()}"
            runtime.reason = self.reason
            self._by_graph[graph] = runtime
            return runtime

    @property
    def providers(self) -> list[Any]:
        return self._backend(next(iter(self._by_graph), _first_graph(self.model))).providers

    def session(self, graph: str) -> Any:
        return self._backend(graph).session(graph)

    def run(self, batch: Any, output: str) -> Any:
        return self._backend(f"image_{output}").run(batch, output)

    def encode_patches(self, patches: Any) -> Any:
        return self._backend("patch_encoder").encode_patches(patches)

    def encode_graph(self, patch_embeddings: Any, edge_index: Any) -> Any:
        return self._backend("gnn").encode_graph(patch_embeddings, edge_index)


def _first_graph(model: Any) -> str:
    from radzoo.onnx.export_cache import needed_graphs

    return needed_graphs(model)[0]


def prepare_output(model: Any, output: str | None = None) -> None:
    """Do a deferred runtime's first-use work for ``output`` now (CT: both graph-CT graphs)."""
    prepare = getattr(model.runtime, "prepare", None)
    if prepare is None:
        return
    if "ct" in model.capabilities:
        for graph in ("patch_encoder", "gnn"):
            prepare(graph)
    else:
        prepare(f"image_{model.resolve_output(output)}")


def apply_runtime(model: Any, runtime: str, *, precision: str = "fp32", threads: int | None = None,
                  options: dict[str, Any] | None = None, into_artifact: bool = True) -> Any:
    """Attach the chosen runtime (precision, thread count) to ``model``; returns the model."""
    choice = choose_runtime(model, runtime, precision, into_artifact=into_artifact)
    options = dict(options or {})
    if choice.name == "onnx":
        from radzoo.onnx.ort_runtime import check_runtime_options, runtime_for_store

        if threads is not None:
            options.setdefault("intra_op_num_threads", threads)
            options.setdefault("inter_op_num_threads", 1)
        check_runtime_options(options)
        if choice.store is None:
            model.use_runtime(DeferredOnnxRuntime(model, choice, options, into_artifact))
        else:
            model.use_runtime(runtime_for_store(model, choice.store, precision=choice.precision,
                                                reason=choice.reason, **options))
    else:
        import torch

        from radzoo.zoo.torch_runtime import TorchRuntime

        if options:
            raise InputError(f"runtime options {sorted(options)} apply to onnxruntime, but {choice.reason}")
        if threads is not None:
            torch.set_num_threads(threads)
        model.use_runtime(TorchRuntime(model.net, model.device, reason=choice.reason, precision=choice.precision))
    log.debug("%s: runtime %s %s (%s)", model.name, choice.name, choice.precision, choice.reason)
    return model
