"""Train/test splits that keep each patient on one side.

* **Grouped k-fold** (default): per label, scikit-learn's ``StratifiedGroupKFold`` (shuffled,
  seeded) so each fold holds roughly the label's prevalence and no patient is split.
* **Given split**: a split column (train/test); a patient on both sides is refused.
* **Label fractions**: the training part of a fold is subsampled by patient, positives and
  negatives alike (MoCo-CXR's 1%/10% label fractions), with seeded repeated draws.

The plan depends only on the data, the labels and the seed, so the model and every baseline are
trained and tested on exactly the same rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radzoo.errors import InputError
from radzoo.eval.label_table import LabelledData
from radzoo.extras import require_extra


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray
    test: np.ndarray


@dataclass
class FoldPlan:
    """Outer folds per label, and the folds that could not be used (one class only)."""

    kind: str  # "grouped-kfold" | "given-split"
    n_splits: int
    seed: int
    per_label: list[list[Fold]]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_splits": self.n_splits, "seed": self.seed,
                "stratified_by": "label" if self.kind == "grouped-kfold" else None}


def _one_class(y: np.ndarray) -> str | None:
    pos = int(y.sum())
    if pos == 0:
        return f"only negatives ({y.size} rows)"
    if pos == y.size:
        return f"only positives ({y.size} rows)"
    return None


def plan_folds(data: LabelledData, n_splits: int = 5, seed: int = 0) -> FoldPlan:
    """Outer folds for every label of ``data`` (see the module doc)."""
    if data.split is not None:
        return _given_split(data, seed)
    StratifiedGroupKFold = require_extra("eval", "sklearn.model_selection", feature="stratified folds").StratifiedGroupKFold

    if n_splits < 2:
        raise InputError(f"folds must be >= 2, got {n_splits}")
    n_groups = len(set(data.groups.tolist()))
    if len(data) < n_splits or n_groups < n_splits:
        who = "patients" if data.group_column else "rows"
        raise InputError(
            f"{data.source}: {len(data)} rows from {n_groups} {who} are fewer than the {n_splits} folds asked "
            "for; lower the number of folds (--folds)"
        )
    plan = FoldPlan("grouped-kfold", n_splits, seed, [])
    if data.group_column is None:
        plan.notes.append(f"{data.source.name} has no patient column: each row is its own group, so images "
                          "of one patient may be on both sides of a fold")
    dummy = np.zeros((len(data), 1))
    for j, label in enumerate(data.labels):
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = []
        with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
            warnings.simplefilter("ignore", UserWarning)
            splits = list(splitter.split(dummy, data.y[:, j], data.groups))
        for k, (train, test) in enumerate(splits):
            why = _one_class(data.y[test, j])
            part = "test"
            if why is None:
                why, part = _one_class(data.y[train, j]), "training"
            if why is not None:
                plan.skipped.append({"label": label, "fold": k, "reason": f"{part} part has {why}: fold skipped"})
                continue
            folds.append(Fold(k, np.sort(train), np.sort(test)))
        if not folds:
            plan.skipped.append({"label": label, "fold": None,
                                 "reason": f"no fold has both classes ({int(data.y[:, j].sum())} positives): label not evaluated"})
        plan.per_label.append(folds)
    return plan


def _given_split(data: LabelledData, seed: int) -> FoldPlan:
    assert data.split is not None
    train = np.flatnonzero(data.split == "train")
    test = np.flatnonzero(data.split == "test")
    col = data.split_column
    if train.size == 0 or test.size == 0:
        raise InputError(f"{data.source}: split column {col!r} has {train.size} train and {test.size} test rows; both are needed")
    plan = FoldPlan("given-split", 1, seed, [])
    if data.group_column is None:
        plan.notes.append(f"{data.source.name} has no patient column: the split cannot be checked for patients on both sides")
    else:
        train_groups = {}
        for i in train:
            train_groups.setdefault(data.groups[i], int(i))
        leaks = [(data.groups[i], train_groups[data.groups[i]], int(i)) for i in test if data.groups[i] in train_groups]
        if leaks:
            g, a, b = leaks[0]
            n = len({x[0] for x in leaks})
            raise InputError(
                f"{data.source}: patient {g!r} ({data.group_column}) is in both train (row {data.lines[a]}) and "
                f"test (row {data.lines[b]}) of split column {col!r}; {n} patient(s) on both sides. "
                "Every patient must be on one side"
            )
    for j, label in enumerate(data.labels):
        why = _one_class(data.y[test, j])
        part = "test"
        if why is None:
            why, part = _one_class(data.y[train, j]), "training"
        if why is not None:
            plan.skipped.append({"label": label, "fold": 0, "reason": f"{part} part has {why}: fold skipped"})
            plan.per_label.append([])
        else:
            plan.per_label.append([Fold(0, train, test)])
    return plan


def fraction_rng(seed: int, label: int, fold: int, fraction: float, draw: int) -> np.random.Generator:
    """The generator of one (label, fold, fraction, draw): the same for every system compared."""
    return np.random.default_rng([seed, label, fold, int(round(fraction * 1_000_000)), draw])


def subsample(train: np.ndarray, y: np.ndarray, groups: np.ndarray, fraction: float,
              rng: np.random.Generator) -> np.ndarray:
    """``fraction`` of the training patients, drawn separately among patients with and without a
    positive image (at least one of each), all their rows kept."""
    if fraction >= 1.0:
        return train
    if not 0.0 < fraction < 1.0:
        raise InputError(f"label fractions must be in (0, 1], got {fraction}")
    g = np.asarray(groups[train], dtype=str)
    uniq, inverse = np.unique(g, return_inverse=True)
    positive = np.bincount(inverse, weights=y[train], minlength=uniq.size) > 0
    chosen = []
    for pool in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        if pool.size:
            take = min(pool.size, max(1, math.ceil(fraction * pool.size)))
            chosen.append(rng.choice(pool, size=take, replace=False))
    keep = np.isin(inverse, np.concatenate(chosen))
    return train[keep]


def inner_splits(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Grouped, stratified inner folds for choosing a hyperparameter, or None when a class has
    fewer patients than folds (the caller then uses its fixed default and says so)."""
    StratifiedGroupKFold = require_extra("eval", "sklearn.model_selection", feature="stratified folds").StratifiedGroupKFold

    g = np.asarray(groups, dtype=str)
    pos_groups = len(set(g[y == 1].tolist()))
    neg_groups = len(set(g[y == 0].tolist()))
    if min(pos_groups, neg_groups) < n_splits:
        return None
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros((y.size, 1)), y, g))
    if any(_one_class(y[test]) or _one_class(y[train]) for train, test in splits):
        return None
    return splits
