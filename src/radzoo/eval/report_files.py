"""The evaluation report: one JSON document, a Markdown table, and one ROC figure per label.

The JSON (``format: radzoo-eval/1``) holds what a reader needs to trust or redo the numbers: the
model identity (name, weights revision, preprocessing digest, output), a digest of the data, the
seed, the folds and every metric as ``{"value", "ci": [low, high], "n_boot"}``. Baselines (the
floor) sit next to the model in every table. Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo import __version__
from radzoo.eval.measures import Estimate

FORMAT = "radzoo-eval/1"

#: Row titles of the Markdown table by metric key (per-label keys are ``label/metric``).
TITLES = {
    "auroc": "AUROC",
    "average_precision": "AP",
    "f1": "F1",
    "kappa": "kappa",
    "macro_auroc": "macro AUROC",
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "macro_precision": "macro precision",
    "macro_recall": "macro recall",
}


@dataclass
class SystemResult:
    """The metrics of one system (the model or a baseline) at one label fraction."""

    system: str
    metrics: dict[str, Estimate]  # "macro_auroc", "Effusion/auroc", "image_to_text/R@5" ...
    fraction: float | None = None
    draws: int = 1
    details: dict[str, Any] = field(default_factory=dict)  # chosen hyperparameters, fold AUROCs ...
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # label -> (y, score)

    def to_dict(self) -> dict[str, Any]:
        per_label: dict[str, dict[str, Any]] = {}
        overall: dict[str, Any] = {}
        for key, est in self.metrics.items():
            label, sep, metric = key.rpartition("/")
            if sep and not key.startswith(("image_to_text/", "text_to_image/")):
                per_label.setdefault(label, {})[metric] = est.to_dict()
            else:
                overall[key] = est.to_dict()
        return {"system": self.system, "fraction": self.fraction, "draws": self.draws,
                "overall": overall, "per_label": per_label, "details": _plain(self.details)}


@dataclass
class EvalReport:
    """Everything one ``radzoo eval`` run found; ``write(out)`` saves it."""

    task: str
    model: dict[str, Any]
    systems: dict[str, dict[str, Any]]  # id -> description (kind, seed, size ...)
    data: dict[str, Any]
    seed: int
    protocol: dict[str, Any]
    results: list[SystemResult]
    rows: list[str]  # metric keys shown in the Markdown table, in order
    label_counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # label -> (positives, negatives)
    chance: dict[str, float] = field(default_factory=dict)  # metric key -> chance level
    skipped: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    # ---- views -------------------------------------------------------------------------------
    def result(self, system: str, fraction: float | None = None) -> SystemResult:
        for r in self.results:
            if r.system == system and (fraction is None or r.fraction == fraction):
                return r
        raise KeyError(f"no result for system {system!r} at fraction {fraction}")

    def to_dict(self) -> dict[str, Any]:
        return _plain({
            "format": FORMAT,
            "task": self.task,
            "created": self.created,
            "radzoo_version": __version__,
            "model": self.model,
            "systems": self.systems,
            "data": self.data,
            "seed": self.seed,
            "protocol": self.protocol,
            "results": [r.to_dict() for r in self.results],
            "chance": self.chance,
            "skipped": self.skipped,
            "dropped": self.dropped,
            "notes": self.notes,
            "files": self.files,
        })

    def markdown(self) -> str:
        """The report as Markdown: one table per label fraction, model and floors side by side."""
        name = self.model.get("name", "?")
        rnd = " (RANDOM weights)" if self.model.get("random_weights") else ""
        level = int(round(100 * self.protocol.get("ci_level", 0.95)))
        n_boot = self.protocol.get("bootstrap", 0)
        lines = [f"## radzoo eval {self.task}: {name}{rnd}", ""]
        folds = self.protocol.get("folds") or {}
        how = []
        if folds.get("kind") == "grouped-kfold":
            how.append(f"{folds['n_splits']}-fold patient-grouped cross-validation (seed {self.seed})")
        elif folds.get("kind") == "given-split":
            how.append(f"the given split (column {self.data.get('split_column')!r})")
        lines.append(
            f"{self.data.get('n_rows')} images from {self.data.get('n_groups')} patients in "
            f"`{self.data.get('labels_file')}`" + (f"; {', '.join(how)}" if how else "")
            + (f"; {level}% CIs from {n_boot} patient bootstrap resamples." if n_boot else "; no CIs (bootstrap 0).")
        )
        lines.append("")
        systems = list(dict.fromkeys(r.system for r in self.results))
        fractions = list(dict.fromkeys(r.fraction for r in self.results))
        floors = [s for s in systems if s != "model"]
        for fraction in fractions:
            if fraction is not None and (len(fractions) > 1 or fraction < 1.0):
                lines += [f"### label fraction {fraction:g}", ""]
            by_system = {r.system: r for r in self.results if r.fraction == fraction}
            head = ["metric", "n (pos/neg)", *systems]
            if self.chance:
                head.append("chance")
            head += [f"Δ vs {f}" for f in floors]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            for key in self.rows:
                label, sep, metric = key.rpartition("/")
                if label in ("image_to_text", "text_to_image"):
                    title = f"{label.replace('_to_', '→')} {metric}"
                else:
                    title = f"{TITLES.get(metric, metric)} {label}" if sep else TITLES.get(key, key)
                counts = self.label_counts.get(label) if sep else None
                cells = [title, f"{counts[0]}/{counts[1]}" if counts else ""]
                for s in systems:
                    est = by_system[s].metrics.get(key) if s in by_system else None
                    cells.append(est.text() if est else "n/a")
                if self.chance:
                    c = self.chance.get(key)
                    cells.append(f"{c:.3f}" if c is not None else "")
                model = by_system.get("model")
                for f in floors:
                    a = model.metrics.get(key) if model else None
                    b = by_system[f].metrics.get(key) if f in by_system else None
                    ok = a is not None and b is not None and math.isfinite(a.value) and math.isfinite(b.value)
                    cells.append(f"{a.value - b.value:+.3f}" if ok else "n/a")  # type: ignore[union-attr]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        if self.skipped:
            lines += [f"Skipped: {len(self.skipped)} (label, fold) combination(s) with one class only; see report.json.", ""]
        if self.dropped:
            lines += [f"Dropped: {len(self.dropped)} row(s) without an embedding or readable image; see report.json.", ""]
        for note in self.notes:
            lines.append(f"- {note}")
        return "\n".join(lines).rstrip() + "\n"

    # ---- files -------------------------------------------------------------------------------
    def write(self, out: str | os.PathLike[str]) -> dict[str, Path]:
        """``out/report.json``, ``out/report.md`` and ``out/roc/<label>.png``; returns the paths."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        roc = self._roc_figures(out / "roc")
        self.files = {"json": "report.json", "markdown": "report.md",
                      "roc": {label: str(p.relative_to(out)) for label, p in roc.items()}}
        md = self.markdown()
        _atomic_text(out / "report.md", md)
        _atomic_text(out / "report.json", json.dumps(self.to_dict(), indent=2) + "\n")
        written["json"], written["markdown"] = out / "report.json", out / "report.md"
        written.update({f"roc:{k}": v for k, v in roc.items()})
        return written

    def _roc_figures(self, folder: Path) -> dict[str, Path]:
        """One figure per label: the ROC curve of every system (the largest label fraction)."""
        if not any(r.curves for r in self.results):
            return {}
        from radzoo.extras import require_extra

        require_extra("eval", "sklearn.metrics", feature="ROC figures")
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from sklearn.metrics import roc_auc_score, roc_curve

        top = max((r.fraction for r in self.results if r.fraction is not None), default=None)
        chosen = [r for r in self.results if r.fraction == top and r.curves]
        labels = list(dict.fromkeys(lab for r in chosen for lab in r.curves))
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        used: set[str] = set()
        for label in labels:
            fig, ax = plt.subplots(figsize=(4.6, 4.6), dpi=110)
            for r in chosen:
                if label not in r.curves:
                    continue
                y, score = r.curves[label]
                if np.unique(y).size < 2:
                    continue
                fpr, tpr, _ = roc_curve(y, score)
                ax.plot(fpr, tpr, lw=1.8 if r.system == "model" else 1.2,
                        label=f"{r.system} (AUROC {roc_auc_score(y, score):.3f})")
            ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            title = f"{label}: {self.model.get('name', '')}"
            ax.set_title(title if len(title) < 50 else title[:47] + "...", fontsize=9)
            ax.legend(loc="lower right", fontsize=7)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            fig.tight_layout()
            slug = _unique_slug(label, used)
            path = folder / f"{slug}.png"
            _atomic_figure(fig, path)
            plt.close(fig)
            paths[label] = path
        return paths


def _unique_slug(label: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_.") or "label"
    slug, n = base, 2
    while slug in used:
        slug, n = f"{base}_{n}", n + 1
    used.add(slug)
    return slug


def _plain(value: Any) -> Any:
    """JSON-ready: NaN/inf -> None, numpy scalars/arrays -> Python, tuples -> lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def _atomic_text(path: Path, text: str) -> None:
    tmp = _temp_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_figure(fig: Any, path: Path) -> None:
    tmp = _temp_name(path)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
