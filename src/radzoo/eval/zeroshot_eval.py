"""Zero-shot scoring of a labelled set (moved here from ``radzoo.zeroshot.evaluate``).

The image-text model scores the images with its prompts (``model.zero_shot``); the metrics come
from :mod:`radzoo.eval.measures` like every other task. Single-label (PRIOR's 5x200 protocol)
keeps only rows with exactly one positive label; unreadable images are skipped and listed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from radzoo.errors import InputError, RadzooError
from radzoo.eval.label_table import LabelledData
from radzoo.eval.measures import binary_scores, multiclass_scores

log = logging.getLogger(__name__)

MODES = ("single-label", "multi-label")


def single_label_rows(data: LabelledData) -> tuple[np.ndarray, list[str]]:
    """Rows with exactly one positive label, and a note about the others."""
    keep = np.flatnonzero(data.y.sum(axis=1) == 1)
    notes = []
    if keep.size < len(data):
        notes.append(f"{len(data) - keep.size} rows without exactly one positive label were left out (single-label mode)")
    if keep.size == 0:
        raise InputError(f"{data.source}: no row has exactly one positive label among {data.labels}; use mode multi-label")
    return keep, notes


def score_images(model: Any, data: LabelledData, *, mode: str, prompts: Any = None, batch_size: int = 16,
                 ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """(probabilities (n_ok, L), indices of the scored rows, skipped rows). A failing batch is
    retried image by image so one unreadable file costs only itself."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if any(p is None for p in data.paths):
        raise InputError(f"zero-shot needs an image path in every row of {data.source}")
    probs: list[np.ndarray] = []
    ok: list[int] = []
    skipped: list[dict[str, Any]] = []
    for start in range(0, len(data), batch_size):
        chunk = list(range(start, min(start + batch_size, len(data))))
        try:
            res = model.zero_shot([data.paths[i] for i in chunk], data.labels, prompts, mode=mode, batch_size=batch_size)
            probs.append(res.probabilities)
            ok += chunk
        except RadzooError:
            _one_by_one(model, data, chunk, mode, prompts, probs, ok, skipped)
    if not probs:
        first = f"; first error: {skipped[0]['reason']}" if skipped else ""
        raise InputError(f"none of the {len(data)} images of {data.source} could be scored{first}")
    return np.concatenate(probs), np.asarray(ok, dtype=np.int64), skipped


def _one_by_one(model: Any, data: LabelledData, chunk: list[int], mode: str, prompts: Any,
                probs: list[np.ndarray], ok: list[int], skipped: list[dict[str, Any]]) -> None:
    for i in chunk:
        try:
            res = model.zero_shot([data.paths[i]], data.labels, prompts, mode=mode)
        except RadzooError as exc:
            skipped.append({"row": data.lines[i], "path": str(data.paths[i]), "reason": str(exc)})
            log.warning("skipped %s: %s", data.where(i), exc)
            continue
        probs.append(res.probabilities)
        ok.append(i)


def statistic_for(y: np.ndarray, prob: np.ndarray, labels: list[str], mode: str,
                  ) -> Callable[[np.ndarray | None], dict[str, float]]:
    """The metrics of one system as a function of bootstrap row weights."""
    if mode == "single-label":
        return lambda w: multiclass_scores(y, prob, labels, weight=w)

    def multi(w: np.ndarray | None) -> dict[str, float]:
        out: dict[str, float] = {}
        for j, lab in enumerate(labels):
            for k, v in binary_scores(y[:, j], prob[:, j], weight=w).items():
                out[f"{lab}/{k}"] = v
        aurocs = [out[f"{lab}/auroc"] for lab in labels]
        finite = [a for a in aurocs if math.isfinite(a)]
        out["macro_auroc"] = float(np.mean(finite)) if finite else math.nan
        correct = ((prob >= 0.5) == (y == 1)).mean(axis=1)
        out["accuracy"] = float(np.average(correct, weights=w)) if w is None or w.sum() > 0 else math.nan
        return out

    return multi
