"""The embedded backend: FAISS, exact below a size threshold, HNSW above it.

Why FAISS (``benchmarks/bench_search.py`` measured it against hnswlib and usearch): HNSW32 held
recall@10 >= 0.95 at sub-millisecond queries, and its ``IDSelector`` search parameters apply
filters, the query patient's exclusion and tombstones *inside* the graph walk, so ``k`` results
come back without over-fetching. Exact search is ``IndexFlatIP`` (vectors are unit length: inner
product is cosine). Very selective filters (few allowed rows) skip the graph and score the allowed
rows exactly, which is both faster and exact.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: below this many rows the index is exact (no graph); above it, HNSW with measured recall
EXACT_BELOW = 20_000
HNSW_M = 32
EF_CONSTRUCTION = 128  # 40 (FAISS default) gave recall@10 0.94 at 200k x 768 clustered; 128 gave 1.000
EF_SEARCH = 64
#: build-time recall target: efSearch doubles (up to EF_MAX) until the sample reaches it
RECALL_TARGET = 0.95
EF_MAX = 1024
RECALL_QUERIES = 200
#: a filter allowing at most this many rows is scored exactly on those rows (no graph walk)
SUBSET_EXACT_MAX = 5_000


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - the search extra is missing
        from radzoo.errors import CapabilityError

        raise CapabilityError("similar-case search needs FAISS: pip install 'radzoo[search]'") from exc
    return faiss


def new_hnsw(dim: int, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION) -> Any:
    faiss = faiss_module()
    index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    return index


def exact_knn(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (blocked, no index kept)."""
    faiss = faiss_module()
    k = min(k, len(vectors))
    return faiss.knn(np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(vectors, np.float32), k,
                     metric=faiss.METRIC_INNER_PRODUCT)


def measure_recall(index: Any, vectors: np.ndarray, k: int = 10, n_queries: int = RECALL_QUERIES,
                   seed: int = 0) -> dict[str, Any]:
    """recall@k of ``index`` against exact search on rows drawn from the index, raising efSearch
    until ``RECALL_TARGET`` (the efSearch reached is stored with the index)."""
    faiss = faiss_module()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False)
    queries = np.ascontiguousarray(vectors[pick], np.float32)
    _, truth = exact_knn(queries, vectors, k)
    ef = EF_SEARCH
    while True:
        params = faiss.SearchParametersHNSW(efSearch=ef)
        _, found = index.search(queries, min(k, len(vectors)), params=params)
        recall = float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(truth, found, strict=True)]))
        if recall >= RECALL_TARGET or ef >= EF_MAX:
            return {"recall_at_10": recall, "ef_search": ef, "recall_queries": len(pick),
                    "recall_note": "queries drawn from the indexed rows; truth = exact inner product"}
        ef *= 2


class FaissStore:
    """Vectors (row id = position) plus, above the threshold, an HNSW graph over them."""

    def __init__(self, vectors: np.ndarray, ann: Any | None, ef_search: int = EF_SEARCH) -> None:
        self.vectors = vectors
        self.ann = ann
        self.ef_search = ef_search
        self._flat: Any = None

    @property
    def kind(self) -> str:
        return "hnsw" if self.ann is not None else "exact"

    @classmethod
    def open(cls, vectors: np.ndarray, ann_path: Path | None, ef_search: int) -> FaissStore:
        ann = faiss_module().read_index(str(ann_path)) if ann_path is not None else None
        return cls(vectors, ann, ef_search)

    def _exact(self) -> Any:
        if self._flat is None:
            faiss = faiss_module()
            self._flat = faiss.IndexFlatIP(self.vectors.shape[1])
            self._flat.add(np.ascontiguousarray(self.vectors, np.float32))
        return self._flat

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, row ids; -1 pads) per query among rows where ``allowed`` is True."""
        faiss = faiss_module()
        queries = np.ascontiguousarray(queries, np.float32)
        n = len(self.vectors)
        if allowed is not None:
            count = int(allowed.sum())
            if count <= SUBSET_EXACT_MAX:
                return self._subset(queries, k, np.flatnonzero(allowed))
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        else:
            bitmap, selector = None, None
        if self.ann is not None:
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k), sel=selector)
            scores, ids = self.ann.search(queries, k, params=params)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            scores, ids = self._exact().search(queries, k, params=params)
        del bitmap  # kept alive until the search returned (the selector points into it)
        return scores, ids

    def _subset(self, queries: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if len(rows):
            s, local = exact_knn(queries, np.asarray(self.vectors[rows]), k)
            found = local >= 0
            scores[:, : s.shape[1]] = np.where(found, s, -np.inf)
            ids[:, : s.shape[1]] = np.where(found, rows[np.clip(local, 0, None)], -1)
        return scores, ids


def build_ann(vectors: np.ndarray, previous: Any | None = None, threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """An HNSW graph over ``vectors`` (extending ``previous``, which holds a prefix of them), with
    its recall measured against exact search."""
    faiss = faiss_module()
    if threads:
        faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    index = previous if previous is not None else new_hnsw(vectors.shape[1])
    have = index.ntotal
    for lo in range(have, len(vectors), 100_000):
        index.add(np.ascontiguousarray(vectors[lo: lo + 100_000], np.float32))
    built = time.perf_counter() - start
    info = {"kind": "hnsw", "M": HNSW_M, "ef_construction": index.hnsw.efConstruction,
            "added_rows": len(vectors) - have, "add_seconds": round(built, 3)}
    info.update(measure_recall(index, vectors))
    log.info("HNSW over %d rows: %.1f s, recall@10 %.3f at efSearch %d", len(vectors), built,
             info["recall_at_10"], info["ef_search"])
    return index, info
