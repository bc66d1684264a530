"""Training and recalibrating task heads with the evaluation machinery (``radzoo head train``).

Per label, on the same patient-grouped stratified folds and inner CV as ``radzoo eval
linear-probe`` (``plan_folds``, ``run_probe``, so the head's CV AUROC is the probe's):

1. **raw out-of-fold scores**: the probe's logistic regression, C chosen by grouped inner CV
   in each outer fold (``run_probe``);
2. **calibration**: scikit-learn's ``CalibratedClassifierCV`` (``ensemble=False``) with the
   fold's C, its map fitted on grouped inner folds of the fold's training part, scores the outer
   test part; sigmoid and isotonic both, the one with the lower out-of-fold Brier score is kept;
3. **operating points** (sens90, sens95, spec90, youden) chosen on those out-of-fold calibrated
   probabilities, each with its CV sensitivity, specificity, PPV and NPV at the training
   prevalence (patient bootstrap CIs);
4. **the final head**: ``CalibratedClassifierCV`` on all rows with C from inner CV on all rows,
   its map fitted on the outer folds' out-of-fold decision values. Stored as data.

Recalibration (``recalibrate_head``) keeps the fitted weights and refits only the map and the
operating points on a new site's labelled rows.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError
from radzoo.eval.folding import FoldPlan, inner_splits, plan_folds
from radzoo.eval.head_mlp import DEFAULT_HIDDEN
from radzoo.eval.label_table import LabelledData
from radzoo.eval.measures import CI_LEVEL, DEFAULT_BOOTSTRAP, FIT_BLAS_THREADS, Estimate, bootstrap
from radzoo.eval.probes import FALLBACK, ProbeSettings, run_probe
from radzoo.eval.report_files import _plain
from radzoo.heads.head_file import CALIBRATIONS, OPERATING_POINTS, write_head

log = logging.getLogger(__name__)

ECE_BINS = 10
CALIBRATION_CHOICES = ("auto", *CALIBRATIONS)


@dataclass
class HeadResult:
    """What ``train_head`` / ``recalibrate_head`` wrote: the folder and its head.json document."""

    directory: Path
    document: dict[str, Any]

    def summary(self) -> str:
        from radzoo.heads.head_card import operating_point_table

        return operating_point_table(self.document)


# ------------------------------------------------------------------------------- checks


def check_trainable(data: LabelledData, folds: int) -> None:
    """Refuse labels a head cannot be trained or validated on (one class, too few positives)."""
    for j, label in enumerate(data.labels):
        pos, n = int(data.y[:, j].sum()), len(data)
        if pos == 0 or pos == n:
            raise InputError(f"label {label!r} in {data.source} has one class only ({pos} positives of {n} rows): "
                             "a head needs positives and negatives")
        groups = np.asarray(data.groups, dtype=str)
        pos_groups = len(set(groups[data.y[:, j] == 1].tolist()))
        neg_groups = len(set(groups[data.y[:, j] == 0].tolist()))
        if min(pos_groups, neg_groups) < folds:
            which = "positive" if pos_groups < neg_groups else "negative"
            raise InputError(f"label {label!r} in {data.source} has {min(pos_groups, neg_groups)} {which} patients, "
                             f"fewer than the {folds} folds: label more, or lower --folds")


# ------------------------------------------------------------------------------ measures


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the row-weighted mean |observed rate - mean probability| over equal-width bins."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / max(1, y.size))


def _confusion(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None) -> dict[str, float]:
    from sklearn.metrics import confusion_matrix

    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1], sample_weight=w).ravel()

    def ratio(a: float, b: float) -> float:
        return float(a / (a + b)) if a + b > 0 else math.nan

    return {"sensitivity": ratio(tp, fn), "specificity": ratio(tn, fp), "ppv": ratio(tp, fp), "npv": ratio(tn, fn)}


def choose_thresholds(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The operating points' probability thresholds, from scikit-learn's ROC curve of (y, p)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    keep = np.isfinite(thr) & (thr <= 1.0)
    fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    out = {}
    for name, target in (("sens90", 0.90), ("sens95", 0.95)):
        ok = tpr >= target - 1e-12
        out[name] = float(thr[ok].max()) if ok.any() else float(thr.min())
    ok = (1.0 - fpr) >= 0.90 - 1e-12
    out["spec90"] = float(thr[ok].min()) if ok.any() else float(thr.max())
    out["youden"] = float(thr[int(np.argmax(tpr - fpr))])
    return out


def operating_point_estimates(y: np.ndarray, p: np.ndarray, groups: np.ndarray, cuts: dict[str, float], *,
                              n_boot: int, seed: int) -> dict[str, dict[str, Any]]:
    """Sensitivity, specificity, PPV, NPV of each threshold on (y, p), with patient bootstrap CIs."""
    y = np.asarray(y, dtype=np.int64)

    def statistic(weight: np.ndarray | None) -> dict[str, float]:
        out = {}
        for name, cut in cuts.items():
            for k, v in _confusion(y, (p >= cut).astype(np.int64), weight).items():
                out[f"{name}/{k}"] = v
        return out

    est = bootstrap(statistic, groups, n_boot=n_boot, seed=seed)
    points: dict[str, dict[str, Any]] = {}
    for name, cut in cuts.items():
        points[name] = {"threshold": cut, "target": OPERATING_POINTS[name],
                        **{k: est[f"{name}/{k}"].to_dict() for k in ("sensitivity", "specificity", "ppv", "npv")}}
    return points


def _reliability(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    true, pred = calibration_curve(y, p, n_bins=ECE_BINS, strategy="uniform")
    return {"ece": expected_calibration_error(y, p), "brier": float(brier_score_loss(y, p)),
            "curve": {"mean_predicted": pred.tolist(), "observed": true.tolist()}}


# ------------------------------------------------------------------------------ fitting


def _pipeline(c: float, settings: ProbeSettings, kind: str = "linear", seed: int = 0) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "mlp":
        from radzoo.eval.head_mlp import TorchMLPClassifier

        return make_pipeline(StandardScaler(), TorchMLPClassifier(seed=seed))
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=settings.max_iter, tol=settings.tol))


def _calibrated(c: float, method: str, cv: Any, settings: ProbeSettings, kind: str = "linear", seed: int = 0) -> Any:
    from sklearn.calibration import CalibratedClassifierCV

    return CalibratedClassifierCV(_pipeline(c, settings, kind, seed), method=method, cv=cv, ensemble=False)


def _splits_or_fallback(y: np.ndarray, groups: np.ndarray, n: int, seed: int) -> tuple[Any, bool]:
    """Grouped inner folds, or (too few patients of a class) 2 stratified row folds."""
    splits = inner_splits(y, groups, n, seed)
    if splits is not None:
        return splits, False
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(2, shuffle=True, random_state=seed).split(np.zeros((y.size, 1)), y)), True


def _final_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: ProbeSettings, seed: int) -> float:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.preprocessing import StandardScaler

    splits = inner_splits(y, groups, settings.inner_folds, seed)
    if splits is None:
        return float(FALLBACK["linear"])
    cv = LogisticRegressionCV(Cs=list(settings.c_grid), cv=splits, scoring="roc_auc", l1_ratios=(0.0,),
                              max_iter=settings.max_iter, tol=settings.tol, use_legacy_attributes=False)
    cv.fit(StandardScaler().fit_transform(x), y)
    return float(np.ravel(cv.C_)[0])


def _label_fit(x: np.ndarray, data: LabelledData, j: int, plan: FoldPlan, raw_oof: np.ndarray, chosen: list[float],
               settings: ProbeSettings, calibration: str, seed: int, kind: str = "linear") -> dict[str, Any]:
    """Out-of-fold calibrated probabilities per method, the chosen method, and the final fit."""
    from sklearn.metrics import brier_score_loss

    y = data.y[:, j].astype(np.int64)
    folds = plan.per_label[j]
    methods = CALIBRATIONS if calibration == "auto" else (calibration,)
    oof = {m: np.full(len(data), np.nan) for m in methods}
    fallbacks = 0
    for fold, c in zip(folds, chosen, strict=True):
        splits, fell_back = _splits_or_fallback(y[fold.train], data.groups[fold.train], settings.inner_folds,
                                                seed + fold.index)
        fallbacks += int(fell_back)
        for m in methods:
            model = _calibrated(c, m, splits, settings, kind, seed).fit(x[fold.train], y[fold.train])
            oof[m][fold.test] = model.predict_proba(x[fold.test])[:, 1]
    rows = np.flatnonzero(np.isfinite(raw_oof))
    brier = {m: float(brier_score_loss(y[rows], oof[m][rows])) for m in methods}
    method = min(brier, key=lambda m: brier[m])
    c_final = _final_c(x, y, data.groups, settings, seed) if kind == "linear" else float("nan")
    outer = [(f.train, f.test) for f in folds]
    final = _calibrated(c_final, method, outer, settings, kind, seed).fit(x, y)
    return {"rows": rows, "oof_calibrated": oof[method], "brier": brier, "method": method, "C": c_final,
            "final": final, "inner_fallbacks": fallbacks}


def _mlp_versus_linear(x: np.ndarray, data: LabelledData, j: int, plan: FoldPlan, linear_oof: np.ndarray,
                       settings: ProbeSettings, n_boot: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The MLP's out-of-fold scores on the probe's folds, and which kind CV keeps (paired bootstrap)."""
    from radzoo.eval.measures import binary_scores

    y = data.y[:, j].astype(np.int64)
    oof = np.full(len(data), np.nan)
    for fold in plan.per_label[j]:
        model = _pipeline(1.0, settings, "mlp", seed + fold.index).fit(x[fold.train], y[fold.train])
        z = model.decision_function(x[fold.test])
        oof[fold.test] = 0.5 * (1.0 + np.tanh(0.5 * z))
    rows = np.flatnonzero(np.isfinite(oof) & np.isfinite(linear_oof))

    def statistic(w: np.ndarray | None) -> dict[str, float]:
        ww = None if w is None else w[rows]
        mlp = binary_scores(y[rows], oof[rows], weight=ww)["auroc"]
        lin = binary_scores(y[rows], linear_oof[rows], weight=ww)["auroc"]
        return {"mlp": mlp, "linear": lin, "mlp_minus_linear": mlp - lin}

    est = bootstrap(statistic, data.groups, n_boot=n_boot, seed=seed)
    kept = "mlp" if est["mlp_minus_linear"].value > 0 else "linear"
    return oof, {"linear_oof_auroc": est["linear"].to_dict(), "mlp_oof_auroc": est["mlp"].to_dict(),
                 "mlp_minus_linear": est["mlp_minus_linear"].to_dict(), "kept": kept,
                 "rule": "the MLP is kept when its out-of-fold AUROC is higher than the linear head's "
                         "(same folds; paired patient bootstrap CI of the difference shown)"}


