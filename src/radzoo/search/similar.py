"""``radzoo.search.open(INDEX).query(...)``: ranked neighbours by image, text or indexed UID.

Queries are embedded through ``radzoo.load`` with the index's model identity and refused when the
model, weights revision, preprocessing, output or precision differ. Filters, tombstones and the
query patient's exclusion become one allowed-rows mask that the backend applies inside the search.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from radzoo.errors import InputError
from radzoo.search import index_folder as folder_fmt
from radzoo.search.extract_source import normalise
from radzoo.search.model_check import check_same, require_text

MAX_K = 1000
#: fields a filter may name (``view`` is accepted for ``view_position``)
FILTER_FIELDS = ("modality", "view_position", "study_date", "patient_key", "source",
                 "study_instance_uid", "series_instance_uid")
#: what a hit carries besides rank and score: only what the extraction stored
HIT_KEYS = ("path", "sha256", "sop_instance_uid", "series_instance_uid", "study_instance_uid",
            "patient_key", "modality", "view_position", "study_date")


@dataclass
class QueryResult:
    """One query's ranked neighbours: ``hits`` = [{rank, score, path, sha256, UIDs ...}]."""

    query: str  # "image:NAME", "text:...", "uid:..."
    hits: list[dict[str, Any]] = field(default_factory=list)


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise InputError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return int(k)


def parse_filters(filters: Mapping[str, Any] | Sequence[str] | None) -> dict[str, list[str]]:
    """``{"modality": "CR"}`` / ``["modality=CR,DX", "study_date=20200101..20201231"]`` -> field: values."""
    if not filters:
        return {}
    if not isinstance(filters, Mapping):
        pairs = {}
        for item in filters:
            name, sep, value = str(item).partition("=")
            if not sep or not name.strip():
                raise InputError(f"filter {item!r} must look like FIELD=VALUE[,VALUE...]")
            pairs[name.strip()] = value.split(",")
        filters = pairs
    out: dict[str, list[str]] = {}
    for name, value in filters.items():
        key = "view_position" if name == "view" else name
        if key not in FILTER_FIELDS:
            raise InputError(f"unknown filter field {name!r}; filterable: {', '.join(FILTER_FIELDS)} (or view)")
        values = value if isinstance(value, (list, tuple)) else [value]
        out[key] = [str(v).strip() for v in values if str(v).strip()]
        if not out[key]:
            raise InputError(f"filter {name!r} has no value")
    return out


