"""Zero-shot evaluation on a labelled folder: accuracy, macro AUROC, macro F1 (numpy only).

Label files: a CSV with a ``path`` column and one 0/1 column per label, or PRIOR's
``chexpert_5x200.json`` (``{id: {"image_path": ..., "label": [one-hot over the 5 classes]}}``).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError, RadzooError
from radzoo.zeroshot.prompts import CHEXPERT5

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ metrics


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).
    NaN when only one class is present."""
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise InputError(f"auroc: {y.shape[0]} labels vs {s.shape[0]} scores")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    i = 0
    while i < s.size:  # average ranks over ties
        j = i
        while j + 1 < s.size and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Binary F1; 0 when there are no true and no predicted positives' overlap (sklearn's zero_division=0)."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    tp = float((y & p).sum())
    denom = float(y.sum() + p.sum())
    return 0.0 if denom == 0 else 2.0 * tp / denom


@dataclass
class Metrics:
    """Evaluation numbers plus what they were computed on."""

    mode: str
    n_images: int
    labels: list[str]
    accuracy: float
    macro_auroc: float
    macro_f1: float
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}


def compute_metrics(y: np.ndarray, prob: np.ndarray, labels: Sequence[str], mode: str, threshold: float = 0.5) -> Metrics:
    """Single-label: accuracy of the argmax, one-vs-rest AUROC, F1 of argmax per class.
    Multi-label: element-wise accuracy at ``threshold``, AUROC and F1 per label. Macro averages
    skip labels whose AUROC is undefined (one class only) and say so in ``notes``."""
    y = np.asarray(y, dtype=np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    if y.shape != prob.shape or y.ndim != 2:
        raise InputError(f"labels {y.shape} and probabilities {prob.shape} must both be (N, L)")
    if y.shape[0] == 0:
        raise InputError("no images to evaluate")
    labels = list(labels)
    if mode == "single-label":
        if not (y.sum(axis=1) == 1).all():
            raise InputError("single-label evaluation needs exactly one positive label per image")
        pred_idx = prob.argmax(axis=1)
        pred = np.eye(len(labels), dtype=np.int64)[pred_idx]
        accuracy = float((pred_idx == y.argmax(axis=1)).mean())
    elif mode == "multi-label":
        pred = (prob >= threshold).astype(np.int64)
        accuracy = float((pred == y).mean())
    else:
        raise InputError(f"mode must be single-label or multi-label, got {mode!r}")
    per, notes = {}, []
    for j, lab in enumerate(labels):
        a = auroc(y[:, j], prob[:, j])
        per[lab] = {"auroc": a, "f1": f1(y[:, j], pred[:, j]), "positives": int(y[:, j].sum())}
        if np.isnan(a):
            notes.append(f"AUROC of {lab!r} is undefined (only one class present); left out of the macro mean")
    aurocs = [v["auroc"] for v in per.values() if not np.isnan(v["auroc"])]
    return Metrics(
        mode=mode,
        n_images=int(y.shape[0]),
        labels=labels,
        accuracy=accuracy,
        macro_auroc=float(np.mean(aurocs)) if aurocs else float("nan"),
        macro_f1=float(np.mean([v["f1"] for v in per.values()])),
        per_label=per,
        notes=notes,
    )


# ------------------------------------------------------------------------------- label files


@dataclass
class LabelledSet:
    paths: list[Path]
    labels: list[str]  # label names used in prompts
    y: np.ndarray  # (N, L) int


def _resolve(path_text: str, root: Path) -> Path:
    p = Path(path_text).expanduser()
    return p if p.is_absolute() else root / p


def parse_label_spec(items: Sequence[str] | None) -> list[tuple[str, str]] | None:
    """``["Effusion=Pleural Effusion", "Edema"]`` -> [(column, label name), ...]."""
    if not items:
        return None
    out = []
    for item in items:
        col, sep, name = item.partition("=")
        col, name = col.strip(), (name.strip() if sep else col.strip())
        if not col or not name:
            raise InputError(f"label spec {item!r}: expected COLUMN or COLUMN=Label Name")
        out.append((col, name))
    return out


def read_labels(path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None,
                columns: Sequence[tuple[str, str]] | None = None) -> LabelledSet:
    """Read a CSV (``path`` + 0/1 columns) or PRIOR's 5x200 JSON; relative image paths are taken
    from ``image_root`` (default: the label file's folder)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"label file {path} does not exist")
    root = Path(image_root) if image_root is not None else path.parent
    if image_root is not None and not root.is_dir():
        raise InputError(f"--image-root {root} is not a directory")
    if path.suffix.lower() == ".json":
        return _read_5x200(path, root, columns)
    return _read_csv(path, root, columns)


def _read_5x200(path: Path, root: Path, columns: Sequence[tuple[str, str]] | None) -> LabelledSet:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty object {{id: {{image_path, label}}}}")
    paths, rows = [], []
    for key, entry in data.items():
        if not isinstance(entry, dict) or "image_path" not in entry or "label" not in entry:
            raise InputError(f"{path}: entry {key!r} lacks image_path/label")
        lab = entry["label"]
        if not isinstance(lab, list) or len(lab) != len(CHEXPERT5) or any(v not in (0, 1) for v in lab):
            raise InputError(f"{path}: entry {key!r} label must be a 0/1 list of length {len(CHEXPERT5)}")
        paths.append(_resolve(entry["image_path"], root))
        rows.append(lab)
    names = list(CHEXPERT5)
    if columns:
        rename = dict(columns)
        names = [rename.get(n, n) for n in names]
    return LabelledSet(paths, names, np.asarray(rows, dtype=np.int64))


def _read_csv(path: Path, root: Path, columns: Sequence[tuple[str, str]] | None) -> LabelledSet:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        records = list(reader)
    if "path" not in header:
        raise InputError(f"{path}: no 'path' column (columns: {', '.join(header) or 'none'})")
    if not records:
        raise InputError(f"{path}: no rows")
    if columns is None:
        cols = [(c, c) for c in header if c != "path"]
        bad = [c for c, _ in cols if any(r[c].strip() not in ("0", "1", "0.0", "1.0") for r in records)]
        if bad:
            raise InputError(
                f"{path}: columns {bad[:6]} are not 0/1; choose the label columns with --labels COL[=Name] ..."
            )
    else:
        missing = [c for c, _ in columns if c not in header]
        if missing:
            raise InputError(f"{path}: no column(s) {missing}; available: {', '.join(header)}")
        cols = list(columns)
    if not cols:
        raise InputError(f"{path}: no label columns")
    y = np.zeros((len(records), len(cols)), dtype=np.int64)
    for i, r in enumerate(records):
        for j, (c, _) in enumerate(cols):
            v = r[c].strip()
            if v not in ("0", "1", "0.0", "1.0"):
                raise InputError(f"{path}: row {i + 2} column {c!r} is {v!r}, expected 0 or 1")
            y[i, j] = int(float(v))
    return LabelledSet([_resolve(r["path"], root) for r in records], [n for _, n in cols], y)


# --------------------------------------------------------------------------------- evaluation


def evaluate(model: Any, data: LabelledSet, *, mode: str = "single-label", prompts: Any = None,
             batch_size: int = 16, threshold: float = 0.5) -> Metrics:
    """Zero-shot metrics of ``model`` on ``data``. Single-label keeps only images with exactly one
    positive label (as PRIOR's 5x200 list); unreadable images are skipped and listed."""
    from radzoo.zeroshot.classify import zero_shot

    keep = np.ones(len(data.paths), dtype=bool)
    notes = []
    if mode == "single-label":
        keep = data.y.sum(axis=1) == 1
        dropped = int((~keep).sum())
        if dropped:
            notes.append(f"{dropped} images without exactly one positive label were left out (single-label mode)")
    skipped: list[dict[str, str]] = []
    probs, ys = [], []
    idx = np.flatnonzero(keep)
    for start in range(0, idx.size, batch_size):
        chunk = idx[start : start + batch_size]
        items = [data.paths[i] for i in chunk]
        try:
            res = zero_shot(model, items, data.labels, prompts, mode=mode, batch_size=batch_size)
            probs.append(res.probabilities)
            ys.append(data.y[chunk])
        except RadzooError:
            for i in chunk:  # find the bad file(s); keep the rest
                try:
                    res = zero_shot(model, [data.paths[i]], data.labels, prompts, mode=mode)
                except RadzooError as exc:
                    skipped.append({"path": str(data.paths[i]), "error": str(exc)})
                    log.warning("skipped %s: %s", data.paths[i], exc)
                    continue
                probs.append(res.probabilities)
                ys.append(data.y[i : i + 1])
    if not probs:
        raise InputError(f"none of the {idx.size} images could be scored" + (f"; first error: {skipped[0]['error']}" if skipped else ""))
    metrics = compute_metrics(np.concatenate(ys), np.concatenate(probs), data.labels, mode, threshold)
    metrics.skipped = skipped
    metrics.notes = notes + metrics.notes
    return metrics
