"""The same index on Milvus, for deployments beyond one machine: ``milvus://host:19530/collection``.

``milvus-lite:///path/cases.db/collection`` runs the real Milvus engine in-process on a local file
(the tests use it). Rows carry the same keys as the local index; the model identity, the sources'
shards and the removed UIDs live in a companion collection ``<collection>_radzoo_meta``. Filters,
the query patient's exclusion and the query's own row become one boolean expression that Milvus
applies inside its search; removals are deletes (effective at once).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from radzoo.errors import CapabilityError, InputError
from radzoo.search.extract_source import KEY_COLUMNS, ExtractSource
from radzoo.search.similar import HIT_KEYS, QueryBase, QueryResult

TEXT_FIELDS = (*KEY_COLUMNS, "source")
_META_SUFFIX = "_radzoo_meta"
_MAX_JSON = 65_535


def parse_uri(uri: str) -> tuple[str, str]:
    """(client URI, collection) of ``milvus://host:port/collection`` or ``milvus-lite:///file.db/collection``."""
    parsed = urlparse(uri)
    path = parsed.path.rstrip("/")
    collection = path.rpartition("/")[2]
    if not collection or not collection.replace("_", "").isalnum():
        raise InputError(f"{uri}: name a collection (letters, digits, _) at the end, e.g. milvus://host:19530/cases")
    if parsed.scheme == "milvus":
        if not parsed.hostname:
            raise InputError(f"{uri}: no host; expected milvus://host:19530/collection")
        return f"http://{parsed.hostname}:{parsed.port or 19530}", collection
    db = path.rpartition("/")[0]
    if not db.endswith(".db"):
        raise InputError(f"{uri}: expected milvus-lite:///path/to/file.db/collection")
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    return db, collection


def _client(uri: str) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:  # pragma: no cover - the search extra is missing
        raise CapabilityError("milvus:// indexes need pymilvus (and milvus-lite): pip install 'radzoo[search]'") from exc
    target, collection = parse_uri(uri)
    try:
        return MilvusClient(target), collection
    except Exception as exc:  # noqa: BLE001 - connection errors come in many pymilvus types
        raise InputError(f"cannot connect to Milvus at {uri.split('?')[0]}: {exc}") from exc


def _quote(value: str) -> str:
    return json.dumps(str(value))