class QueryBase:
    """What every backend shares: embedding queries (with the identity check) and the query flow.

    A backend provides ``model_identity``, ``manifest``, ``row_of(uid)``, ``vector_of(row)``,
    ``patient_of_row(row)``, ``patient_of_sha256(digest)`` and ``search_vectors(...)``."""

    model_identity: dict[str, Any]
    manifest: dict[str, Any]
    _model: Any = None

    @property
    def pseudonymized(self) -> bool:
        return any(v.get("pseudonymized") for v in self.manifest.get("sources", {}).values())

    def patient_of_file(self, image: Any) -> str | None:
        """The patient key of a query file (path or bytes) that is itself indexed (matched by
        sha256, when the index stores hashes in clear): the query patient to exclude."""
        if self.pseudonymized:
            return None
        if isinstance(image, (bytes, bytearray)):
            data = bytes(image)
        elif isinstance(image, (str, os.PathLike)) and Path(image).is_file():
            data = Path(image).read_bytes()
        else:
            return None
        return self.patient_of_sha256(hashlib.sha256(data).hexdigest())

    # ---- query ----------------------------------------------------------------------------
    def query(self, images: Sequence[Any] = (), texts: Sequence[str] = (), uids: Sequence[str] = (), *,
              k: int = 10, filters: Mapping[str, Any] | Sequence[str] | None = None,
              exclude_same_patient: bool = False, model: Any = None) -> list[QueryResult]:
        """Neighbours of each image (path, bytes or array), text and indexed UID, best first.

        ``model``: an already loaded model (else the index's model is loaded through
        ``radzoo.load``); checked against the index's identity either way.
        """
        k = check_k(k)
        wanted = parse_filters(filters)
        images, texts, uids = list(images or ()), list(texts or ()), list(uids or ())
        if not (images or texts or uids):
            raise InputError("give images, texts or uids to search for")
        labels, vectors, self_rows, patients = [], [], [], []
        self.add_uid_queries(uids, labels, vectors, self_rows, patients)
        if images:
            for i, (img, v) in enumerate(zip(images, self.embed_images(images, model), strict=True)):
                labels.append(f"image:{_label(img, i)}")
                vectors.append(v)
                self_rows.append(None)
                patients.append(self.patient_of_file(img))
        if texts:
            for t, v in zip(texts, self.embed_texts(texts, model), strict=True):
                labels.append(f"text:{t}")
                vectors.append(v)
                self_rows.append(None)
                patients.append(None)
        return self.search_vectors(labels, vectors, k=k, filters=wanted, own_rows=self_rows,
                                   patients=patients if exclude_same_patient else None)

    def add_uid_queries(self, uids: Sequence[str], labels: list[str], vectors: list[np.ndarray],
                        own_rows: list[int | None], patients: list[str | None]) -> None:
        """Append each indexed UID's query: its label, stored vector, own row (left out) and patient."""
        for uid in uids:
            row = self.row_of(uid)
            labels.append(f"uid:{uid}")
            vectors.append(self.vector_of(row))
            own_rows.append(row)
            patients.append(self.patient_of_row(row))

    # ---- embedding queries ----------------------------------------------------------------
    def query_model(self, model: Any = None) -> Any:
        """The model that embeds queries: given, or the index's, through ``radzoo.load``."""
        if model is None or isinstance(model, (str, os.PathLike)):
            if self._model is None or model is not None:
                from radzoo.resolve import load

                ident = self.model_identity
                self._model = load(model or ident["model"], precision=ident.get("precision", "fp32"),
                                   random_weights=bool(ident.get("random_weights")) and model is None)
            return self._model
        return model

    def embed_images(self, images: Sequence[Any], model: Any = None) -> np.ndarray:
        from radzoo.extract.state import identity_of

        m = self.query_model(model)
        check_same(self.model_identity, identity_of(m, self.model_identity["output"]).to_dict(), "image query")
        return m.embed(list(images), output=self.model_identity["output"])

    def embed_texts(self, texts: Sequence[str], model: Any = None) -> np.ndarray:
        from radzoo.extract.state import identity_of
        from radzoo.resolve import JOINT_OUTPUT
        from radzoo.zoo.registry import get_spec, is_registered

        name = self.model_identity.get("model")
        if model is None and is_registered(str(name)) and "text" not in get_spec(str(name)).capabilities:
            require_text(self.model_identity, None)  # refuse before loading an image-only model
        m = self.query_model(model)
        require_text(self.model_identity, m)
        check_same(self.model_identity, identity_of(m, JOINT_OUTPUT).to_dict(), "text query")
        return m.embed_text(list(texts))


