"""The served models: which names exist, and a pool that keeps at most N of them loaded.

Configured models (``settings.models``) are loaded once at start-up (:meth:`ModelPool.preload`)
so a broken artifact shows in ``/readyz`` and ``/models`` instead of on the first request; the
first ``max_loaded_models`` of them stay loaded. Other models load on first use (one load per name
even under concurrent first requests) and the least recently used one is unloaded when the pool
is full. Each loaded model owns a :class:`~radzoo.serving.batching.Batcher`; a request that still
holds an evicted model finishes on it normally.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radzoo.errors import InputError, ModelNotFoundError, RadzooError
from radzoo.resolve import load, spec_of
from radzoo.serving import metrics
from radzoo.serving.batching import Batcher
from radzoo.serving.missing_features import unavailable
from radzoo.serving.settings import ServeSettings
from radzoo.zoo.batch_record import default_batch

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model in the pool with its batcher and how it was loaded."""

    name: str
    model: Any  # radzoo.zoo.ZooModel
    batcher: Batcher
    runtime: str
    load_seconds: float
    precision: str = "fp32"
    batch_source: str = "given"  # where the batcher's max batch size came from (RADZOO_MAX_BATCH_SIZE or bench)

    def embed_batch(self, batch: Any, output: str) -> Any:
        return self.batcher.submit(batch, output)


class ModelPool:
    """Lazily loaded models, least recently used evicted beyond ``settings.max_loaded_models``."""

    def __init__(self, settings: ServeSettings, paths: Mapping[str, Path] | None = None) -> None:
        self.settings = settings
        self.paths = dict(paths or {})  # name -> artifact folder (a bento's models); other names resolve as usual
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._name_locks: dict[str, threading.Lock] = {}
        self.loads = 0
        self.evictions = 0
        self.load_errors: dict[str, str] = {}  # name -> why its last load failed
        self.preloaded = threading.Event()

    # ---- start-up and readiness ---------------------------------------------------------------
    def preload(self) -> None:
        """Load every configured model once, recording failures; the first ones stay loaded."""
        try:
            for name in reversed(self.settings.models):  # the default (first) model is loaded last
                try:
                    self.get(name)
                except Exception:  # noqa: BLE001 - recorded in load_errors by _load; keep checking the others
                    continue
        finally:
            self.preloaded.set()

    def ready(self) -> bool:
        """True once the start-up loads are done and every configured model loaded."""
        return self.preloaded.is_set() and not any(n in self.load_errors for n in self.settings.models)

    # ---- what is served --------------------------------------------------------------------
    def served_names(self) -> list[str]:
        """Names this server answers for: the configured list, else registry + local zoo."""
        from radzoo.zoo import list_models, local_models

        if self.settings.models:
            return list(self.settings.models)
        return sorted(set(list_models()) | set(local_models()) | set(self.paths))

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
            row: dict[str, Any] = {"id": name, "object": "model", "loaded": name in loaded,
                                   "load_error": self.load_errors.get(name)}
            try:
                spec, source = spec_of(self.paths.get(name, name))
                source = "bento" if name in self.paths else source
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
                    "runtime": entry.runtime if entry else self.settings.runtime,
                    "precision": entry.precision if entry else self.settings.precision,
                    "runtime_reason": entry.model.runtime.reason if entry else "decided when the model loads",
                    "max_batch_size": entry.batcher.max_batch_size if entry else self.settings.max_batch_size,
                    "max_batch_size_source": entry.batch_source if entry else
                    "RADZOO_MAX_BATCH_SIZE" if self.settings.max_batch_size else "decided when the model loads",
                    "capabilities": sorted(spec.capabilities),
                    "unavailable": unavailable(spec.capabilities),  # features this install lacks a package for
                }
            )
            rows.append(row)
        return rows

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
        settings = self.settings
        start = time.perf_counter()
        try:
            model = load(self.paths.get(name, name), device=settings.device, runtime=settings.runtime,
                         random_weights=settings.random_weights, precision=settings.precision)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, RadzooError) else f"{type(exc).__name__}: {exc}"
            self.load_errors[name] = reason[:2000]
            log.error("model %s failed to load: %s", name, reason)
            raise
        self.load_errors.pop(name, None)
        seconds = time.perf_counter() - start
        log.info("loaded model %s (runtime %s: %s; %s) in %.2f s", name, model.runtime.name, model.runtime.reason,
                 "RANDOM weights" if model.random_init else "weights " + model.revision, seconds)
        precision = getattr(model.runtime, "precision", "fp32")
        max_batch, source = settings.max_batch_size, "RADZOO_MAX_BATCH_SIZE"
        if max_batch is None:
            choice = default_batch(model.name, model.runtime.name, precision, model.device)
            max_batch, source = choice.size, choice.source
        log.info("model %s: max batch size %d from %s", name, max_batch, source)
        batcher = Batcher(model.embed_batch, max_batch_size=max_batch, wait_ms=settings.batch_wait_ms, name=name)
        return LoadedModel(name, model, batcher, model.runtime.name, seconds, precision, source)

    def close(self) -> None:
        with self._lock:
            entries = list(self._loaded.values())
            self._loaded.clear()
        for entry in entries:
            entry.batcher.close()
