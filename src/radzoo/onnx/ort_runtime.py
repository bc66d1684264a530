"""onnxruntime behind ``ZooModel.embed``: ``radzoo.load(..., runtime="onnx"|"auto", runtime_options={...})``.

Sessions are created lazily, one per graph, and cached. The graphs come from a ``GraphStore``
(the artifact's ``onnx/`` folder or the ONNX cache, ``radzoo.onnx.export_cache``); a precision
other than fp32 runs that precision's derived graphs (``int8``: static QDQ, ``fp16``: GPUs).

Providers: on a CUDA device, the TensorRT EP first when this onnxruntime build has it (fp16 /
int8 enabled to match the precision, engines cached in ``trt_engine_cache_dir``, default
``$RADZOO_HOME/trt-engines``), then the CUDA EP, then CPU; on CPU, the CPU EP. On CUDA,
inputs and outputs go through IO binding (the input is copied to the GPU once and the output
read back once, into buffers onnxruntime does not have to stage).

Options (all keyword, validated):

* ``providers``: execution providers in priority order (e.g. ``["CPUExecutionProvider"]``).
* ``graph_optimization_level``: ``"disable" | "basic" | "extended" | "all"`` (default ``"all"``).
* ``intra_op_num_threads`` / ``inter_op_num_threads``: thread pools (0 = onnxruntime's default).
  With several workers on one machine give each ``cores // workers`` intra-op threads.
* ``execution_mode``: ``"sequential"`` (default) or ``"parallel"``.
* ``verify_files``: check each graph's sha256 against its record before use (default True).
* ``trt_engine_cache_dir``: where the TensorRT EP keeps built engines (CUDA devices only).
* ``io_binding``: bind inputs/outputs on the GPU (default True on CUDA; ignored on CPU).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import ArtifactError, CapabilityError, InputError
from radzoo.zoo.model import ZooModel
from radzoo.zoo.weights import sha256_file

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
_OPT_LEVELS = ("disable", "basic", "extended", "all")
_EXEC_MODES = ("sequential", "parallel")
_SESSION_OPTIONS = ("graph_optimization_level", "intra_op_num_threads", "inter_op_num_threads", "execution_mode")
_OPTIONS = ("providers", *_SESSION_OPTIONS, "verify_files", "trt_engine_cache_dir", "io_binding", "trt_max_batch")
#: Largest batch a TensorRT engine is built for (one engine per graph serves batch 1 .. this).
TRT_MAX_BATCH = 256


def _ort() -> Any:
    from radzoo.extras import require_extra

    return require_extra("onnx", "onnxruntime", feature="the onnx runtime")


def session_options(
    graph_optimization_level: str = "all",
    intra_op_num_threads: int | None = None,
    inter_op_num_threads: int | None = None,
    execution_mode: str = "sequential",
) -> Any:
    """Validated ``onnxruntime.SessionOptions``."""
    ort = _ort()
    if graph_optimization_level not in _OPT_LEVELS:
        raise InputError(
            f"graph_optimization_level must be one of {', '.join(_OPT_LEVELS)}, got {graph_optimization_level!r}"
        )
    if execution_mode not in _EXEC_MODES:
        raise InputError(f"execution_mode must be one of {', '.join(_EXEC_MODES)}, got {execution_mode!r}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization_level]
    opts.execution_mode = (
        ort.ExecutionMode.ORT_SEQUENTIAL if execution_mode == "sequential" else ort.ExecutionMode.ORT_PARALLEL
    )
    for name, value in (("intra_op_num_threads", intra_op_num_threads), ("inter_op_num_threads", inter_op_num_threads)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{name} must be an integer >= 0 (0 = onnxruntime default), got {value!r}")
        setattr(opts, name, value)
    return opts


def _provider_name(entry: Any) -> Any:
    if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], dict):
        return entry[0]
    return entry


def check_providers(providers: str | Sequence[Any]) -> list[Any]:
    """Providers as a list (names, or ``(name, options)`` pairs), each one available in this build."""
    available = _ort().get_available_providers()
    chosen = [providers] if isinstance(providers, str) else list(providers)
    names = [_provider_name(p) for p in chosen]
    if not chosen or not all(isinstance(n, str) for n in names):
        raise InputError(f"providers must be a non-empty list of provider names, got {providers!r}")
    missing = [n for n in names if n not in available]
    if missing:
        hint = " (install onnxruntime-gpu for CUDA: pip install 'radzoo[gpu]')" if {CUDA, TENSORRT} & set(missing) else ""
        raise InputError(
            f"onnxruntime provider(s) {', '.join(missing)} not available here{hint}; available: {', '.join(available)}"
        )
    return chosen


def make_session(path: str | Path, providers: Sequence[Any] | None = None, **options: Any) -> Any:
    """An ``InferenceSession`` for one graph file with validated options."""
    ort = _ort()
    return ort.InferenceSession(
        str(path),
        sess_options=session_options(**options),
        providers=check_providers(providers or [CPU]),
    )


def cuda_provider_missing() -> str | None:
    """Why this onnxruntime cannot run on CUDA (the CPU wheel is installed), or ``None``."""
    ort = _ort()
    available = ort.get_available_providers()
    if CUDA in available:
        return None
    return (f"this onnxruntime ({ort.__version__}) has no CUDAExecutionProvider (available: "
            f"{', '.join(available)}): the CPU wheel 'onnxruntime' is installed, not 'onnxruntime-gpu' "
            "(pip uninstall onnxruntime && pip install 'radzoo[gpu]')")


def gpu_providers(device_index: int, precision: str, trt_engine_cache_dir: str | Path | None = None) -> list[Any]:
    """TensorRT (when this build has it) -> CUDA -> CPU, configured for ``precision``."""
    missing = cuda_provider_missing()
    if missing:
        raise CapabilityError(f"onnxruntime cannot use the GPU: {missing}")
    chain: list[Any] = []
    if TENSORRT in _ort().get_available_providers():
        from radzoo.zoo.home import radzoo_home

        cache = Path(trt_engine_cache_dir) if trt_engine_cache_dir else radzoo_home() / "trt-engines"
        cache.mkdir(parents=True, exist_ok=True)
        chain.append((TENSORRT, {
            "device_id": device_index,
            "trt_fp16_enable": precision == "fp16",
            "trt_int8_enable": precision == "int8",  # QDQ graphs carry their own scales
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
        }))
    chain.append((CUDA, {"device_id": device_index, "cudnn_conv_algo_search": "EXHAUSTIVE"}))
    chain.append(CPU)
    return chain


def default_providers(device_type: str, device_index: int = 0, precision: str = "fp32",
                      trt_engine_cache_dir: str | Path | None = None) -> list[Any]:
    """The CPU EP on CPU; the GPU chain (``gpu_providers``) on CUDA."""
    if device_type == "cuda":
        return gpu_providers(device_index, precision, trt_engine_cache_dir)
    return [CPU]


def _with_trt_profile(providers: list[Any], entry: dict[str, Any], max_batch: int) -> list[Any]:
    """TensorRT options gain one optimisation profile over the graph's batch axis (1 .. ``max_batch``,
    tuned for 32), so one engine serves every batch size instead of one engine build per size."""
    inputs = entry.get("inputs", {})
    if not inputs or not all(isinstance(d, int) for dims in inputs.values() for d in dims[1:]):
        return providers  # dynamic axes beyond the batch (text, graphs): TensorRT's own handling

    def shapes(batch: int) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in [batch, *dims[1:]])}" for name, dims in inputs.items())

    out = []
    for p in providers:
        if _provider_name(p) == TENSORRT and isinstance(p, tuple):
            p = (TENSORRT, {**p[1], "trt_profile_min_shapes": shapes(1), "trt_profile_opt_shapes": shapes(min(32, max_batch)),
                            "trt_profile_max_shapes": shapes(max_batch)})
        out.append(p)
    return out


class OnnxRuntime:
    """The ``Runtime`` protocol over exported graphs (``name = "onnx"``).

    ``root`` holds the graph files (``root / entry["file"]``) and ``section`` their record (an
    artifact's ``onnx`` config section or a cache folder's ``onnx.json``). ``precision`` picks the
    derived graphs in ``section[precision]``; a graph without one (graph-CT's GCN in int8) runs
    in fp32.
    """

    name = "onnx"

    def __init__(
        self,
        root: Path,
        section: dict[str, Any],
        *,
        providers: Sequence[Any],
        weights_sha: str | None = None,
        precision: str = "fp32",
        verify_files: bool = True,
        reason: str = "requested runtime='onnx'",
        device: Any = None,
        io_binding: bool | None = None,
        trt_max_batch: int = TRT_MAX_BATCH,
        **options: Any,
    ) -> None:
        self.reason = reason
        self.trt_max_batch = trt_max_batch
        self.directory = Path(root)
        self.section = section
        self.weights_sha = weights_sha
        self.precision = precision
        self.providers = list(providers)
        self.options = options
        self.verify_files = verify_files
        on_gpu = any(_provider_name(p) in (CUDA, TENSORRT) for p in self.providers)
        self.io_binding = on_gpu if io_binding is None else bool(io_binding) and on_gpu
        self.device_index = int(getattr(device, "index", None) or 0)
        session_options(**options)  # validate now, not at first use
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        names = [_provider_name(p) for p in self.providers]
        return f"OnnxRuntime({str(self.directory)!r}, precision={self.precision}, providers={names}, graphs={sorted(self.graphs)})"

    @property
    def provider_names(self) -> list[str]:
        return [_provider_name(p) for p in self.providers]

    @property
    def graphs(self) -> dict[str, dict[str, Any]]:
        return dict(self.section.get("graphs", {}))

    def _entry(self, graph: str) -> dict[str, Any]:
        entry = self.section.get("graphs", {}).get(graph)
        if entry is None:
            exported = ", ".join(sorted(self.graphs)) or "none"
            raise ArtifactError(
                f"artifact {self.directory} has no ONNX graph {graph!r} (exported: {exported}); "
                f"run `radzoo export {self.directory}` to export it"
            )
        if self.precision != "fp32":
            variant = (self.section.get(self.precision) or {}).get("graphs", {}).get(graph)
            if variant is not None:
                return {**entry, **variant}
        return entry

    def session(self, graph: str) -> Any:
        """The cached session for ``graph``, created (and its file checked) on first use."""
        with self._lock:
            if graph in self._sessions:
                return self._sessions[graph]
            entry = self._entry(graph)
            path = self.directory / entry["file"]
            if not path.is_file():
                raise ArtifactError(f"{path} listed in config.json is missing; run `radzoo export {self.directory}`")
            if entry.get("weights_sha256") and self.weights_sha and entry["weights_sha256"] != self.weights_sha:
                raise ArtifactError(
                    f"{path} was exported from different weights than {self.directory}/model.safetensors; "
                    f"run `radzoo export {self.directory}` again"
                )
            if self.verify_files and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
                raise ArtifactError(
                    f"{path}: sha256 does not match config.json (file changed after export); "
                    f"run `radzoo export {self.directory}` again"
                )
            try:
                sess = make_session(path, _with_trt_profile(self.providers, entry, self.trt_max_batch), **self.options)
            except (InputError, CapabilityError):
                raise
            except Exception as exc:  # onnxruntime's own exception types
                raise ArtifactError(f"onnxruntime cannot load {path}: {exc}") from exc
            self._sessions[graph] = sess
            return sess

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        entry = self._entry(graph)
        for name, arr in feeds.items():
            want = entry.get("inputs", {}).get(name)
            if want is None:
                continue
            fixed = [(i, d) for i, d in enumerate(want) if isinstance(d, int)]
            if arr.ndim != len(want) or any(arr.shape[i] != d for i, d in fixed):
                raise InputError(
                    f"ONNX graph {graph!r} input {name!r} expects shape {want}, got {list(arr.shape)}"
                )
        session = self.session(graph)
        if self.io_binding:
            return self._run_bound(session, feeds)
        return session.run(None, feeds)[0]

    def _run_bound(self, session: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One run with the inputs copied to the GPU once and the output read back once."""
        ort = _ort()
        binding = session.io_binding()
        for name, arr in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, "cuda", self.device_index))
        binding.bind_output(session.get_outputs()[0].name, "cuda", self.device_index)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    # ---- Runtime protocol -----------------------------------------------------------------
    def run(self, batch: Any, output: str) -> np.ndarray:
        """Preprocessed ``[N, C, H, W]`` float32 -> ``[N, D]`` via ``onnx/image_<output>.onnx``."""
        graph = f"image_{output}"
        kinds = {e.get("kind") for e in self.graphs.values()}
        if graph not in self.graphs and not kinds & {"image", None}:
            raise CapabilityError(
                f"artifact {self.directory} holds no 2D image graphs (graphs: {', '.join(sorted(self.graphs))}); "
                "CT models embed volumes through radzoo.ct (encode_patches / encode_graph here)"
            )
        return self._run(graph, {"image": _float32(batch)})

    # ---- other exported graphs ------------------------------------------------------------
    def encode_text(self, input_ids: Any, attention_mask: Any, sentence_index: Any | None = None) -> np.ndarray:
        """Global text embedding (PRIOR prompts; LoVT reports, which also need ``sentence_index``)."""
        entry = self._entry("text_global")
        feeds = {"input_ids": _int64(input_ids), "attention_mask": _int64(attention_mask)}
        if "sentence_index" in entry.get("inputs", {}):
            if sentence_index is None:
                raise InputError("this model's text graph needs sentence_index (LoVT report sentences)")
            feeds["sentence_index"] = _int64(sentence_index)
        return self._run("text_global", feeds)

    def encode_report_graphs(self, x: Any, adjacency: Any, node_mask: Any, attend_mask: Any) -> np.ndarray:
        """IGCL: graph embeddings from padded graphs (``radzoo.graphs.dense_graph_inputs``)."""
        feeds = {"x": x, "adjacency": adjacency, "node_mask": node_mask, "attend_mask": attend_mask}
        return self._run("graph_global", {k: _float32(v) for k, v in feeds.items()})

    def encode_patches(self, patches: Any) -> np.ndarray:
        """graph-CT: ``[N, 1, 32, 32, 32]`` normalised patches -> ``[N, 128]``."""
        return self._run("patch_encoder", {"patches": _float32(patches)})

    def encode_graph(self, patch_embeddings: Any, edge_index: Any) -> np.ndarray:
        """graph-CT: node embeddings from patch embeddings and ``edge_index [2, E]``."""
        return self._run("gnn", {"patch_embeddings": _float32(patch_embeddings), "edge_index": _int64(edge_index)})