def stored_map(calibrator: Any, method: str) -> dict[str, Any]:
    """A fitted scikit-learn calibrator as data (sigmoid a, b; isotonic X/Y thresholds)."""
    if method == "sigmoid":
        return {"method": "sigmoid", "a": float(calibrator.a_), "b": float(calibrator.b_)}
    return {"method": "isotonic", "x": [float(v) for v in calibrator.X_thresholds_],
            "y": [float(v) for v in calibrator.y_thresholds_]}


def _final_tensors(final: Any, j: int) -> dict[str, np.ndarray]:
    pair = final.calibrated_classifiers_[0]
    scaler, lr = pair.estimator[0], pair.estimator[-1]
    if hasattr(lr, "layers_"):  # the MLP
        out = {f"head{j}.mean": scaler.mean_, f"head{j}.scale": scaler.scale_}
        for i, (w, b) in enumerate(lr.layers_):
            out[f"head{j}.mlp.{i}.weight"], out[f"head{j}.mlp.{i}.bias"] = w, b
        return out
    return {f"head{j}.mean": scaler.mean_, f"head{j}.scale": scaler.scale_, f"head{j}.coef": lr.coef_[0],
            f"head{j}.intercept": np.asarray(lr.intercept_, dtype=np.float64).reshape(1)}


