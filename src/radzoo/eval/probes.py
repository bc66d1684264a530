"""Frozen-embedding probes: logistic regression and cosine kNN, per label, over a fold plan.

* ``linear``: ``StandardScaler`` fitted on the training part, then scikit-learn's
  ``LogisticRegressionCV`` choosing C from a small grid by grouped inner CV (AUROC).
* ``knn``: cosine ``KNeighborsClassifier`` (brute force), k from a grid by grouped inner CV;
  the score is the fraction of positive neighbours.

When a class has too few patients for the inner folds, the probe uses the grid's fixed default
(C = 1, k = 10, capped by the training size) and the report says so. Predictions are collected out
of fold: every evaluated row is scored by a probe that never saw its patient.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radzoo.errors import InputError
from radzoo.eval.folding import FoldPlan, fraction_rng, inner_splits, subsample
from radzoo.eval.label_table import LabelledData
from radzoo.eval.measures import (
    DEFAULT_BOOTSTRAP,
    FIT_BLAS_THREADS,
    Estimate,
    binary_scores,
    bootstrap,
    parallel_jobs,
)
from radzoo.extras import require_extra

KINDS = ("linear", "knn")
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
DEFAULT_K_GRID = (5, 10, 20, 50)
FALLBACK = {"linear": 1.0, "knn": 10}


@dataclass
class ProbeSettings:
    """How a probe is trained. ``fractions``: label fractions of the training part (1.0 = all);
    ``draws``: repeated random draws for each fraction below 1."""

    kind: str = "linear"
    inner_folds: int = 3
    c_grid: Sequence[float] = DEFAULT_C_GRID
    k_grid: Sequence[int] = DEFAULT_K_GRID
    fractions: Sequence[float] = (1.0,)
    draws: int = 3
    max_iter: int = 1000
    #: lbfgs tolerance, scikit-learn's default. Looser is faster (1e-3 halved a 8000 x 2048 fit) but on
    #: small, nearly separable probes (160 NIH images, 1024 pixels) it moved weak labels' AUROC by up to
    #: 0.07 through a different inner-CV choice of C: inside the CIs, yet not worth the speed.
    tol: float = 1e-4
    n_jobs: int | None = None  # None: one per core on machines with more than 2 cores (measures.parallel_jobs)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"probe kind must be one of {KINDS}, got {self.kind!r}")
        if self.inner_folds < 2:
            raise InputError(f"inner folds must be >= 2, got {self.inner_folds}")
        if not self.c_grid or any(c <= 0 for c in self.c_grid):
            raise InputError(f"the C grid needs positive values, got {list(self.c_grid)}")
        if not self.k_grid or any(int(k) < 1 for k in self.k_grid):
            raise InputError(f"the k grid needs values >= 1, got {list(self.k_grid)}")
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise InputError(f"label fractions must be in (0, 1], got {list(self.fractions)}")
        if self.draws < 1:
            raise InputError(f"draws must be >= 1, got {self.draws}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "inner_folds": self.inner_folds,
                               "fractions": list(self.fractions), "draws": self.draws}
        if self.kind == "linear":
            out.update(c_grid=list(self.c_grid), fallback_C=FALLBACK["linear"], max_iter=self.max_iter, tol=self.tol,
                       blas_threads_per_fit=FIT_BLAS_THREADS,
                       model="StandardScaler + LogisticRegressionCV(l2, lbfgs, scoring=roc_auc) on float64, "
                             f"{FIT_BLAS_THREADS} BLAS thread per fit")
        else:
            out.update(k_grid=[int(k) for k in self.k_grid], fallback_k=FALLBACK["knn"],
                       model="KNeighborsClassifier(metric=cosine, algorithm=brute)")
        return out

    def draws_for(self, fraction: float) -> int:
        return 1 if fraction >= 1.0 else self.draws


@dataclass
class ProbeRun:
    """Out-of-fold scores of one system: ``scores[(fraction, draw)]`` is (N, L), NaN where not tested."""

    scores: dict[tuple[float, int], np.ndarray]
    chosen: dict[tuple[float, int, str], list[float]]  # hyperparameter per fold
    fold_auroc: dict[tuple[float, int, str], list[float]]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    fallbacks: int = 0


def _fit_predict(kind: str, x_train: np.ndarray, y_train: np.ndarray, g_train: np.ndarray, x_test: np.ndarray,
                 settings: ProbeSettings, seed: int) -> tuple[np.ndarray, float, bool]:
    """(test scores, chosen hyperparameter, used the fallback)."""
    from threadpoolctl import threadpool_limits

    splits = inner_splits(y_train, g_train, settings.inner_folds, seed)
    with warnings.catch_warnings(), threadpool_limits(limits=FIT_BLAS_THREADS):
        warnings.simplefilter("ignore")  # convergence chatter on tiny folds; the report keeps the numbers
        if kind == "linear":
            require_extra("eval", "sklearn.linear_model", feature="linear probes")
            from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
            from sklearn.preprocessing import StandardScaler

            # float64 in: lbfgs keeps float64 coefficients, so float32 features were cast at every
            # matrix-vector product (a float64 LogisticRegressionCV fit on 8000 x 2048 was 15-20% faster)
            x_train, x_test = np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64)
            scaler = StandardScaler().fit(x_train)
            xtr, xte = scaler.transform(x_train), scaler.transform(x_test)
            if splits is None:
                model = LogisticRegression(C=FALLBACK["linear"], max_iter=settings.max_iter, tol=settings.tol)
                model.fit(xtr, y_train)
                return model.predict_proba(xte)[:, 1], FALLBACK["linear"], True
            cv = LogisticRegressionCV(Cs=list(settings.c_grid), cv=splits, scoring="roc_auc", l1_ratios=(0.0,),
                                      max_iter=settings.max_iter, tol=settings.tol, use_legacy_attributes=False)
            cv.fit(xtr, y_train)
            return cv.predict_proba(xte)[:, 1], float(np.ravel(cv.C_)[0]), False
        require_extra("eval", "sklearn.neighbors", feature="kNN probes")
        from sklearn.model_selection import GridSearchCV
        from sklearn.neighbors import KNeighborsClassifier

        def knn(k: int) -> KNeighborsClassifier:
            return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")

        if splits is None:
            k = min(FALLBACK["knn"], y_train.size)
            return knn(k).fit(x_train, y_train).predict_proba(x_test)[:, 1], float(k), True
        smallest = min(len(tr) for tr, _ in splits)
        grid = sorted({min(int(k), smallest) for k in settings.k_grid})
        search = GridSearchCV(knn(grid[0]), {"n_neighbors": grid}, cv=splits, scoring="roc_auc").fit(x_train, y_train)
        k = int(search.best_params_["n_neighbors"])
        return search.best_estimator_.predict_proba(x_test)[:, 1], float(k), False


def run_probe(x: np.ndarray, data: LabelledData, plan: FoldPlan, settings: ProbeSettings, seed: int = 0) -> ProbeRun:
    """Train and score one system's embeddings ``x`` (N, D) on every (fraction, draw, label, fold)."""
    from joblib import Parallel, delayed

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(data):
        raise InputError(f"embeddings {x.shape} do not match the {len(data)} labelled rows")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x).all(axis=1)).sum())
        raise InputError(f"{bad} embedding rows hold NaN or inf: the model output is broken for those images")
    tasks, keys, skipped = [], [], []
    for fraction in settings.fractions:
        for draw in range(settings.draws_for(fraction)):
            for j, label in enumerate(data.labels):
                for fold in plan.per_label[j]:
                    rng = fraction_rng(seed, j, fold.index, fraction, draw)
                    train = subsample(fold.train, data.y[:, j], data.groups, fraction, rng)
                    y_train = data.y[train, j].astype(np.int64)
                    if y_train.min() == y_train.max():
                        skipped.append({"label": label, "fold": fold.index, "fraction": fraction, "draw": draw,
                                        "reason": f"the {fraction:g} training sample has one class only: fold skipped"})
                        continue
                    keys.append((fraction, draw, j, fold))
                    tasks.append((train, y_train, fold, seed + fold.index))
    jobs = parallel_jobs(len(tasks), settings.n_jobs)
    calls = [delayed(_fit_predict)(settings.kind, x[train], y_train, data.groups[train], x[fold.test], settings,
                                   fold_seed) for train, y_train, fold, fold_seed in tasks]
    results = Parallel(n_jobs=jobs)(calls) if calls else []
    run = ProbeRun(scores={}, chosen={}, fold_auroc={}, skipped=skipped)
    for fraction in settings.fractions:
        for draw in range(settings.draws_for(fraction)):
            run.scores[(fraction, draw)] = np.full(data.y.shape, np.nan)
    for (fraction, draw, j, fold), (score, chosen, fell_back) in zip(keys, results, strict=True):
        run.scores[(fraction, draw)][fold.test, j] = score
        label = data.labels[j]
        run.chosen.setdefault((fraction, draw, label), []).append(chosen)
        run.fold_auroc.setdefault((fraction, draw, label), []).append(
            binary_scores(data.y[fold.test, j], score)["auroc"])
        run.fallbacks += int(fell_back)
    return run


