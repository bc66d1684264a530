"""The served models: which names exist, and a lazy pool that keeps at most N of them loaded.

Models load on first use (one load per name even under concurrent first requests) and the
least recently used one is unloaded when the pool is full. Each loaded model owns a
:class:`~radzoo.serving.batching.Batcher`; a request that still holds an evicted model finishes
on it normally.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from radzoo.errors import InputError, ModelNotFoundError
from radzoo.serving import metrics
from radzoo.serving.batching import Batcher
from radzoo.serving.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model in the pool with its batcher and how it was loaded."""

    name: str
    model: Any  # radzoo.zoo.ZooModel
    batcher: Batcher
    runtime: str
    load_seconds: float

    def embed_batch(self, batch: Any, output: str) -> Any:
        return self.batcher.submit(batch, output)


def onnx_available() -> bool:
    """Whether the ONNX runtime module of radzoo is installed in this build."""
    try:
        import radzoo.onnx.ort_runtime  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def _spec_of(name: str) -> tuple[Any, str]:
    """(spec, source) for a local artifact or registry name, without loading weights."""
    from radzoo import zoo
    from radzoo.zoo.artifact import is_artifact, read_config
    from radzoo.zoo.spec import ModelSpec

    local = zoo.local_zoo_dir() / name
    if is_artifact(local):
        config = read_config(local)
        return ModelSpec.from_dict(config["spec"]), "local"
    return zoo.get_spec(name), "registry"


def _has_onnx_export(name: str) -> bool:
    from radzoo import zoo
    from radzoo.zoo.artifact import is_artifact, read_config

    local = zoo.local_zoo_dir() / name
    return is_artifact(local) and "onnx" in read_config(local)


class ModelPool:
    """Lazily loaded models, least recently used evicted beyond ``settings.max_loaded_models``."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._name_locks: dict[str, threading.Lock] = {}
        self.loads = 0
        self.evictions = 0

    # ---- what is served --------------------------------------------------------------------
    def served_names(self) -> list[str]:
        """Names this server answers for: the configured list, else registry + local zoo."""
        from radzoo import zoo

        if self.settings.models:
            return list(self.settings.models)
        return sorted(set(zoo.list_models()) | set(zoo.local_models()))

    def check_served(self, name: str | None) -> str:
        """The model name to use for a request, or a 4xx error naming the choices."""
        if name is None or name == "":
            default = self.settings.resolved_default_model()
            if default is None:
                raise InputError("no model given and the server has no default model; pass \"model\"")
            return default
        if not isinstance(name, str):
            raise InputError(f"model must be a string, got {type(name).__name__}")
        served = self.served_names()
        if name not in served:
            shown = ", ".join(served[:20]) + (" ..." if len(served) > 20 else "")
            raise ModelNotFoundError(f"model {name!r} is not served here; available: {shown}")
        return name

    def describe(self) -> list[dict[str, Any]]:
        """One entry per served model: dims, outputs, licence, loaded or not, runtime."""
        rows = []
        with self._lock:
            loaded = dict(self._loaded)
        for name in self.served_names():
            row: dict[str, Any] = {"id": name, "object": "model", "loaded": name in loaded}
            try:
                spec, source = _spec_of(name)
            except Exception as exc:  # noqa: BLE001 - one broken entry must not hide the others
                row.update({"available": False, "error": str(exc)})
                rows.append(row)
                continue
            entry = loaded.get(name)
            row.update(
                {
                    "available": True,
                    "source": source,
                    "method": spec.method,
                    "modality": spec.modality,
                    "dim": spec.dim,
                    "outputs": dict(spec.outputs),
                    "default_output": spec.default_output,
                    "license": spec.license,
                    "paper_url": spec.paper_url,
                    "description": spec.description,
                    "random_weights": bool(self.settings.random_weights or spec.random_init),
                    "runtime": entry.runtime if entry else self.planned_runtime(name),
                    "capabilities": capabilities(spec),
                }
            )
            rows.append(row)
        return rows

    def planned_runtime(self, name: str) -> str:
        """The runtime a load of ``name`` would use (``auto`` resolved against the artifact)."""
        choice = self.settings.runtime
        if choice != "auto":
            return choice
        if self.settings.random_weights:
            return "torch"
        return "onnx" if onnx_available() and _has_onnx_export(name) else "torch"

    # ---- loading ---------------------------------------------------------------------------
    def loaded_names(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def get(self, name: str) -> LoadedModel:
        """The loaded model ``name`` (loading it, and evicting the LRU one, when needed)."""
        name = self.check_served(name)
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None:
                self._loaded.move_to_end(name)
                return entry
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            with self._lock:
                entry = self._loaded.get(name)
                if entry is not None:
                    self._loaded.move_to_end(name)
                    return entry
            entry = self._load(name)
            evicted: list[LoadedModel] = []
            with self._lock:
                self._loaded[name] = entry
                while len(self._loaded) > self.settings.max_loaded_models:
                    _, old = self._loaded.popitem(last=False)
                    evicted.append(old)
                self.loads += 1
                self.evictions += len(evicted)
            metrics.model_loaded(name)
            metrics.models_evicted(len(evicted))
            for old in evicted:
                log.info("unloading model %s (least recently used; max_loaded_models=%d)",
                         old.name, self.settings.max_loaded_models)
                old.batcher.close()
            return entry

    def _load(self, name: str) -> LoadedModel:
        from radzoo import zoo

        settings = self.settings
        start = time.perf_counter()
        runtime = self.planned_runtime(name)
        if settings.random_weights:
            if runtime == "onnx":
                raise InputError(
                    f"model {name!r}: random-weight models have no ONNX export; serve them with runtime torch or auto"
                )
            spec, _ = _spec_of(name)
            model = zoo.build(spec, device=settings.device)
        else:
            model = zoo.load(name, device=settings.device, runtime=runtime)
        seconds = time.perf_counter() - start
        log.info("loaded model %s (runtime %s, %s) in %.2f s", name, model.runtime.name,
                 "RANDOM weights" if model.random_init else "weights " + model.revision, seconds)
        batcher = Batcher(model.embed_batch, max_batch_size=settings.max_batch_size,
                          wait_ms=settings.batch_wait_ms, name=name)
        return LoadedModel(name, model, batcher, model.runtime.name, seconds)

    def close(self) -> None:
        with self._lock:
            entries = list(self._loaded.values())
            self._loaded.clear()
        for entry in entries:
            entry.batcher.close()


def capabilities(spec: Any) -> list[str]:
    """Endpoints a spec can serve (by modality and text tower)."""
    caps = []
    if spec.modality == "cxr" and spec.preprocess.input == "image2d":
        caps.append("embeddings")
    if spec.modality == "ct":
        caps.append("ct_features")
    if spec.arch_args.get("text_config") and not spec.arch_args.get("image_only", False):
        caps += ["zero_shot", "ground"]
    return caps
