"""The head artifact on disk, written atomically and read strictly.

```
head.json           format radzoo-head/1: labels, per-label calibration map and operating points,
                    the base model's identity, the training data digest, CV metrics; and a
                    ``digest`` (sha256 of the rest of the document) checked on every read
head.safetensors    per label j: head{j}.mean, head{j}.scale (StandardScaler), head{j}.coef,
                    head{j}.intercept (logistic regression) or head{j}.mlp.* (MLP layers)
README.md           the card: CV metrics with CIs next to the floors, reliability and ECE,
                    the operating-point table, what it was and was not validated on
reliability/*.png   reliability diagrams (out-of-fold, before and after calibration)
```

Calibration maps are data: ``{"method": "sigmoid", "a", "b"}`` (p = 1 / (1 + exp(a z + b)) of the
head's decision value z, scikit-learn's Platt map) or ``{"method": "isotonic", "x", "y"}`` (the
fitted ``IsotonicRegression`` thresholds, applied by linear interpolation, clipped at the ends).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo import __version__
from radzoo.errors import ArtifactError

FORMAT = "radzoo-head/1"
HEAD_JSON = "head.json"
HEAD_WEIGHTS = "head.safetensors"
HEAD_CARD = "README.md"
KINDS = ("linear", "mlp")
CALIBRATIONS = ("sigmoid", "isotonic")
#: Operating points chosen on out-of-fold calibrated probabilities (name -> what it targets).
OPERATING_POINTS = {
    "sens90": "sensitivity >= 0.90 (highest threshold reaching it)",
    "sens95": "sensitivity >= 0.95 (highest threshold reaching it)",
    "spec90": "specificity >= 0.90 (lowest threshold reaching it)",
    "youden": "maximum sensitivity + specificity - 1",
}
DEFAULT_OPERATING_POINT = "youden"
#: Fields of the base identity a head must match exactly (precision may differ, and is recorded).
BASE_FIELDS = ("model", "revision", "preprocess", "output")


@dataclass
class TaskHead:
    """A loaded head: ``document`` is head.json, ``tensors`` the safetensors arrays (float64)."""

    document: dict[str, Any]
    tensors: dict[str, np.ndarray]
    directory: Path | None = None
    _labels: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._labels = list(self.document["labels"])

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def base(self) -> dict[str, Any]:
        """The base model's identity (model, revision, weights_sha256, preprocess, output, dim, precision ...)."""
        return dict(self.document["base"])

    @property
    def name(self) -> str:
        return str(self.document.get("name") or (self.directory.name if self.directory else "head"))

    @property
    def digest(self) -> str:
        return str(self.document["digest"])

    def label_section(self, label: str) -> dict[str, Any]:
        return self.document["heads"][label]

    def operating_points(self) -> list[str]:
        return list(OPERATING_POINTS)

    def identity(self) -> dict[str, Any]:
        """What a prediction records about the head (name, digest, labels, base model)."""
        return {"name": self.name, "digest": self.digest, "labels": self.labels, "kind": self.document.get("kind"),
                "base": {k: self.base.get(k) for k in (*BASE_FIELDS, "precision")}}


def is_head_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a head folder (has a ``head.json``): how ``radzoo.load`` tells a head from a model."""
    p = Path(path)
    return p.is_dir() and (p / HEAD_JSON).is_file()


def document_digest(document: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of everything but the ``digest`` field itself."""
    body = {k: v for k, v in document.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_head(directory: str | os.PathLike[str], document: dict[str, Any], tensors: Mapping[str, np.ndarray],
               files: Mapping[str, bytes | str] | None = None, *, overwrite: bool = False) -> Path:
    """Write a head folder atomically (temp folder, then rename); fills in format, weights and digest.

    ``files``: extra files by relative name (card, figures). Returns the folder."""
    from safetensors.numpy import save_file

    from radzoo.zoo.artifact import swap_in_directory

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise ArtifactError(f"{directory} exists and is not empty; choose another --out (or overwrite=True)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, str(tmp / HEAD_WEIGHTS))
        doc = {"format": FORMAT, "radzoo_version": __version__, **document,
               "weights": {"file": HEAD_WEIGHTS, "sha256": _sha256(tmp / HEAD_WEIGHTS), "format": "safetensors"}}
        doc.pop("digest", None)
        doc["digest"] = document_digest(doc)
        (tmp / HEAD_JSON).write_text(json.dumps(doc, indent=2) + "\n")
        for rel, content in (files or {}).items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        swap_in_directory(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_head(directory: str | os.PathLike[str]) -> TaskHead:
    """A head folder, strictly: format, document digest, weights sha256, tensor keys and shapes."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = Path(directory)
    path = directory / HEAD_JSON
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a radzoo head: no {HEAD_JSON}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {doc.get('format') if isinstance(doc, dict) else None!r}, expected {FORMAT!r}")
    if doc.get("digest") != document_digest(doc):
        raise ArtifactError(f"{path} fails its digest: the file was edited or corrupted after it was written; "
                            "retrain or restore the head")
    weights = directory / str(doc.get("weights", {}).get("file", HEAD_WEIGHTS))
    if not weights.is_file():
        raise ArtifactError(f"{directory}: weights file {weights.name} is missing")
    if _sha256(weights) != doc["weights"].get("sha256"):
        raise ArtifactError(f"{weights} fails its digest: sha256 does not match {HEAD_JSON} (file corrupt or replaced)")
    try:
        tensors = {k: np.asarray(v, dtype=np.float64) for k, v in load_file(str(weights)).items()}
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{weights} is not a readable safetensors file: {exc}") from exc
    _check_tensors(doc, tensors, weights)
    return TaskHead(doc, tensors, directory)


def expected_keys(doc: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape that head.json promises."""
    dim = int(doc["base"]["dim"])
    out: dict[str, tuple[int, ...]] = {}
    for j, label in enumerate(doc["labels"]):
        section = doc["heads"][label]
        out[f"head{j}.mean"] = (dim,)
        out[f"head{j}.scale"] = (dim,)
        if section["kind"] == "linear":
            out[f"head{j}.coef"] = (dim,)
            out[f"head{j}.intercept"] = (1,)
        else:
            widths = [dim, *[int(w) for w in section["hidden"]], 1]
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
                out[f"head{j}.mlp.{i}.weight"] = (b, a)
                out[f"head{j}.mlp.{i}.bias"] = (b,)
    return out


def _check_tensors(doc: Mapping[str, Any], tensors: Mapping[str, np.ndarray], where: Path) -> None:
    try:
        expected = expected_keys(doc)
        for label in doc["labels"]:
            section = doc["heads"][label]
            if section["kind"] not in KINDS:
                raise ArtifactError(f"{where}: label {label!r} has unknown kind {section['kind']!r}")
            if section["calibration"]["method"] not in CALIBRATIONS:
                raise ArtifactError(f"{where}: label {label!r} has unknown calibration {section['calibration']['method']!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{where.parent / HEAD_JSON}: incomplete head document ({exc!r})") from exc
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ArtifactError(f"{where}: tensors do not match {HEAD_JSON}: missing {missing}, unexpected {unexpected}")
    bad = [f"{k} {tuple(tensors[k].shape)} != {s}" for k, s in expected.items() if tuple(tensors[k].shape) != s]
    if bad:
        raise ArtifactError(f"{where}: tensor shapes do not match {HEAD_JSON}: {'; '.join(bad)}")
