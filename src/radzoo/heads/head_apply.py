"""Applying a head: embeddings -> decision values -> calibrated probabilities -> decisions.

Numpy only, so a head runs after the base model on every runtime and precision (torch, ONNX,
int8, bf16, GPU): it only sees the float32 embeddings. A head is attached to a model only when the
model's identity (name, weights revision, preprocessing digest, output) is the one it was trained
on; another precision of the same model is allowed and recorded with each prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from radzoo.errors import InputError
from radzoo.heads.head_file import BASE_FIELDS, DEFAULT_OPERATING_POINT, OPERATING_POINTS, TaskHead


def _expit(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def decision_values(head: TaskHead, x: np.ndarray) -> np.ndarray:
    """The uncalibrated decision value z (a logit) of every label: ``(N, L)`` float64."""
    x = np.asarray(x, dtype=np.float64)
    dim = int(head.base["dim"])
    if x.ndim != 2 or x.shape[1] != dim:
        raise InputError(f"head {head.name!r} takes ({dim},)-wide embeddings of output {head.base['output']!r}, "
                         f"got shape {x.shape}")
    out = np.empty((x.shape[0], len(head.labels)), dtype=np.float64)
    t = head.tensors
    for j, label in enumerate(head.labels):
        h = (x - t[f"head{j}.mean"]) / t[f"head{j}.scale"]
        section = head.label_section(label)
        if section["kind"] == "linear":
            out[:, j] = h @ t[f"head{j}.coef"] + t[f"head{j}.intercept"][0]
            continue
        n_layers = len(section["hidden"]) + 1
        for i in range(n_layers):
            h = h @ t[f"head{j}.mlp.{i}.weight"].T + t[f"head{j}.mlp.{i}.bias"]
            if i < n_layers - 1:
                h = np.maximum(h, 0.0)
        out[:, j] = h[:, 0]
    return out


def calibrate(calibration: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """A stored calibration map applied to decision values (scikit-learn's maps, as data)."""
    if calibration["method"] == "sigmoid":
        return _expit(-(float(calibration["a"]) * z + float(calibration["b"])))
    return np.clip(np.interp(z, np.asarray(calibration["x"], dtype=np.float64),
                             np.asarray(calibration["y"], dtype=np.float64)), 0.0, 1.0)


def probabilities(head: TaskHead, x: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
    """``(N, L)`` probabilities of each label (calibrated unless ``calibrated=False``)."""
    z = decision_values(head, x)
    if not calibrated:
        return _expit(z)
    return np.stack([calibrate(head.label_section(lab)["calibration"], z[:, j])
                     for j, lab in enumerate(head.labels)], axis=1)


def thresholds(head: TaskHead, operating_point: str | None = None) -> dict[str, float]:
    """label -> probability threshold of the named operating point (default: Youden)."""
    name = operating_point or DEFAULT_OPERATING_POINT
    if name not in OPERATING_POINTS:
        raise InputError(f"unknown operating point {name!r}; head {head.name!r} has {', '.join(OPERATING_POINTS)}")
    out = {}
    for label in head.labels:
        point = head.label_section(label)["operating_points"].get(name)
        if point is None:
            raise InputError(f"head {head.name!r} has no operating point {name!r} for label {label!r}")
        out[label] = float(point["threshold"])
    return out


@dataclass
class HeadPrediction:
    """Calibrated probabilities ``(N, L)`` and decisions at one operating point, with what made them."""

    labels: list[str]
    probabilities: np.ndarray
    decisions: np.ndarray  # (N, L) bool: probability >= threshold
    operating_point: str
    thresholds: dict[str, float]
    head: dict[str, Any]  # TaskHead.identity()
    precision: str
    runtime: str

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per image: ``{label: {"probability", "decision", "threshold"}}``."""
        return [{lab: {"probability": float(self.probabilities[i, j]), "decision": bool(self.decisions[i, j]),
                       "threshold": self.thresholds[lab]} for j, lab in enumerate(self.labels)}
                for i in range(self.probabilities.shape[0])]

    def meta(self) -> dict[str, Any]:
        return {"head": self.head, "operating_point": self.operating_point, "precision": self.precision,
                "runtime": self.runtime}


def predict_embeddings(head: TaskHead, x: np.ndarray, operating_point: str | None = None, *,
                       precision: str = "fp32", runtime: str = "unknown") -> HeadPrediction:
    """A head's prediction from embeddings already computed by its base model."""
    cuts = thresholds(head, operating_point)
    p = probabilities(head, x)
    decisions = np.stack([p[:, j] >= cuts[lab] for j, lab in enumerate(head.labels)], axis=1)
    return HeadPrediction(head.labels, p, decisions, operating_point or DEFAULT_OPERATING_POINT, cuts,
                          head.identity(), precision, runtime)


def check_base(head: TaskHead, model: Any) -> str:
    """Refuse a model that is not the head's base model; return the model's precision.

    Another base model, weights revision, preprocessing or output is refused with both sides
    named; another precision of the same model is allowed (its embeddings stay within the
    precision gate's cosine bound) and is returned to be recorded with each prediction."""
    from radzoo.zoo.model_identity import identity_of

    base = head.base
    try:
        ident = identity_of(model, base["output"]).to_dict()
    except InputError as exc:
        raise InputError(f"head {head.name!r} needs output {base['output']!r} of {base['model']!r}: {exc}") from exc
    wrong = [f"{f}: head trained on {base.get(f)!r}, model has {ident.get(f)!r}" for f in BASE_FIELDS
             if base.get(f) != ident.get(f)]
    if wrong:
        raise InputError(f"head {head.name!r} does not belong to this model ({'; '.join(wrong)}); a head only runs "
                         "on the exact base model it was trained on (another precision of it is allowed)")
    return str(ident.get("precision", "fp32"))


def attach_head(model: Any, head: TaskHead) -> Any:
    """Attach ``head`` to ``model`` (``model.head``) after checking the base identity."""
    check_base(head, model)
    model.head = head
    return model