# ------------------------------------------------------------------------------ training


def base_identity(zmodel: Any, output: str | None) -> dict[str, Any]:
    """The base model as a head records it: extraction identity + full weights sha256, seed, folder."""
    from radzoo.zoo.model_identity import identity_of

    ident = identity_of(zmodel, output).to_dict()
    provenance = zmodel.config.get("provenance", {})
    directory = getattr(zmodel, "directory", None)
    return {**ident, "weights_sha256": zmodel.config.get("weights", {}).get("sha256"),
            "seed": provenance.get("seed") if zmodel.random_init else None,
            "source": str(Path(directory).resolve()) if directory else None}


def train_head(
    model: Any,
    data: LabelledData,
    out: str | os.PathLike[str],
    *,
    settings: ProbeSettings | None = None,
    calibration: str = "auto",
    features: str | os.PathLike[str] | None = None,
    join: str = "path",
    drop_missing: bool = False,
    pseudonym_secret: bytes | str | None = None,
    output: str | None = None,
    folds: int = 5,
    baselines: Sequence[str] = (),
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    cache: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    quiet: bool = True,
    name: str | None = None,
    overwrite: bool = False,
    kind: str = "linear",
) -> HeadResult:
    """Train, calibrate and write a head for every label of ``data`` on ``model``'s embeddings.

    ``model``: a loaded ``radzoo.Model`` (its identity is recorded; a random-weight build's
    seed too, so ``radzoo.load(out)`` reopens exactly it). ``features``: a finished ``radzoo
    extract`` folder to reuse. ``baselines``: floors for the card (``raw-pixels``,
    ``random-init``), via ``radzoo.eval.linear_probe``. ``calibration``: auto, sigmoid, isotonic.
    ``kind="mlp"``: a small MLP (``head_mlp``) is cross-validated on the same folds too and kept for
    a label only when its out-of-fold AUROC beats the linear head's; otherwise the label stays linear.
    """
    from radzoo.eval.tasks import _cache_dir, _model_table, probe
    from radzoo.extras import require_extra

    require_extra("eval", "sklearn.calibration", feature="training a task head")
    if not hasattr(model, "spec"):
        raise InputError("train_head needs a loaded model (radzoo.load / radzoo.build): its identity is recorded")
    if calibration not in CALIBRATION_CHOICES:
        raise InputError(f"calibration must be one of {CALIBRATION_CHOICES}, got {calibration!r}")
    if kind not in ("linear", "mlp"):
        raise InputError(f"head kind must be linear or mlp, got {kind!r}")
    settings = settings or ProbeSettings(kind="linear")
    if settings.kind != "linear" or list(settings.fractions) != [1.0]:
        raise InputError("a head is a linear probe fitted on all its labelled rows (kind linear, fraction 1.0)")
    if not data.labels:
        raise InputError(f"no labels chosen in {data.source}; pass labels (--labels)")
    if data.split is not None:
        raise InputError("a head is cross-validated on patient-grouped folds and fitted on all rows: drop the split column")
    out = Path(out)
    check_trainable(data, folds)
    notes: list[str] = []
    cache_dir = _cache_dir(cache, None, notes)
    table, _ = _model_table(model, data, features=features, join=join, drop_missing=drop_missing,
                            pseudonym_secret=pseudonym_secret, output=output, cache=cache_dir,
                            batch_size=batch_size, workers=workers, quiet=quiet)
    base = base_identity(model, table.identity.get("output"))
    for f in ("model", "revision", "preprocess", "output"):
        if table.identity.get(f) != base[f]:
            raise InputError(f"the embeddings ({table.source}) have {f} {table.identity.get(f)!r}, the model "
                             f"{base[f]!r}: extract them with this model")
    used = data.subset(table.rows)
    check_trainable(used, folds)
    x = np.asarray(table.x, dtype=np.float64)
    digest = used.digest(table.sha256)
    plan = plan_folds(used, folds, seed)
    if plan.skipped:
        raise InputError(f"some folds have one class only ({plan.skipped[0]['label']}: {plan.skipped[0]['reason']}); "
                         "lower --folds or label more")
    from threadpoolctl import threadpool_limits

    run = run_probe(x.astype(np.float32), used, plan, settings, seed)
    report = probe(model, used, settings=settings, features=features, join=join, drop_missing=drop_missing,
                   pseudonym_secret=pseudonym_secret, folds=folds, baselines=baselines, n_boot=n_boot, seed=seed,
                   output=base["output"], cache=cache_dir, batch_size=batch_size, workers=workers, quiet=quiet)
    heads: dict[str, Any] = {}
    tensors: dict[str, np.ndarray] = {}
    figures: dict[str, bytes] = {}
    with warnings.catch_warnings(), threadpool_limits(limits=FIT_BLAS_THREADS):
        warnings.simplefilter("ignore")
        for j, label in enumerate(used.labels):
            raw = run.scores[(1.0, 0)][:, j]
            kind_j, choice = "linear", None
            if kind == "mlp":
                mlp_raw, choice = _mlp_versus_linear(x, used, j, plan, raw, settings, n_boot, seed)
                if choice["kept"] == "mlp":
                    kind_j, raw = "mlp", mlp_raw
            fit = _label_fit(x, used, j, plan, raw, run.chosen[(1.0, 0, label)], settings, calibration, seed, kind_j)
            rows, y = fit["rows"], used.y[:, j].astype(np.int64)
            p_cal = fit["oof_calibrated"]
            cuts = choose_thresholds(y[rows], p_cal[rows])
            pair = fit["final"].calibrated_classifiers_[0]
            tensors.update(_final_tensors(fit["final"], j))
            before, after = _reliability(y[rows], raw[rows]), _reliability(y[rows], p_cal[rows])
            heads[label] = {
                "kind": kind_j, **({"hidden": [DEFAULT_HIDDEN]} if kind_j == "mlp" else {}),
                **({"kind_choice": choice} if choice else {}), "C": fit["C"], "column": used.specs[j].column, "positive": used.specs[j].positive,
                "calibration": stored_map(pair.calibrators[0], fit["method"]),
                "calibration_choice": {"method": fit["method"], "oof_brier": fit["brier"],
                                       "rule": "lower out-of-fold Brier score" if calibration == "auto" else "given"},
                "prevalence": float(y.mean()), "n_pos": int(y.sum()), "n_neg": int(y.size - y.sum()),
                "reliability": {"before": before, "after": after},
                "operating_points": operating_point_estimates(y[rows], p_cal[rows], used.groups[rows], cuts,
                                                              n_boot=n_boot, seed=seed),
                "cv_auroc": report.result("model").metrics[f"{label}/auroc"].to_dict(),
            }
            if fit["inner_fallbacks"]:
                notes.append(f"{label}: {fit['inner_fallbacks']} fold(s) calibrated on 2 ungrouped stratified folds "
                             "(too few patients of a class for grouped inner folds)")
            figures[label] = _reliability_png(label, y[rows], raw[rows], p_cal[rows], fit["method"])
    document = {
        "name": name or out.name,
        "kind": "mlp" if any(h["kind"] == "mlp" for h in heads.values()) else "linear",
        "labels": list(used.labels),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base": base,
        "data": {"labels_file": str(data.source), "n_rows": len(used), "n_groups": len(set(used.groups.tolist())),
                 "group_column": used.group_column, "digest": digest,
                 "embeddings": table.source, "dropped": len(table.dropped)},
        "protocol": {"folds": plan.to_dict(), "probe": settings.to_dict(), "bootstrap": n_boot, "ci_level": CI_LEVEL,
                     "seed": seed, "calibration": calibration,
                     "final": "CalibratedClassifierCV(StandardScaler + LogisticRegression(C from grouped inner CV on "
                              "all rows), ensemble=False, cv=the outer folds): fitted on all rows, map fitted on "
                              "out-of-fold decision values",
                     "operating_points": "chosen on out-of-fold calibrated probabilities (same rows they are "
                                         "reported on: mildly optimistic)"},
        "heads": heads,
        "cv": {"markdown": report.markdown(), "results": [r.to_dict() for r in report.results],
               "systems": report.systems},
        "notes": notes + list(report.notes),
        "history": [],
    }
    return _write(out, document, tensors, figures, overwrite=overwrite)


