"""Metrics from scikit-learn and patient-level bootstrap confidence intervals.

Every number in a report is an :class:`Estimate`: the value on all rows plus a percentile
interval over bootstrap resamples. Resampling draws *patients* with replacement (all images of a
drawn patient come along), expressed as integer row weights passed to scikit-learn's
``sample_weight``, so every metric and every label sees the same resample.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

CI_LEVEL = 0.95
DEFAULT_BOOTSTRAP = 1000
THRESHOLD = 0.5


@dataclass(frozen=True)
class Estimate:
    """A metric's value and its bootstrap interval (NaN where undefined or not bootstrapped)."""

    value: float
    low: float
    high: float
    n_boot: int  # resamples in which the metric was defined

    def to_dict(self) -> dict[str, object]:
        return {"value": _num(self.value), "ci": [_num(self.low), _num(self.high)], "n_boot": self.n_boot}

    def text(self, digits: int = 3) -> str:
        if not math.isfinite(self.value):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _active(weight: np.ndarray | None, *arrays: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Drop rows of weight 0 (not drawn in this resample)."""
    if weight is None:
        return list(arrays), None
    keep = weight > 0
    return [a[keep] for a in arrays], weight[keep]


def binary_scores(y: np.ndarray, score: np.ndarray, *, weight: np.ndarray | None = None,
                  threshold: float = THRESHOLD) -> dict[str, float]:
    """AUROC, average precision, and F1 / Cohen's kappa of ``score >= threshold``
    (scikit-learn; NaN when a metric is undefined, e.g. one class only)."""
    (y, score), w = _active(weight, np.asarray(y), np.asarray(score, dtype=np.float64))
    out = {"auroc": math.nan, "average_precision": math.nan, "f1": math.nan, "kappa": math.nan}
    if y.size == 0:
        return out
    from radzoo.extras import require_extra

    require_extra("eval", "sklearn.metrics", feature="evaluation metrics")
    from sklearn.metrics import average_precision_score, cohen_kappa_score, f1_score, roc_auc_score

    pred = (score >= threshold).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if np.unique(y).size == 2:
            out["auroc"] = float(roc_auc_score(y, score, sample_weight=w))
            out["average_precision"] = float(average_precision_score(y, score, sample_weight=w))
        out["f1"] = float(f1_score(y, pred, sample_weight=w, zero_division=0))
        out["kappa"] = float(cohen_kappa_score(y, pred, sample_weight=w))
    return out


def multiclass_scores(y: np.ndarray, prob: np.ndarray, labels: list[str], *,
                      weight: np.ndarray | None = None) -> dict[str, float]:
    """Single-label metrics of the argmax (PRIOR's zero-shot protocol): accuracy, macro
    precision/recall/F1, Cohen's kappa; plus one-vs-rest AUROC / AP per label and their macro mean."""
    from radzoo.extras import require_extra

    require_extra("eval", "sklearn.metrics", feature="evaluation metrics")
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        cohen_kappa_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(y)
    (truth, prob), w = _active(weight, y.argmax(axis=1), np.asarray(prob, dtype=np.float64))
    onehot = np.eye(len(labels), dtype=np.int64)[truth]
    pred = prob.argmax(axis=1)
    classes = np.arange(len(labels))
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["accuracy"] = float(accuracy_score(truth, pred, sample_weight=w))
        for name, fn in (("macro_precision", precision_score), ("macro_recall", recall_score), ("macro_f1", f1_score)):
            out[name] = float(fn(truth, pred, labels=classes, average="macro", sample_weight=w, zero_division=0))
        out["kappa"] = float(cohen_kappa_score(truth, pred, labels=classes, sample_weight=w))
        aurocs = []
        for j, lab in enumerate(labels):
            ok = np.unique(onehot[:, j]).size == 2
            a = float(roc_auc_score(onehot[:, j], prob[:, j], sample_weight=w)) if ok else math.nan
            out[f"{lab}/auroc"] = a
            out[f"{lab}/average_precision"] = (
                float(average_precision_score(onehot[:, j], prob[:, j], sample_weight=w)) if ok else math.nan
            )
            aurocs.append(a)
    out["macro_auroc"] = _nanmean(aurocs)
    return out


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def parallel_jobs(n_tasks: int, n_jobs: int | None = None) -> int:
    """Worker processes for independent fits or resamples: ``n_jobs`` when given, else one per
    core on machines with more than 2 cores. On 2 cores a second process only competed: on the
    shared 2-core machine, two single-threaded 8000 x 2048 probe fits side by side took 5.5 s each
    against 1.6-2.9 s alone, and 10 probe fits took 42-47 s with 2 workers against 33-35 s with 1."""
    if n_jobs is not None:
        return max(1, min(int(n_jobs), n_tasks))
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else max(1, min(cores, n_tasks))


#: BLAS threads per probe fit: always one. lbfgs on standardised embeddings spends its time in
#: matrix-vector products, which a second BLAS thread barely speeds up, while on a busy machine the
#: threads wait for each other at every product. Measured on the shared 2-core machine, one
#: LogisticRegressionCV fit on 8000 x 2048 (5 Cs, 3 inner folds): 10.6 s with 2 OpenBLAS threads,
#: 1.6 s with 1; the old rule (all cores for matrices over 2M values) made the 14-label benchmark
#: probe about 5x slower. Parallelism comes from independent fits (``parallel_jobs``) instead.
FIT_BLAS_THREADS = 1


def _resample_chunk(statistic: Callable[[np.ndarray | None], Mapping[str, float]], inverse: np.ndarray,
                    draws: list[np.ndarray]) -> list[dict[str, float]]:
    from threadpoolctl import threadpool_limits

    # the inputs were validated by the point estimate; skipping re-validation saves ~20% per call
    from radzoo.extras import require_extra

    sklearn = require_extra("eval", "sklearn", feature="bootstrap confidence intervals")
    with threadpool_limits(limits=1), sklearn.config_context(skip_parameter_validation=True):
        return [dict(statistic(d[inverse].astype(np.float64))) for d in draws]


def bootstrap(
    statistic: Callable[[np.ndarray | None], Mapping[str, float]],
    groups: np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
    n_jobs: int | None = None,
) -> dict[str, Estimate]:
    """``statistic(weights)`` on all rows (``weights=None``) and on ``n_boot`` patient resamples.

    ``groups``: the patient of each row. A resample draws as many patients as there are, with
    replacement; a row's weight is how often its patient was drawn. Intervals are percentiles
    over the resamples in which a metric was defined. The resamples depend only on ``seed`` and
    the patients, so systems evaluated on the same rows are compared on the same resamples.
    """
    point = dict(statistic(None))
    _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.size else 0
    rng = np.random.default_rng(seed)
    counts = [np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups) for _ in range(n_boot)]
    jobs = parallel_jobs(max(1, n_boot // 50), n_jobs)
    if jobs > 1:
        from joblib import Parallel, delayed

        chunks = [counts[i::jobs] for i in range(jobs)]
        parts = Parallel(n_jobs=jobs)(delayed(_resample_chunk)(statistic, inverse, c) for c in chunks)
        values = [v for part in parts for v in part]
    else:
        values = _resample_chunk(statistic, inverse, counts)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for k, v in point.items():
        arr = np.asarray([d.get(k, math.nan) for d in values], dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size and math.isfinite(v):
            lo, hi = np.percentile(arr, [lo_q, hi_q])
            out[k] = Estimate(float(v), float(lo), float(hi), int(arr.size))
        else:
            out[k] = Estimate(float(v), math.nan, math.nan, int(arr.size))
    return out