def probe_estimates(run: ProbeRun, data: LabelledData, fraction: float, *, n_boot: int = DEFAULT_BOOTSTRAP,
                    seed: int = 0, n_jobs: int | None = None) -> tuple[dict[str, dict[str, Estimate]], dict[str, Estimate], np.ndarray]:
    """Per-label metrics (averaged over the fraction's draws) and macro AUROC, with patient
    bootstrap CIs. Also returns the draw-0 out-of-fold scores (N, L) for ROC curves."""
    draws = sorted(d for (f, d) in run.scores if f == fraction)
    stack = np.stack([run.scores[(fraction, d)] for d in draws])  # (D, N, L)
    rows = [np.flatnonzero(np.isfinite(stack[:, :, j]).all(axis=0)) for j in range(len(data.labels))]

    def statistic(weight: np.ndarray | None) -> dict[str, float]:
        out: dict[str, float] = {}
        aurocs = []
        for j, label in enumerate(data.labels):
            r = rows[j]
            if r.size == 0:
                continue
            w = None if weight is None else weight[r]
            per_draw = [binary_scores(data.y[r, j], stack[d, r, j], weight=w) for d in range(len(draws))]
            for metric in per_draw[0]:
                vals = [p[metric] for p in per_draw]
                out[f"{label}/{metric}"] = float(np.mean(vals)) if all(math.isfinite(v) for v in vals) else math.nan
            aurocs.append(out[f"{label}/auroc"])
        finite = [a for a in aurocs if math.isfinite(a)]
        out["macro_auroc"] = float(np.mean(finite)) if finite and len(finite) == len(aurocs) else math.nan
        return out

    est = bootstrap(statistic, data.groups, n_boot=n_boot, seed=seed, n_jobs=n_jobs)
    per_label: dict[str, dict[str, Estimate]] = {}
    for key, value in est.items():
        if "/" in key:
            label, metric = key.split("/", 1)
            per_label.setdefault(label, {})[metric] = value
    return per_label, {"macro_auroc": est["macro_auroc"]} if "macro_auroc" in est else {}, stack[0]