class SearchIndex(QueryBase):
    """An opened local index: keys table, vectors, FAISS store, tombstones."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from radzoo.search.faiss_backend import FaissStore
        from radzoo.search.index_build import load_vectors, read_keys, read_tombstones

        self.path = Path(path)
        self.manifest = folder_fmt.read_manifest(self.path)
        self.model_identity: dict[str, Any] = dict(self.manifest["model"] or {})
        try:
            self.keys = read_keys(self.path, self.manifest)
            vectors = load_vectors(self.path, self.manifest, keys=self.keys)
            ann = self.manifest.get("ann_file")
            tuned = self.manifest.get("ann", {})
            self.store = FaissStore.open(vectors, self.path / ann if ann else None, int(tuned.get("ef_search", 64)),
                                         int(tuned.get("nprobe", 16)), int(tuned.get("rerank", 10)),
                                         bool(tuned.get("links_only")))
            dead = read_tombstones(self.path, self.manifest)
        except (OSError, ValueError, RuntimeError, pa.ArrowException) as exc:  # incl. a low-memory index's gone shard
            raise folder_fmt.IndexFolderError(f"index {self.path} is damaged: {exc}") from exc
        if len(self.keys) != len(vectors):
            raise folder_fmt.IndexFolderError(f"index {self.path} is damaged: {len(self.keys)} keys, {len(vectors)} vectors")
        self.live = np.ones(len(self.keys), bool)
        self.live[dead[dead < len(self.live)]] = False
        self.keys = self.keys.combine_chunks()
        # filterable columns as dictionary codes (int32 per row; -1 = empty): a filter or the patient
        # exclusion is a comparison of codes, and no key becomes a Python object (1M rows: ~28 MB)
        self._codes = {c: _Codes(self.keys.column(c)) for c in FILTER_FIELDS}
        self._model: Any = None

    def __len__(self) -> int:
        return int(self.live.sum())

    @property
    def backend(self) -> str:
        return f"faiss-{self.store.kind}"

    def info(self) -> dict[str, Any]:
        from radzoo.search.index_build import index_info

        return index_info(self.path)

    def search_vectors(self, labels: Sequence[str], vectors: Sequence[np.ndarray], *, k: int,
                       filters: Mapping[str, list[str]], own_rows: Sequence[int | None] | None = None,
                       patients: Sequence[str | None] | None = None) -> list[QueryResult]:
        """Neighbours of already embedded query vectors. ``own_rows``: each query's own index row
        (left out); ``patients``: each query's patient key, whose rows are left out."""
        base = self.allowed(filters)
        results = []
        for i, (label, vec) in enumerate(zip(labels, vectors, strict=True)):
            allowed = base
            own = own_rows[i] if own_rows else None
            patient = patients[i] if patients else None
            if own is not None or patient:
                allowed = self.live.copy() if base is None else base.copy()
                if own is not None:
                    allowed[own] = False
                if patient:
                    allowed &= self._codes["patient_key"].not_equal(patient)
            scores, ids = self.store.search(normalise(np.asarray(vec, np.float32)[None]), k, allowed)
            results.append(QueryResult(label, self._hits(scores[0], ids[0])))
        return results

    def allowed(self, wanted: Mapping[str, list[str]]) -> np.ndarray | None:
        """Live rows matching every filter (study_date also takes FROM..TO, inclusive); None when
        every row is allowed (no filter, no tombstone), so the search runs unrestricted."""
        if not wanted:
            return None if self.live.all() else self.live
        mask = self.live.copy()
        for name, values in wanted.items():
            mask &= self._codes[name].matching(values, ranges=name == "study_date")
        return mask

    def column(self, name: str) -> pa.Array:
        """One key column of every row (live or not), as stored."""
        return self.keys.column(name)

    def row_of(self, uid: str) -> int:
        """The live row of a SOP Instance UID (or, for CT rows, a Series Instance UID)."""
        for name in ("sop_instance_uid", "series_instance_uid"):
            hit = pc.fill_null(pc.equal(self.keys.column(name), uid), False).to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(hit & self.live)
            if len(rows):
                return int(rows[0])
        raise InputError(f"uid {uid!r} is not in index {self.path} (give the SOP Instance UID as the extraction "
                         f"stored it{', pseudonymised' if self.pseudonymized else ''})")

    def vector_of(self, row: int) -> np.ndarray:
        return np.asarray(self.store.vectors[row], np.float32)  # low-memory: read from its Parquet shard

    def patient_of_row(self, row: int) -> str | None:
        return self.keys.column("patient_key")[row].as_py()

    def patient_of_sha256(self, digest: str) -> str | None:
        row = pc.index(self.keys.column("sha256"), digest).as_py()
        return self.patient_of_row(row) if row >= 0 else None

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[dict[str, Any]]:
        found = ids >= 0
        keys = self.keys.select(list(HIT_KEYS)).take(pa.array(ids[found])).to_pylist()
        return [{"rank": rank, "score": round(float(score), 6), **key}
                for rank, (score, key) in enumerate(zip(scores[found], keys, strict=True), 1)]


class _Codes:
    """A key column as dictionary codes: filters compare int32 codes, not strings."""

    def __init__(self, column: pa.ChunkedArray | pa.Array) -> None:
        encoded = (column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column).dictionary_encode()
        self.values = encoded.dictionary
        self.codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)

    def matching(self, values: Sequence[str], ranges: bool = False) -> np.ndarray:
        """Rows equal to any of ``values`` (``ranges``: ``FROM..TO`` compares as text, inclusive)."""
        hit = np.zeros(len(self.values), bool)
        for value in values:
            lo, sep, hi = value.partition("..")
            if sep and ranges:
                inside = pc.and_(pc.greater_equal(self.values, lo or ""), pc.less_equal(self.values, hi or "99999999"))
            else:
                inside = pc.equal(self.values, value)
            hit |= pc.fill_null(inside, False).to_numpy(zero_copy_only=False)
        codes = np.flatnonzero(hit)
        if len(codes) <= 4:  # a few values: compares (~0.2 ms per 1M rows; np.isin sorts: ~11 ms)
            mask = np.zeros(len(self.codes), bool)
            for code in codes:
                mask |= self.codes == code
            return mask
        return np.append(hit, False)[self.codes]  # a lookup table; code -1 (empty) reads the False at the end

    def not_equal(self, value: str) -> np.ndarray:
        code = pc.index(self.values, value).as_py()
        return np.ones(len(self.codes), bool) if code < 0 else self.codes != code

def _label(image: Any, i: int) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).name
    return f"#{i}"
