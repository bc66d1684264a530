"""``radzoo eval case-retrieval``: is a similar-case index any good? (the published CXR protocol)

Queries are the labelled rows of the index; each query's own patient is excluded at search time
(so queries are patient-disjoint from what they can retrieve), and the gallery is the labelled,
live rows. Relevance follows the labels:

* single-label queries (one positive label): P@1, P@5, P@10 and mAP@10 of neighbours carrying the
  query's label (AP@10 divides by min(10, relevant rows in the gallery));
* multi-label queries: NDCG@10 with graded relevance = the number of labels a neighbour shares with
  the query (scikit-learn's ``ndcg_score`` over the whole gallery).

The model's neighbours come from the index itself (its ANN when it has one); its ANN recall@10
against exact search on the same queries is reported apart, so compression is audited separately
from the encoder. Floors: raw pixels and random-init weights, searched exactly. Confidence
intervals: the patient bootstrap of ``radzoo.eval.measures``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from radzoo.errors import InputError

K = 10
PRECISION_KS = (1, 5, 10)
METRICS = [f"single/P@{k}" for k in PRECISION_KS] + ["single/mAP@10", "multi/NDCG@10"]


def join_index_rows(index: Any, data: Any, pseudonym_secret: bytes | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(data rows, index rows) of the labelled images found in the index, matched by file sha256
    (HMAC'd with the extraction's secret when the index is pseudonymised)."""
    from radzoo.extract.pseudonym import Pseudonymizer

    if index.pseudonymized and pseudonym_secret is None:
        raise InputError(f"index {index.path} is pseudonymised: give the extraction's pseudonymisation secret "
                         "(--pseudonymize-key-file) to match the label rows to it")
    hmac = Pseudonymizer(pseudonym_secret) if index.pseudonymized else None
    stored = index.column("sha256").to_pylist()
    where: dict[str, int] = {}
    for row in np.flatnonzero(index.live):
        where.setdefault(str(stored[row]), int(row))
    data_rows, index_rows = [], []
    for i, path in enumerate(data.paths):
        if path is None:
            continue
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
        key = hmac(digest) if hmac else digest
        if key in where:
            data_rows.append(i)
            index_rows.append(where[key])
    if len(data_rows) < 2:
        raise InputError(f"only {len(data_rows)} rows of {data.source} are in index {index.path} "
                         "(matched by file sha256); case retrieval needs at least 2")
    return np.asarray(data_rows), np.asarray(index_rows)


def neighbours(search: Callable[[np.ndarray, np.ndarray], np.ndarray], vectors: np.ndarray,
               groups: np.ndarray) -> np.ndarray:
    """(Q, K) gallery positions (-1 pads) of each query's neighbours, its own patient excluded."""
    out = np.full((len(vectors), K), -1, np.int64)
    for q in range(len(vectors)):
        allowed = groups != groups[q]
        found = search(vectors[q], allowed)
        out[q, : len(found)] = found[:K]
    return out


def exact_search(x: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Exact cosine search over the rows of ``x`` (the floors, and the ANN audit's truth)."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def search(query: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        q = query / max(float(np.linalg.norm(query)), 1e-12)
        scores = np.where(allowed, unit @ q, -np.inf)
        top = np.argsort(-scores, kind="stable")[:K]
        return top[np.isfinite(scores[top])]

    return search


def per_query(nbrs: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query metric values (NaN where a metric does not apply to that query)."""
    from sklearn.metrics import ndcg_score

    n = len(y)
    positives = y.sum(axis=1)
    out = {m: np.full(n, np.nan) for m in METRICS}
    for q in range(n):
        found = nbrs[q][nbrs[q] >= 0]
        if positives[q] == 1:
            label = int(np.argmax(y[q]))
            rel = y[found, label].astype(float)
            for k in PRECISION_KS:
                out[f"single/P@{k}"][q] = rel[:k].sum() / k
            relevant = int(y[:, label].sum() - 1)  # the gallery's other rows with the label
            hits = np.cumsum(rel)
            ap = float(np.sum(rel * hits / np.arange(1, len(rel) + 1)))
            out["single/mAP@10"][q] = ap / min(K, relevant) if relevant > 0 else np.nan
        elif positives[q] > 1:
            gains = (y @ y[q]).astype(float)
            gains[q] = 0.0
            scores = np.full(n, -1.0)
            scores[found] = np.linspace(1.0, 0.5, len(found))  # rank order of the retrieved rows
            scores[q] = -2.0
            if gains.max() > 0:
                out["multi/NDCG@10"][q] = float(ndcg_score(gains[None], scores[None], k=K))
    return out


def statistic(values: dict[str, np.ndarray]) -> Callable[[np.ndarray | None], dict[str, float]]:
    def stat(w: np.ndarray | None) -> dict[str, float]:
        out = {}
        for key, v in values.items():
            ok = np.isfinite(v)
            weights = (np.ones(len(v)) if w is None else w)[ok]
            out[key] = float(np.average(v[ok], weights=weights)) if weights.sum() > 0 else float("nan")
        return out

    return stat


def ann_recall(nbrs: np.ndarray, exact: np.ndarray) -> float:
    """recall@10 of the index's neighbours against exact search on the same queries and gallery."""
    scores = []
    for a, b in zip(nbrs, exact, strict=True):
        truth = set(b[b >= 0].tolist())
        if truth:
            scores.append(len(truth & set(a[a >= 0].tolist())) / len(truth))
    return float(np.mean(scores)) if scores else float("nan")
