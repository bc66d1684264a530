"""Prometheus counters exported on BentoML's ``/metrics`` endpoint.

Created lazily, inside the worker: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` after importing the
service module, and metrics created before that would never reach ``/metrics``.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def _get() -> dict[str, Any]:
    with _lock:
        if not _metrics:
            import prometheus_client as prom

            _metrics["items"] = prom.Counter(
                "radzoo_items_embedded", "Images (or volumes) successfully processed", ["model", "endpoint"]
            )
            _metrics["errors"] = prom.Counter(
                "radzoo_errors", "Errors by type (per item and per request)", ["endpoint", "type"]
            )
            _metrics["loads"] = prom.Counter("radzoo_model_loads", "Model loads into the pool", ["model"])
            _metrics["evictions"] = prom.Counter("radzoo_model_evictions", "Models unloaded (LRU)", [])
            _metrics["rejected"] = prom.Counter(
                "radzoo_requests_rejected", "Requests refused before reaching a model", ["reason"]
            )
        return _metrics


def items_processed(model: str, endpoint: str, n: int) -> None:
    if n:
        _get()["items"].labels(model=model, endpoint=endpoint).inc(n)


def error(endpoint: str, kind: str, n: int = 1) -> None:
    if n:
        _get()["errors"].labels(endpoint=endpoint, type=kind).inc(n)


def model_loaded(model: str) -> None:
    _get()["loads"].labels(model=model).inc()


def models_evicted(n: int) -> None:
    if n:
        _get()["evictions"].inc(n)


def rejected(reason: str) -> None:
    _get()["rejected"].labels(reason=reason).inc()
