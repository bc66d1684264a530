"""POST /v1/search: similar cases from the index the server was started with (``radzoo serve --index``).

Image queries are decoded and embedded by the served copy of the index's model (the same pool,
batcher, limits and per-item errors as /v1/embeddings) after its identity (name, revision,
preprocessing, output, precision) is checked against the index; text queries need a joint
image-text index; uid queries use the stored vector. Hits carry only what the extraction stored.
Thumbnails (``thumbnails: true``) come from the /display rendering, and only for hits whose source
file this server can read in an index that is not pseudonymised. Nothing here logs keys or paths.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import CapabilityError, InputError
from radzoo.serving import metrics
from radzoo.serving.request_items import TextItem, parse_items
from radzoo.serving.schemas import SearchRequest, parse_request

THUMBNAIL_SIDE = 160


class SimilarCases:
    """The index behind /v1/search, opened once (lazily) per server process."""

    def __init__(self, endpoints: Any) -> None:
        self.endpoints = endpoints
        self.location = endpoints.settings.index
        self._index: Any = None
        self._opened_stamp: int | None = None
        self._lock = threading.Lock()

    def index(self) -> Any:
        if not self.location:
            raise CapabilityError("this server has no similar-case index; start it with `radzoo serve --index INDEX` "
                                  "(RADZOO_INDEX)")
        with self._lock:
            stamp = self._stamp()
            if self._index is None or stamp != self._opened_stamp:  # rebuilt, grown or pruned since: reopen
                from radzoo.search import open_index

                self._index = open_index(self.location)
                self._opened_stamp = stamp
            return self._index

    def _stamp(self) -> int | None:
        """When the local index last committed (its manifest's mtime); None for a database URI."""
        try:
            return Path(self.location, "index.json").stat().st_mtime_ns
        except (OSError, TypeError, ValueError):
            return None

    def describe(self) -> dict[str, Any] | None:
        """What GET /models says about the index (no paths)."""
        if not self.location:
            return None
        try:
            index = self.index()
        except InputError as exc:
            return {"available": False, "error": str(exc).replace(str(self.location), "<index>")}
        ann = dict(index.manifest.get("ann") or {}) if isinstance(index.manifest, dict) else {}
        return {"available": True, "model": index.model_identity, "rows": len(index), "backend": index.backend,
                "recall_at_10": ann.get("recall_at_10"), "pseudonymized": index.pseudonymized,
                "filters": list(_filter_fields())}

    def search(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        from radzoo.search.similar import check_k, parse_filters

        req = parse_request(SearchRequest, fields)
        k = check_k(req.k)
        filters = parse_filters(req.filters)
        images, texts, uids = _listed(req.image), _listed(req.text), _listed(req.uid)
        if not (images or texts or uids):
            raise InputError("give 'image', 'text' or 'uid' to search for")
        total = len(images) + len(texts) + len(uids)
        if total > self.endpoints.settings.max_items:
            from radzoo.serving.http_errors import PayloadTooLargeError

            raise PayloadTooLargeError(f"{total} queries in one request exceeds the server limit of "
                                       f"{self.endpoints.settings.max_items} (RADZOO_MAX_ITEMS)")
        index = self.index()
        started = time.perf_counter()
        labels, vectors, own, patients, errors = [], [], [], [], []
        index.add_uid_queries(uids, labels, vectors, own, patients)
        if images:
            self._embed_images(index, images, labels, vectors, own, patients, errors)
        if texts:
            for i, vec in enumerate(self._embed_texts(index, texts)):
                labels.append(f"text[{i}]")  # the text itself is not echoed (reports may identify patients)
                vectors.append(vec)
                own.append(None)
                patients.append(None)
        embedded = time.perf_counter()
        results = index.search_vectors(labels, vectors, k=k, filters=filters, own_rows=own,
                                       patients=patients if req.exclude_same_patient else None)
        done = time.perf_counter()
        metrics.items_processed(str(index.model_identity.get("model")), "search", len(results))
        data = []
        for r in results:
            hits = [self._with_thumbnail(index, h) for h in r.hits] if req.thumbnails else r.hits
            data.append({"query": r.query, "hits": hits})
        return {"object": "list", "data": data, "k": k, "model": index.model_identity, "backend": index.backend,
                "errors": errors, "timing_ms": {"embed": round((embedded - started) * 1000, 3),
                                                "search": round((done - embedded) * 1000, 3)}}

    def _embed_images(self, index: Any, images: list[str], labels: list[str], vectors: list[np.ndarray],
                      own: list[Any], patients: list[Any], errors: list[dict[str, Any]]) -> None:
        from radzoo.extract.state import identity_of
        from radzoo.search.model_check import check_same

        ident = index.model_identity
        entry = self.endpoints.pool.get(self.endpoints.pool.check_served(str(ident["model"])))
        served = identity_of(entry.model, ident["output"]).to_dict()
        served["precision"] = entry.precision
        check_same(ident, served, f"served model {entry.model.name!r}")
        items = parse_items(images, "image", self.endpoints.fetcher)
        decoded, indices, item_errors = self.endpoints._decode(list(enumerate(items)), entry.model, "search")
        errors += item_errors
        if not decoded:
            if item_errors:
                from radzoo.serving.http_errors import NoUsableItemsError

                raise NoUsableItemsError(f"none of the {len(items)} images could be used: "
                                         f"{item_errors[0]['message']}", item_errors)
            return
        rows = entry.embed_batch(entry.model.prepare(decoded).numpy(), ident["output"])
        for i, vec in zip(indices, rows, strict=True):
            item = items[i]
            labels.append(f"image[{i}]")
            vectors.append(vec)
            own.append(None)
            patients.append(index.patient_of_file(item) if isinstance(item, bytes) else None)

    def _embed_texts(self, index: Any, texts: list[str]) -> np.ndarray:
        from radzoo.extract.state import identity_of
        from radzoo.resolve import JOINT_OUTPUT
        from radzoo.search.model_check import check_same, require_text
        from radzoo.serving.batching import INFERENCE_LOCK

        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise InputError(f"text[{i}]: expected a non-empty string")
        ident = index.model_identity
        if ident.get("output") != JOINT_OUTPUT:
            require_text(ident, None)
        entry = self.endpoints.pool.get(self.endpoints.pool.check_served(str(ident["model"])))
        require_text(ident, entry.model)
        served = identity_of(entry.model, JOINT_OUTPUT).to_dict()
        served["precision"] = entry.precision
        check_same(ident, served, f"served model {entry.model.name!r}")
        with INFERENCE_LOCK:
            return entry.model.embed_text(texts)

    def _with_thumbnail(self, index: Any, hit: dict[str, Any]) -> dict[str, Any]:
        out = dict(hit)
        path = hit.get("path")
        if index.pseudonymized or not path or not Path(path).is_file():
            out["thumbnail"] = None
            return out
        try:
            data = Path(path).read_bytes()
            if hit.get("sha256") and hashlib.sha256(data).hexdigest() != hit["sha256"]:
                out["thumbnail"] = None  # the file changed since extraction: not the indexed image
                return out
            png = self.endpoints.display_png(data, THUMBNAIL_SIDE)
        except (OSError, InputError):
            out["thumbnail"] = None
            return out
        out["thumbnail"] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return out


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, (str, dict, TextItem)) else list(value)


def _filter_fields() -> tuple[str, ...]:
    from radzoo.search.similar import FILTER_FIELDS

    return FILTER_FIELDS