class MilvusIndex(QueryBase):
    """A similar-case index in a Milvus collection; the same ``query`` as the local index."""

    def __init__(self, uri: str, client: Any, collection: str, manifest: dict[str, Any]) -> None:
        self.path = uri
        self.client = client
        self.collection = collection
        self.manifest = manifest
        self.model_identity = dict(manifest.get("model") or {})
        self._model = None

    # ---- open / build / remove ----------------------------------------------------------------
    @classmethod
    def open(cls, uri: str) -> MilvusIndex:
        client, collection = _client(uri)
        manifest = _read_meta(client, collection)
        if manifest is None or not client.has_collection(collection):
            raise InputError(f"{uri}: no radzoo index in collection {collection!r} (build it with "
                             f"`radzoo index build EXTRACT_DIR --out {uri}`)")
        client.load_collection(collection)
        return cls(uri, client, collection, manifest)

    @classmethod
    def build(cls, uri: str, extract_dirs: Sequence[str | os.PathLike[str]], rebuild: bool = False) -> dict[str, Any]:
        from radzoo.search.index_build import _check_identity, _new_manifest, _not_removed, _now

        client, collection = _client(uri)
        manifest = None if rebuild else _read_meta(client, collection)
        removed_before = (_read_meta(client, collection) or {}).get("removed_uids", []) if rebuild else []
        if manifest is None:
            for name in (collection, collection + _META_SUFFIX):
                if client.has_collection(name):
                    client.drop_collection(name)
            manifest = _new_manifest(0) | {"backend": "milvus", "removed_uids": removed_before}
        sources = manifest["sources"]
        next_id = int(manifest.get("rows", 0))
        added = 0
        for d in extract_dirs:
            path = Path(d).resolve()
            source = ExtractSource(path, set(sources.get(str(path), {}).get("shards", [])))
            _check_identity(manifest, source.identity, path)
            if not client.has_collection(collection):
                _create(client, collection, int(manifest["dim"]))
            for name in source.new:  # one shard in memory at a time
                table = source.keys(name)
                keep = _not_removed(table, set(manifest.get("removed_uids", [])))
                keys, vectors = table.to_pylist(), source.vectors(name)
                data = []
                for j in np.flatnonzero(keep):
                    entry = {f: (keys[j].get(f) or "") for f in TEXT_FIELDS}
                    data.append({"id": next_id, "vector": vectors[j].tolist(), **entry})
                    next_id += 1
                for lo in range(0, len(data), 1000):
                    client.insert(collection, data[lo: lo + 1000])
                added += len(data)
            entry = sources.setdefault(str(path), {"shards": [], "pseudonymized": source.pseudonymized})
            entry["shards"] = sorted(set(entry["shards"]) | set(source.new))
        manifest.update(rows=next_id, added_last=added, updated=_now(), generation=manifest.get("generation", 0) + 1,
                        ann={"kind": "milvus-autoindex"})
        client.flush(collection)
        _write_meta(client, collection, manifest)
        return manifest

    def remove(self, uids: Sequence[str]) -> dict[str, Any]:
        wanted = sorted({u.strip() for u in uids if u and u.strip()})
        if not wanted:
            raise InputError("no UIDs given to remove")
        listed = "[" + ",".join(_quote(u) for u in wanted) + "]"
        expr = " or ".join(f"{c} in {listed}" for c in ("sop_instance_uid", "series_instance_uid", "study_instance_uid"))
        found = self.client.query(self.collection, filter=expr, output_fields=["id", "sop_instance_uid",
                                                                               "series_instance_uid", "study_instance_uid"])
        seen = {r[c] for r in found for c in ("sop_instance_uid", "series_instance_uid", "study_instance_uid")}
        if found:
            self.client.delete(self.collection, ids=[int(r["id"]) for r in found])
        self.manifest["removed"] = int(self.manifest.get("removed", 0)) + len(found)
        self.manifest["removed_uids"] = sorted(set(self.manifest.get("removed_uids", [])) | set(wanted))
        _write_meta(self.client, self.collection, self.manifest)
        return {"removed": len(found), "unknown": [u for u in wanted if u not in seen]}

    # ---- the query interface -------------------------------------------------------------------
    def __len__(self) -> int:
        stats = self.client.get_collection_stats(self.collection)
        return int(stats.get("row_count", 0))

    @property
    def backend(self) -> str:
        return "milvus"

    def row_of(self, uid: str) -> int:
        for field in ("sop_instance_uid", "series_instance_uid"):
            found = self.client.query(self.collection, filter=f"{field} == {_quote(uid)}", output_fields=["id"], limit=1)
            if found:
                return int(found[0]["id"])
        raise InputError(f"uid {uid!r} is not in index {self.path.split('?')[0]}")

    def _row(self, row: int, fields: list[str]) -> dict[str, Any]:
        found = self.client.get(self.collection, ids=[int(row)], output_fields=fields)
        if not found:
            raise InputError(f"row {row} is not in index {self.path}")
        return found[0]

    def vector_of(self, row: int) -> np.ndarray:
        return np.asarray(self._row(row, ["vector"])["vector"], np.float32)

    def patient_of_row(self, row: int) -> str | None:
        return self._row(row, ["patient_key"])["patient_key"] or None

    def patient_of_sha256(self, digest: str) -> str | None:
        found = self.client.query(self.collection, filter=f"sha256 == {_quote(digest)}", output_fields=["patient_key"],
                                  limit=1)
        return (found[0]["patient_key"] or None) if found else None

    def search_vectors(self, labels: Sequence[str], vectors: Sequence[np.ndarray], *, k: int,
                       filters: Mapping[str, list[str]], own_rows: Sequence[int | None] | None = None,
                       patients: Sequence[str | None] | None = None) -> list[QueryResult]:
        from radzoo.search.extract_source import normalise

        base = _filter_expr(filters)
        results = []
        for i, (label, vec) in enumerate(zip(labels, vectors, strict=True)):
            parts = [base] if base else []
            own = own_rows[i] if own_rows else None
            if own is not None:
                parts.append(f"id != {int(own)}")
            patient = patients[i] if patients else None
            if patient:
                parts.append(f"patient_key != {_quote(patient)}")
            q = normalise(np.asarray(vec, np.float32)[None])[0].tolist()
            found = self.client.search(self.collection, data=[q], limit=k, filter=" and ".join(parts),
                                       output_fields=list(HIT_KEYS), search_params={"metric_type": "IP"})
            hits = []
            for rank, hit in enumerate(found[0], start=1):
                entity = hit.get("entity", {})
                hits.append({"rank": rank, "score": round(float(hit["distance"]), 6),
                             **{c: (entity.get(c) or None) for c in HIT_KEYS}})
            results.append(QueryResult(label, hits))
        return results


def _filter_expr(filters: Mapping[str, list[str]]) -> str:
    parts = []
    for name, values in filters.items():
        alts = []
        for value in values:
            lo, sep, hi = value.partition("..")
            if sep and name == "study_date":
                alts.append(f'({name} != "" and {name} >= {_quote(lo or "")} and {name} <= {_quote(hi or "99999999")})')
            else:
                alts.append(f"{name} == {_quote(value)}")
        parts.append("(" + " or ".join(alts) + ")")
    return " and ".join(parts)


def _create(client: Any, collection: str, dim: int) -> None:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    for name in TEXT_FIELDS:
        schema.add_field(name, DataType.VARCHAR, max_length=4096)
    params = client.prepare_index_params()
    params.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="IP")
    client.create_collection(collection, schema=schema, index_params=params)


def _read_meta(client: Any, collection: str) -> dict[str, Any] | None:
    meta = collection + _META_SUFFIX
    if not client.has_collection(meta):
        return None
    client.load_collection(meta)
    found = client.query(meta, filter="id == 0", output_fields=["manifest"])
    return json.loads(found[0]["manifest"]) if found else None


def _write_meta(client: Any, collection: str, manifest: dict[str, Any]) -> None:
    from pymilvus import DataType

    meta = collection + _META_SUFFIX
    text = json.dumps(manifest, default=str)
    if len(text) > _MAX_JSON:
        raise InputError(f"index manifest too large for Milvus metadata ({len(text)} bytes)")
    if not client.has_collection(meta):
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
        schema.add_field("manifest", DataType.VARCHAR, max_length=_MAX_JSON)
        params = client.prepare_index_params()
        params.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="L2")
        client.create_collection(meta, schema=schema, index_params=params)
    client.upsert(meta, [{"id": 0, "vector": [0.0, 0.0], "manifest": text}])
    client.flush(meta)
