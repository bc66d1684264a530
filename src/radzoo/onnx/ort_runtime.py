"""onnxruntime behind ``ZooModel.embed``: ``radzoo.load(DIR, runtime="onnx", runtime_options={...})``.

Sessions are created lazily, one per exported graph, and cached. Provider choice: CUDA when
onnxruntime offers ``CUDAExecutionProvider`` (the ``onnxruntime-gpu`` wheel) and the model's
device is CUDA (``device=None``/``"auto"`` resolves to CUDA when a GPU exists), else CPU.
Options (all keyword, validated):

* ``providers``: execution providers in priority order (e.g. ``["CPUExecutionProvider"]``).
* ``graph_optimization_level``: ``"disable" | "basic" | "extended" | "all"`` (default ``"all"``).
* ``intra_op_num_threads`` / ``inter_op_num_threads``: thread pools (0 = onnxruntime's default).
  With several workers on one machine give each ``cores // workers`` intra-op threads.
* ``execution_mode``: ``"sequential"`` (default) or ``"parallel"``.
* ``verify_files``: check each graph's sha256 against config.json before use (default True).
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
_OPT_LEVELS = ("disable", "basic", "extended", "all")
_EXEC_MODES = ("sequential", "parallel")
_OPTIONS = (
    "providers",
    "graph_optimization_level",
    "intra_op_num_threads",
    "inter_op_num_threads",
    "execution_mode",
    "verify_files",
)


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - onnxruntime is installed in every test env
        raise CapabilityError(
            "onnxruntime is not installed: pip install 'radzoo[onnx]' (CPU) or 'radzoo[gpu]' (CUDA)"
        ) from exc
    return onnxruntime


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


def check_providers(providers: str | Sequence[str]) -> list[str]:
    """Providers as a list, each one available in this onnxruntime build."""
    available = _ort().get_available_providers()
    chosen = [providers] if isinstance(providers, str) else list(providers)
    if not chosen or not all(isinstance(p, str) for p in chosen):
        raise InputError(f"providers must be a non-empty list of provider names, got {providers!r}")
    missing = [p for p in chosen if p not in available]
    if missing:
        hint = " (install onnxruntime-gpu for CUDA)" if CUDA in missing else ""
        raise InputError(
            f"onnxruntime provider(s) {', '.join(missing)} not available here{hint}; available: {', '.join(available)}"
        )
    return chosen


def make_session(path: str | Path, providers: Sequence[str] | None = None, **options: Any) -> Any:
    """An ``InferenceSession`` for one graph file with validated options."""
    ort = _ort()
    return ort.InferenceSession(
        str(path),
        sess_options=session_options(**options),
        providers=check_providers(providers or [CPU]),
    )


def default_providers(device_type: str) -> list[str]:
    available = _ort().get_available_providers()
    if CUDA in available and device_type == "cuda":
        return [CUDA, CPU]
    return [CPU]


class OnnxRuntime:
    """The ``Runtime`` protocol over an artifact's ``onnx/`` graphs (``name = "onnx"``)."""

    name = "onnx"

    def __init__(
        self,
        directory: Path,
        config: dict[str, Any],
        *,
        providers: Sequence[str],
        verify_files: bool = True,
        reason: str = "requested runtime='onnx'",
        **options: Any,
    ) -> None:
        self.reason = reason
        self.directory = Path(directory)
        self.section = config["onnx"]
        self.weights_sha = config.get("weights", {}).get("sha256")
        self.providers = list(providers)
        self.options = options
        self.verify_files = verify_files
        session_options(**options)  # validate now, not at first use
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OnnxRuntime({str(self.directory)!r}, providers={self.providers}, graphs={sorted(self.graphs)})"

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
                sess = make_session(path, self.providers, **self.options)
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
        return self.session(graph).run(None, feeds)[0]

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


def onnx_runtime_for(model: ZooModel, *, reason: str = "requested runtime='onnx'", **options: Any) -> OnnxRuntime:
    """The onnxruntime backend for a model loaded from an artifact directory with an ONNX export."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InputError(f"unknown onnx runtime option(s) {unknown}; known: {', '.join(_OPTIONS)}")
    if model.directory is None:
        raise ArtifactError(
            f"model {model.name!r} was not loaded from an artifact directory (radzoo.build?): save it with "
            "zoo.save(model, DIR), run `radzoo export DIR`, then radzoo.load(DIR, runtime='onnx')"
        )
    if not model.config.get("onnx", {}).get("graphs"):
        raise ArtifactError(
            f"artifact {model.directory} has no ONNX export; run `radzoo export {model.directory}` first"
        )
    providers = options.pop("providers", None)
    providers = check_providers(providers) if providers is not None else default_providers(model.device.type)
    return OnnxRuntime(model.directory, model.config, providers=providers, reason=reason, **options)
