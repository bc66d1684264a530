"""The embedded backend: FAISS, exact below a size threshold, HNSW above it.

Why FAISS (``benchmarks/bench_search.py`` measured it against hnswlib and usearch): HNSW32 held
recall@10 >= 0.95 at sub-millisecond queries, and its ``IDSelector`` search parameters apply
filters, the query patient's exclusion and tombstones *inside* the graph walk, so ``k`` results
come back without over-fetching. Exact search is ``IndexFlatIP`` (vectors are unit length: inner
product is cosine). Selective filters skip the graph walk and score the allowed rows exactly
(``EXACT_FILTER_BUDGET``), which is both faster and exact there.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.search.segment_vectors import row_blocks

log = logging.getLogger(__name__)

#: below this many rows the index is exact (no graph); above it, HNSW with measured recall
EXACT_BELOW = 20_000
HNSW_M = 32
EF_CONSTRUCTION = 128  # 40 (FAISS default) gave recall@10 0.94 at 200k x 768 clustered; 128 gave 1.000
EF_SEARCH = 64
#: build-time recall target: efSearch doubles (up to EF_MAX) until the sample reaches it. The
#: sample is 200 leave-one-out queries, so a setting that just reaches 0.95 on it can fall short on
#: other queries: tuning asks for TUNE_MARGIN more
RECALL_TARGET = 0.95
TUNE_MARGIN = 0.01
EF_MAX = 1024
RECALL_QUERIES = 200
#: a grow re-measures recall once the index holds this much more than at the last measurement
RETUNE_GROWTH = 0.10
#: filtered HNSW search (bench_search.py at 200,000 x 768, 1 thread): efSearch 64 kept recall@10
#: >= 0.998 down to 10 % of rows allowed but fell to 0.93 / 0.53 / 0.31 at 5 / 2 / 1 %, while
#: scoring the allowed rows exactly (the graph's flat storage behind the same IDSelector, no
#: gather) cost ~0.28 ms per 1,000 allowed rows and is exact. So: at most this many allowed rows x
#: dim multiply-adds are scored exactly (50,000 rows at 768-d, ~14 ms); above it the graph walk runs
#: with efSearch / (allowed share), capped, so the same number of allowed rows is expected in reach
EXACT_FILTER_BUDGET = 50_000 * 768
EF_FILTER_MAX = 4096
#: low-memory mode: (nprobe, re-rank factor) tried in order until the sample's recall@10 reaches
#: RECALL_TARGET; k * factor IVF candidates are re-ranked exactly from the Parquet embeddings
#: (each re-ranked candidate may cost a Parquet row-group read: the fewest that hold the target win)
LOW_MEMORY_STEPS = ((16, 2), (16, 3), (32, 5), (32, 10), (64, 10), (64, 20), (128, 20), (256, 40), (1024, 40))


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


def exact_topk(queries: np.ndarray, vectors: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over any vector store in one streamed pass (a block in memory at a time)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for lo, block in row_blocks(vectors):
        s, i = exact_knn(queries, block, k)
        best_s, best_i = np.hstack([best_s, s]), np.hstack([best_i, i + lo])
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    return best_s, best_i


#: how the stored recall is measured (``radzoo index info`` shows it)
RECALL_NOTE = ("leave-one-out: queries are indexed rows, each query's own row is left out of both the "
               "exact top-10 (truth, inner product) and the index's")


def recall_without_self(truth: np.ndarray, found: np.ndarray, own: np.ndarray, k: int) -> float:
    """Mean recall@k of ``found`` against ``truth`` (both top-(k+1) row ids), each query's own row
    dropped from both first: an indexed row finds itself trivially, which would flatter the index."""
    hits = []
    for t, f, o in zip(truth, found, own, strict=True):
        want = [i for i in t if i != o and i >= 0][:k]
        got = {i for i in f if i != o and i >= 0}
        hits.append(len(got.intersection(want)) / max(len(want), 1))
    return float(np.mean(hits))


def recall_sample(n: int, n_queries: int = RECALL_QUERIES, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n_queries, n), replace=False))


def measure_recall(index: Any, vectors: np.ndarray, k: int = 10, n_queries: int = RECALL_QUERIES,
                   seed: int = 0) -> dict[str, Any]:
    """Leave-one-out recall@k of ``index`` against exact search on rows drawn from the index,
    raising efSearch until ``RECALL_TARGET`` (the efSearch reached is stored with the index)."""
    faiss = faiss_module()
    pick = recall_sample(len(vectors), n_queries, seed)
    queries = np.ascontiguousarray(vectors[pick], np.float32)
    _, truth = exact_topk(queries, vectors, k + 1)
    ef = EF_SEARCH
    while True:
        params = faiss.SearchParametersHNSW(efSearch=ef)
        _, found = index.search(queries, min(k + 1, len(vectors)), params=params)
        recall = recall_without_self(truth, found, pick, k)
        if recall >= RECALL_TARGET + TUNE_MARGIN or ef >= EF_MAX:
            return {"recall_at_10": recall, "ef_search": ef, "recall_queries": len(pick), "recall_rows": len(vectors),
                    "recall_note": RECALL_NOTE}
        ef *= 2


class FaissStore:
    """Vectors (row id = position) plus, above the threshold, an HNSW graph over them; or, in the
    low-memory mode, IVF codes (``CODES``) whose candidates are re-ranked exactly against ``vectors`` (then
    a ``ParquetVectors`` reading the extraction's shards on demand)."""

    def __init__(self, vectors: Any, ann: Any | None, ef_search: int = EF_SEARCH,
                 nprobe: int = 16, rerank: int = 10) -> None:
        self.vectors = vectors
        self.ann = ann
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.rerank = rerank
        self._flat: Any = None

    @property
    def kind(self) -> str:
        if self.ann is None:
            return "exact"
        return "ivf" if isinstance(self.ann, faiss_module().IndexIVF) else "hnsw"

    @classmethod
    def open(cls, vectors: Any, ann_path: Path | None, ef_search: int, nprobe: int = 16, rerank: int = 10,
             links_only: bool = False) -> FaissStore:
        ann = read_ann(ann_path, vectors, links_only) if ann_path is not None else None
        return cls(vectors, ann, ef_search, nprobe, rerank)

    def _exact(self) -> Any:
        if self._flat is None:
            faiss = faiss_module()
            self._flat = faiss.IndexFlatIP(self.vectors.shape[1])
            self._flat.add(np.ascontiguousarray(self.vectors, np.float32))
        return self._flat

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, row ids; -1 pads) per query among rows where ``allowed`` is True.

        The allowed rows go into the search as an ``IDSelectorBitmap`` (never over-fetch and
        drop); the share they make of the index sets how (see ``EXACT_FILTER_BUDGET``)."""
        faiss = faiss_module()
        queries = np.ascontiguousarray(queries, np.float32)
        n = len(self.vectors)
        share, bitmap, selector = 1.0, None, None
        if allowed is not None:
            count = int(np.count_nonzero(allowed))
            if count == 0:
                return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
            share = count / max(n, 1)
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        if self.kind == "ivf":
            nprobe = min(self.ann.nlist, int(np.ceil(self.nprobe / share)))
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
            _, cand = self.ann.search(queries, min(n, k * self.rerank), params=params)
            scores, ids = self._rerank(queries, cand, k)
        elif self.ann is not None and (selector is None or count * self.vectors.shape[1] > EXACT_FILTER_BUDGET):
            ef = max(self.ef_search, k)
            params = faiss.SearchParametersHNSW(efSearch=min(EF_FILTER_MAX, max(ef, int(np.ceil(ef / share)))),
                                                sel=selector)
            scores, ids = self.ann.search(queries, k, params=params)
        else:  # exact: every row, or the allowed rows of a selective filter (the graph's flat storage)
            flat = self._exact() if self.ann is None else self.ann.storage
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            scores, ids = flat.search(queries, k, params=params)
        del bitmap  # kept alive until the search returned (the selector points into it)
        return scores, ids

    def _rerank(self, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of each query's candidates (one read of all their vectors), best ``k`` kept."""
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        rows = np.unique(cand[cand >= 0])
        vecs = self.vectors.take(rows) if hasattr(self.vectors, "take") else np.asarray(self.vectors[rows])
        for i, (q, c) in enumerate(zip(queries, cand, strict=True)):
            c = c[c >= 0]
            s = vecs[np.searchsorted(rows, c)] @ q
            best = np.argsort(-s, kind="stable")[:k]
            scores[i, : len(best)], ids[i, : len(best)] = s[best], c[best]
        return scores, ids