def _float32(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _int64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.int64)



def check_runtime_options(options: dict[str, Any]) -> None:
    """Refuse unknown or malformed ``runtime_options`` at load time (sessions are made later)."""
    if not options:
        return
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InputError(f"unknown onnx runtime option(s) {unknown}; known: {', '.join(_OPTIONS)}")
    session_options(**{k: v for k, v in options.items() if k in _SESSION_OPTIONS})
    if options.get("providers") is not None:
        check_providers(options["providers"])


def _split_options(options: dict[str, Any]) -> tuple[list[Any] | None, dict[str, Any], dict[str, Any]]:
    """``(providers, runtime kwargs, session options)`` from validated ``runtime_options``."""
    check_runtime_options(options)
    options = dict(options)
    providers = options.pop("providers", None)
    extra = {k: options.pop(k) for k in ("verify_files", "io_binding", "trt_max_batch") if k in options}
    options.pop("trt_engine_cache_dir", None)
    return providers, extra, options


def runtime_for_store(model: ZooModel, store: Any, *, precision: str = "fp32", reason: str,
                      verify_files: bool = False, **options: Any) -> OnnxRuntime:
    """The onnxruntime backend over a ``GraphStore`` (``radzoo.onnx.export_cache``) for ``model``'s device.

    ``verify_files`` defaults to False here: ``find_or_export`` has just checked every file's hash.
    """
    trt_dir = options.get("trt_engine_cache_dir")
    providers, extra, session_opts = _split_options(options)
    extra.setdefault("verify_files", verify_files)
    if providers is not None:
        providers = check_providers(providers)
    else:
        providers = default_providers(model.device.type, model.device.index or 0, precision, trt_dir)
    return OnnxRuntime(store.root, store.section, providers=providers, weights_sha=store.weights_sha,
                       precision=precision, reason=reason, device=model.device, **extra, **session_opts)


def onnx_runtime_for(model: ZooModel, *, reason: str = "requested runtime='onnx'", **options: Any) -> OnnxRuntime:
    """The onnxruntime backend over the artifact's own ``onnx/`` export (``radzoo verify``)."""
    trt_dir = options.get("trt_engine_cache_dir")
    providers, extra, session_opts = _split_options(options)
    if model.directory is None:
        raise ArtifactError(
            f"model {model.name!r} was not loaded from an artifact directory (radzoo.build?): save it with "
            "zoo.save(model, DIR), run `radzoo export DIR`, then radzoo.load(DIR, runtime='onnx')"
        )
    if not model.config.get("onnx", {}).get("graphs"):
        raise ArtifactError(
            f"artifact {model.directory} has no ONNX export; run `radzoo export {model.directory}` first"
        )
    if providers is not None:
        providers = check_providers(providers)
    else:
        providers = default_providers(model.device.type, model.device.index or 0, "fp32", trt_dir)
    return OnnxRuntime(model.directory, model.config["onnx"], providers=providers,
                       weights_sha=model.config.get("weights", {}).get("sha256"), reason=reason,
                       device=model.device, **extra, **session_opts)
