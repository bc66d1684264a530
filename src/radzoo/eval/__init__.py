"""Evaluation researchers can trust: linear probe, kNN, retrieval and zero-shot, with patient
bootstrap confidence intervals and floors (raw pixels, random weights, chance) side by side.

Public API::

    data = read_labels("labels.csv", ["view:AP=AP vs PA", "Effusion"], group_column="patient_id")
    linear_probe(model, data, baselines=["raw-pixels"], folds=5, out="eval/") -> EvalReport
    knn(model, data, ...) -> EvalReport
    retrieval(model, read_labels("pairs.csv", [], text_column="report"), ...) -> EvalReport
    zero_shot(model, data, mode="single-label", baselines=["random-init"]) -> EvalReport
    report.markdown(); report.to_dict(); report.write(out)

    case_retrieval("cases.idx", data, baselines=["raw-pixels"]) -> EvalReport   (a radzoo.search index)

``radzoo eval linear-probe | knn | retrieval | zero-shot | case-retrieval`` is the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy: ``radzoo.cli.eval`` builds its parser without importing scikit-learn or torch.
_EXPORTS = {
    "linear_probe": "tasks",
    "knn": "tasks",
    "probe": "tasks",
    "retrieval": "tasks",
    "zero_shot": "tasks",
    "case_retrieval": "tasks",
    "BASELINES": "tasks",
    "read_labels": "label_table",
    "LabelledData": "label_table",
    "LabelSpec": "label_table",
    "ProbeSettings": "probes",
    "EvalReport": "report_files",
    "SystemResult": "report_files",
    "Estimate": "measures",
    "binary_scores": "measures",
    "multiclass_scores": "measures",
    "bootstrap": "measures",
    "plan_folds": "folding",
    "read_extraction": "embedding_join",
    "compute_embeddings": "embedding_join",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"radzoo.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'radzoo.eval' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