def write_ann(index: Any, path: Path) -> None:
    """Write an ANN file; an HNSW graph without its float32 storage (the index's vector segments
    hold those), so a grow rewrites only the links (~1/10 of the file at 768-d), not every vector."""
    faiss = faiss_module()
    flags = faiss.IO_FLAG_SKIP_STORAGE if isinstance(index, faiss.IndexHNSW) else 0
    faiss.write_index(index, str(path), flags)


def read_ann(path: Path, vectors: Any, links_only: bool) -> Any:
    """Read an ANN file; a links-only HNSW graph gets its storage back from ``vectors``."""
    faiss = faiss_module()
    if not links_only:
        return faiss.read_index(str(path))
    index = faiss.read_index(str(path), faiss.IO_FLAG_SKIP_STORAGE)
    if index.ntotal > len(vectors):
        raise ValueError(f"{path} holds {index.ntotal} rows, the vector segments {len(vectors)}")
    flat = faiss.IndexFlatIP(index.d)
    for lo, block in row_blocks(vectors):
        if lo >= index.ntotal:
            break
        flat.add(block[: index.ntotal - lo])
    flat.this.disown()  # the graph owns (and frees) its storage
    index.storage, index.own_fields = flat, True
    return index


def build_ann(vectors: np.ndarray, previous: Any | None = None, threads: int | None = None,
              tuned: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """An HNSW graph over ``vectors`` (extending ``previous``, which holds a prefix of them), with
    its recall measured against exact search (or ``tuned``, the last measurement, kept while the
    index has grown by less than ``RETUNE_GROWTH`` since: see ``kept_tuning``)."""
    faiss = faiss_module()
    if threads:
        faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    index = previous if previous is not None else new_hnsw(vectors.shape[1])
    have = index.ntotal
    for _, block in row_blocks(vectors, have):
        index.add(block)
    built = time.perf_counter() - start
    info = {"kind": "hnsw", "M": HNSW_M, "ef_construction": index.hnsw.efConstruction,
            "added_rows": len(vectors) - have, "add_seconds": round(built, 3), "links_only": True}
    info.update(kept_tuning(tuned, len(vectors)) or measure_recall(index, vectors))
    log.info("HNSW over %d rows: %.1f s, recall@10 %.3f at efSearch %d", len(vectors), built,
             info["recall_at_10"], info["ef_search"])
    return index, info


def kept_tuning(tuned: dict[str, Any] | None, rows: int) -> dict[str, Any] | None:
    """The last recall measurement and search settings, while the index holds fewer than
    ``1 + RETUNE_GROWTH`` times the rows they were measured on (a small grow barely moves recall,
    and measuring it costs an exact pass over every row); None when it is time to measure again."""
    if not tuned or not tuned.get("recall_rows") or rows >= (1 + RETUNE_GROWTH) * int(tuned["recall_rows"]):
        return None
    keep = ("recall_at_10", "ef_search", "nprobe", "rerank", "recall_queries", "recall_rows", "recall_note")
    return {k: tuned[k] for k in keep if k in tuned}


#: low-memory codes (FAISS index_factory suffixes) and what bench_search.py measured at 1,000,000 x
#: 768 clustered vectors (recall@10 after exact re-rank of k x factor candidates; bytes per vector):
#: sq8 768 B, 1.000 at 2x; sq4 384 B, 0.973 at 5x and 0.995 at 10x; pq (4 dims per byte) 192 B,
#: 0.981 at 20x; PQ with 8 dims per byte (96 B) stopped at 0.941 even at 40x. Each re-ranked
#: candidate can cost a Parquet row-group read, so sq4 is the default: 8x smaller than float32,
#: ~5x re-rank.
CODES = ("sq4", "sq8", "pq")
DEFAULT_CODES = "sq4"


def check_codes(codes: str) -> str:
    if codes not in CODES:
        from radzoo.errors import InputError

        raise InputError(f"unknown low-memory codes {codes!r}; choose one of {', '.join(CODES)}")
    return codes


def ivf_lists(rows: int) -> int:
    """~4 sqrt(n) inverted lists, at least 39 training rows each, at most 1024."""
    return int(max(1, min(1024, rows // 39, 4 * np.sqrt(rows))))


def new_ivf(rows: int, dim: int, codes: str) -> Any:
    """An untrained IVF index with ``codes`` (``CODES``); PQ gets one byte per 4 dimensions
    (fewer code bits when there are too few rows to train 256 centroids)."""
    faiss = faiss_module()
    if check_codes(codes) == "pq":
        m = next(d for d in range(max(1, dim // 4), 0, -1) if dim % d == 0)
        nbits = int(max(1, min(8, np.floor(np.log2(max(rows, 2))))))
        suffix = f"PQ{m}x{nbits}"
    else:
        suffix = codes.upper()  # SQ4, SQ8
    return faiss.index_factory(dim, f"IVF{ivf_lists(rows)},{suffix}", faiss.METRIC_INNER_PRODUCT)


def build_ivf(vectors: Any, previous: Any | None = None, threads: int | None = None,
              tuned: dict[str, Any] | None = None, codes: str = DEFAULT_CODES,
              train_rows: int = 50_000) -> tuple[Any, dict[str, Any]]:
    """IVF codes over ``vectors`` (a ``ParquetVectors``; ``previous`` holds a prefix of them and
    keeps its training), with nprobe and the re-rank factor raised until the sample's recall@10
    (codes + exact re-rank, against exact search) reaches the target."""
    faiss = faiss_module()
    if threads:
        faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    n, dim = vectors.shape
    if previous is None:
        index = new_ivf(n, dim, codes)
        pick = np.sort(np.random.default_rng(0).choice(n, size=min(n, train_rows), replace=False))
        index.train(np.ascontiguousarray(vectors.take(pick)))
    else:
        index = previous
    have = index.ntotal
    for _, block in row_blocks(vectors, have):
        index.add(block)
    built = time.perf_counter() - start
    info = {"kind": "ivf", "codes": codes, "code_bytes": int(index.code_size), "nlist": index.nlist,
            "added_rows": n - have, "add_seconds": round(built, 3), "rerank_from": "extraction parquet"}
    info.update(kept_tuning(tuned, n) or _tune_low_memory(index, vectors))
    if info["recall_at_10"] < RECALL_TARGET:
        log.warning("low-memory index: recall@10 %.3f stays below %.2f even at nprobe %d, re-rank %dx with %s "
                    "codes; finer codes (sq8) or the default HNSW index hold it", info["recall_at_10"],
                    RECALL_TARGET, info["nprobe"], info["rerank"], codes)
    log.info("IVF-%s over %d rows: %.1f s, recall@10 %.3f at nprobe %d, re-rank %dx", codes, n, built,
             info["recall_at_10"], info["nprobe"], info["rerank"])
    return index, info


def _tune_low_memory(index: Any, vectors: Any, k: int = 10, n_queries: int = RECALL_QUERIES,
                     seed: int = 0) -> dict[str, Any]:
    n = len(vectors)
    pick = recall_sample(n, n_queries, seed)
    queries = vectors.take(pick)
    _, best_i = exact_topk(queries, vectors, k + 1)
    rows = _RowsOnce(vectors)  # each step re-ranks a superset of the last one's candidates: read each row once
    for nprobe, factor in LOW_MEMORY_STEPS:
        nprobe = min(nprobe, index.nlist)
        store = FaissStore(rows, index, nprobe=nprobe, rerank=factor)
        _, found = store.search(queries, min(k + 1, n), None)
        recall = recall_without_self(best_i, found, pick, k)
        if recall >= RECALL_TARGET + TUNE_MARGIN:
            break
    return {"recall_at_10": recall, "nprobe": nprobe, "rerank": factor, "recall_queries": len(pick),
            "recall_rows": n, "recall_note": RECALL_NOTE}


class _RowsOnce:
    """A ``ParquetVectors`` whose rows, once read, stay in memory (for the tuning's few queries)."""

    def __init__(self, vectors: Any) -> None:
        self.vectors = vectors
        self.shape = vectors.shape
        self._rows: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        missing = np.array(sorted({int(r) for r in rows} - self._rows.keys()), np.int64)
        if len(missing):
            self._rows.update(zip(missing.tolist(), self.vectors.take(missing), strict=True))
        return np.stack([self._rows[int(r)] for r in rows]) if len(rows) else np.zeros((0, self.shape[1]), np.float32)

