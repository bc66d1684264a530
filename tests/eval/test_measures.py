"""Metrics equal scikit-learn's on fixed arrays; the patient bootstrap behaves as a bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    cohen_kappa_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from radzoo.eval.measures import binary_scores, bootstrap, multiclass_scores

Y = np.array([0, 0, 1, 1, 0, 1, 0, 0, 1, 0])
S = np.array([0.1, 0.4, 0.35, 0.8, 0.62, 0.9, 0.2, 0.55, 0.45, 0.05])


def test_binary_scores_equal_sklearn_on_fixed_arrays() -> None:
    got = binary_scores(Y, S)
    pred = (S >= 0.5).astype(int)
    assert got["auroc"] == roc_auc_score(Y, S)
    assert got["average_precision"] == average_precision_score(Y, S)
    assert got["f1"] == f1_score(Y, pred)
    assert got["kappa"] == cohen_kappa_score(Y, pred)
    # hand-checked anchors, so a wrong call cannot agree with itself: 19 of 24 pairs ordered
    assert got["auroc"] == pytest.approx(19 / 24)
    assert got["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))  # tp 2, fp 2, fn 2


def test_weights_are_repeated_rows() -> None:
    """A bootstrap weight of 2 is the row drawn twice, 0 the row not drawn: every metric agrees
    with scikit-learn on the explicitly resampled arrays."""
    w = np.array([2, 0, 1, 3, 1, 0, 1, 2, 1, 1], dtype=float)
    idx = np.repeat(np.arange(Y.size), w.astype(int))
    weighted = binary_scores(Y, S, weight=w)
    explicit = binary_scores(Y[idx], S[idx])
    for k in weighted:
        assert weighted[k] == pytest.approx(explicit[k], abs=1e-12)


def test_one_class_gives_nan_not_an_error() -> None:
    got = binary_scores(np.ones(4, int), np.array([0.2, 0.3, 0.6, 0.9]))
    assert math.isnan(got["auroc"]) and math.isnan(got["average_precision"])
    assert got["f1"] == f1_score(np.ones(4, int), [0, 0, 1, 1])


def test_multiclass_scores_equal_sklearn() -> None:
    y = np.eye(3, dtype=int)[[0, 1, 2, 0, 1, 2, 0, 0]]
    prob = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4], [0.4, 0.4, 0.2],
                     [0.1, 0.2, 0.7], [0.2, 0.2, 0.6], [0.3, 0.6, 0.1], [0.7, 0.2, 0.1]])
    truth, pred = y.argmax(1), prob.argmax(1)
    got = multiclass_scores(y, prob, ["a", "b", "c"])
    assert got["accuracy"] == accuracy_score(truth, pred)
    assert got["macro_f1"] == f1_score(truth, pred, average="macro")
    assert got["macro_precision"] == precision_score(truth, pred, average="macro", zero_division=0)
    assert got["macro_recall"] == recall_score(truth, pred, average="macro")
    assert got["kappa"] == cohen_kappa_score(truth, pred)
    for j, lab in enumerate("abc"):
        assert got[f"{lab}/auroc"] == roc_auc_score(y[:, j], prob[:, j])
    assert got["macro_auroc"] == pytest.approx(np.mean([roc_auc_score(y[:, j], prob[:, j]) for j in range(3)]))


def test_bootstrap_is_seeded_patient_level_and_brackets_the_value() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = y * 0.6 + rng.random(300)
    groups = np.repeat(np.arange(100), 3)  # three images per patient

    def stat(w):
        return {"auroc": binary_scores(y, s, weight=w)["auroc"]}

    a = bootstrap(stat, groups, n_boot=200, seed=5)["auroc"]
    b = bootstrap(stat, groups, n_boot=200, seed=5)["auroc"]
    c = bootstrap(stat, groups, n_boot=200, seed=6)["auroc"]
    assert a == b and a.low != c.low
    assert a.value == roc_auc_score(y, s)
    assert a.low < a.value < a.high and a.n_boot == 200
    seen = []

    def record(w):
        if w is not None:
            seen.append(w.copy())
        return {"x": 0.0}

    bootstrap(record, groups, n_boot=20, seed=1)
    for w in seen:  # a patient's three images are drawn together
        assert (w.reshape(100, 3) == w.reshape(100, 3)[:, :1]).all()
        assert w.sum() == 300


def test_no_bootstrap_means_no_interval() -> None:
    est = bootstrap(lambda w: {"auroc": roc_auc_score(Y, S)}, np.arange(Y.size), n_boot=0)["auroc"]
    assert est.value == roc_auc_score(Y, S) and math.isnan(est.low) and est.to_dict()["ci"] == [None, None]