def _write(out: Path, document: dict[str, Any], tensors: dict[str, np.ndarray], figures: dict[str, bytes],
           *, overwrite: bool) -> HeadResult:
    from radzoo.heads.head_card import render_head_card
    from radzoo.heads.head_file import document_digest

    document = _plain(document)
    slugs = _figure_names(list(figures))
    document["files"] = {"card": "README.md", "reliability": {lab: slugs[lab] for lab in figures}}
    files: dict[str, bytes | str] = {slugs[lab]: png for lab, png in figures.items()}
    document["digest"] = document_digest(document)  # provisional, for the card's mention; write_head redoes it
    files["README.md"] = render_head_card(document)
    directory = write_head(out, document, tensors, files, overwrite=overwrite)
    from radzoo.heads.head_file import read_head

    return HeadResult(directory, read_head(directory).document)


def _figure_names(labels: list[str]) -> dict[str, str]:
    from radzoo.eval.report_files import _unique_slug

    used: set[str] = set()
    return {lab: f"reliability/{_unique_slug(lab, used)}.png" for lab in labels}


def _reliability_png(label: str, y: np.ndarray, raw: np.ndarray, cal: np.ndarray, method: str,
                     before: str = "before (logistic regression)") -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.6), dpi=110)
    for p, text in ((raw, before), (cal, f"after ({method})")):
        true, pred = calibration_curve(y, p, n_bins=ECE_BINS, strategy="uniform")
        ax.plot(pred, true, marker="o", lw=1.4, label=f"{text}, ECE {expected_calibration_error(y, p):.3f}")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    ax.set_xlabel("mean predicted probability (out of fold)")
    ax.set_ylabel("observed fraction positive")
    ax.set_title(f"{label}: reliability", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------------- recalibration


def _passthrough() -> Any:
    """A fitted scikit-learn classifier whose decision function is its one input column: the
    stored head's decision values, so ``CalibratedClassifierCV(FrozenEstimator(...))`` fits only
    the map (sigmoid or isotonic) exactly as it does at training time."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class StoredDecision(ClassifierMixin, BaseEstimator):
        def fit(self, x: Any, y: Any) -> Any:
            return self

        def decision_function(self, x: Any) -> np.ndarray:
            return np.asarray(x, dtype=np.float64)[:, 0]

        def predict(self, x: Any) -> np.ndarray:
            return (self.decision_function(x) > 0).astype(np.int64)

        def __sklearn_is_fitted__(self) -> bool:
            return True

    est = StoredDecision()
    est.classes_ = np.array([0, 1])
    return est


def fit_map(z: np.ndarray, y: np.ndarray, method: str) -> dict[str, Any]:
    """A calibration map (as data) fitted by scikit-learn on decision values ``z`` and labels ``y``."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    # a frozen estimator is not refitted: the 2 folds only route its (unchanged) decision values
    model = CalibratedClassifierCV(FrozenEstimator(_passthrough()), method=method, cv=2)
    model.fit(np.asarray(z, dtype=np.float64).reshape(-1, 1), np.asarray(y, dtype=np.int64))
    return stored_map(model.calibrated_classifiers_[0].calibrators[0], method)


def _site_specs(head: Any, labels: Sequence[str] | None) -> list[str]:
    """Label specs of the head's labels as trained (column, positive value, name)."""
    chosen = list(labels) if labels else head.labels
    unknown = [lab for lab in chosen if lab not in head.labels]
    if unknown:
        raise InputError(f"head {head.name!r} has labels {head.labels}; no {unknown}")
    out = []
    for lab in chosen:
        sec = head.label_section(lab)
        out.append(f"{sec['column']}:{sec['positive']}={lab}" if sec.get("positive") else f"{sec['column']}={lab}")
    return out


def recalibrate_head(
    head_dir: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    model: Any = None,
    calibration: str = "auto",
    folds: int = 5,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    features: str | os.PathLike[str] | None = None,
    join: str = "path",
    drop_missing: bool = False,
    pseudonym_secret: bytes | str | None = None,
    cache: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    quiet: bool = True,
    image_root: str | os.PathLike[str] | None = None,
    group_column: str | None = "patient_id",
    path_column: str = "path",
    overwrite: bool = False,
) -> HeadResult:
    """Refit only the calibration maps and operating points of a head on a new site's labelled
    rows (the fitted weights stay); the new head records how each operating point moved and how
    the old thresholds did on the new site. ``labels``: head labels to recalibrate (default all;
    the CSV is read with the head's own column definitions). ``model``: the base model (default:
    ``radzoo.load(head_dir)``)."""
    from radzoo.eval.label_table import read_labels
    from radzoo.eval.tasks import _cache_dir, _model_table
    from radzoo.extras import require_extra
    from radzoo.heads import attach_head, read_head
    from radzoo.heads.head_apply import calibrate, decision_values

    require_extra("eval", "sklearn.calibration", feature="recalibrating a task head")
    if calibration not in CALIBRATION_CHOICES:
        raise InputError(f"calibration must be one of {CALIBRATION_CHOICES}, got {calibration!r}")
    head = read_head(head_dir)
    if model is None:
        from radzoo.resolve import load

        model = load(head_dir)
    attach_head(model, head)
    data = read_labels(labels_csv, _site_specs(head, labels), image_root=image_root, group_column=group_column,
                       path_column=path_column, require_paths=features is None or join == "path")
    check_trainable(data, folds)
    notes: list[str] = []
    table, _ = _model_table(model, data, features=features, join=join, drop_missing=drop_missing,
                            pseudonym_secret=pseudonym_secret, output=head.base["output"],
                            cache=_cache_dir(cache, None, notes), batch_size=batch_size, workers=workers, quiet=quiet)
    used = data.subset(table.rows)
    check_trainable(used, folds)
    z_all = decision_values(head, table.x)
    plan = plan_folds(used, folds, seed)
    if plan.skipped:
        raise InputError(f"some folds have one class only ({plan.skipped[0]['label']}); lower --folds or label more")
    doc = copy_document(head.document)
    moved: dict[str, Any] = {}
    figures: dict[str, bytes] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j, label in enumerate(used.labels):
            k = head.labels.index(label)
            z, y = z_all[:, k], used.y[:, j].astype(np.int64)
            old = doc["heads"][label]
            methods = CALIBRATIONS if calibration == "auto" else (calibration,)
            oof = {m: np.full(len(used), np.nan) for m in methods}
            for fold in plan.per_label[j]:
                for m in methods:
                    oof[m][fold.test] = calibrate(fit_map(z[fold.train], y[fold.train], m), z[fold.test])
            from sklearn.metrics import brier_score_loss

            brier = {m: float(brier_score_loss(y, oof[m])) for m in methods}
            method = min(brier, key=lambda m: brier[m])
            p_site = oof[method]
            p_old = calibrate(old["calibration"], z)
            cuts = choose_thresholds(y, p_site)
            new_points = operating_point_estimates(y, p_site, used.groups, cuts, n_boot=n_boot, seed=seed)
            old_cuts = {n: float(pt["threshold"]) for n, pt in old["operating_points"].items()}
            old_on_site = operating_point_estimates(y, p_old, used.groups, old_cuts, n_boot=n_boot, seed=seed)
            moved[label] = {n: {"threshold_before": old_cuts[n], "threshold_after": cuts[n],
                                "training_site": {k2: old["operating_points"][n][k2] for k2 in ("sensitivity", "specificity")},
                                "old_threshold_on_new_site": {k2: old_on_site[n][k2] for k2 in ("sensitivity", "specificity", "ppv", "npv")},
                                "new_threshold_on_new_site": {k2: new_points[n][k2] for k2 in ("sensitivity", "specificity", "ppv", "npv")},
                                "predicted_positive_old": int((p_old >= old_cuts[n]).sum()),
                                "predicted_positive_new": int((p_site >= cuts[n]).sum()),
                                "true_positive_count": int(y.sum())}
                            for n in cuts}
            old.update({
                "calibration": fit_map(z, y, method),
                "calibration_choice": {"method": method, "oof_brier": brier,
                                       "rule": "lower out-of-fold Brier score" if calibration == "auto" else "given",
                                       "fitted_on": "the new site's rows (weights unchanged)"},
                "prevalence": float(y.mean()), "n_pos": int(y.sum()), "n_neg": int(y.size - y.sum()),
                "reliability": {"before": _reliability(y, p_old), "after": _reliability(y, p_site)},
                "operating_points": new_points,
            })
            figures[label] = _reliability_png(label, y, p_old, p_site, method, before="before (training-site map)")
    doc["history"] = [*doc.get("history", []), {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "previous_digest": head.digest,
        "labels_file": str(data.source), "n_rows": len(used), "digest": used.digest(table.sha256),
        "labels": list(used.labels), "folds": folds, "seed": seed, "moved": moved}]
    doc["name"] = Path(out).name
    doc["notes"] = [*doc.get("notes", []), *notes, "recalibrated: reliability and operating points below are the "
                    "new site's (cross-validated over its rows); the CV metrics table is the training site's"]
    for key in ("digest", "weights", "files", "format", "radzoo_version"):
        doc.pop(key, None)
    tensors = dict(head.tensors)
    old_figures = {lab: (Path(head_dir) / p).read_bytes() for lab, p in head.document.get("files", {}).get("reliability", {}).items()
                   if lab not in figures and (Path(head_dir) / p).is_file()}
    return _write(Path(out), doc, tensors, {**old_figures, **figures}, overwrite=overwrite)


def copy_document(document: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(document))


def moved_table(document: dict[str, Any]) -> str:
    """Markdown of the last recalibration's moves (empty for a head never recalibrated)."""
    from radzoo.heads.head_card import moved_markdown

    history = document.get("history") or []
    return moved_markdown(history[-1]) if history else ""


__all__ = ["Estimate", "HeadResult", "base_identity", "choose_thresholds", "expected_calibration_error",
           "fit_map", "moved_table", "recalibrate_head", "stored_map", "train_head"]
