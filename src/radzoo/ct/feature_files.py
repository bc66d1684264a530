"""``CTFeatures``: what ``radzoo.ct.features`` returns, and its .npz / .json files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError

_ARRAYS = ("patch_embeddings", "node_embeddings", "subject_embedding", "landmarks", "patch_corners",
           "patch_lung_fraction", "edge_index")


@dataclass
class CTFeatures:
    """Embeddings of one lung CT.

    * ``patch_embeddings`` float32 [581, 128]: patch encoder output per atlas landmark.
    * ``node_embeddings`` float32 [581, 128]: after the graph network.
    * ``subject_embedding`` float32 [128]: mean of the node embeddings.
    * ``landmarks`` float64 [581, 3]: patch corners in subject LPS mm.
    * ``patch_corners`` int64 [581, 3]: the same corners as (x, y, z) indices of the 1 mm grid.
    * ``patch_lung_fraction`` float32 [581], ``edge_index`` int64 [2, E].
    * ``qa``: lung volumes, registration similarity, patch coverage, warnings and ``passed``.
    """

    patch_embeddings: np.ndarray
    node_embeddings: np.ndarray
    subject_embedding: np.ndarray
    landmarks: np.ndarray
    patch_corners: np.ndarray
    patch_lung_fraction: np.ndarray
    edge_index: np.ndarray
    qa: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.qa.get("passed", False))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: arrays as nested lists."""
        out: dict[str, Any] = {k: np.asarray(getattr(self, k)).tolist() for k in _ARRAYS}
        out.update(qa=self.qa, model=self.model, source=self.source)
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` (arrays + JSON metadata) or ``.json``, chosen by the suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".json"):
            raise InputError(f"output file {path} must end in .npz or .json")
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            path.write_text(json.dumps(self.to_dict()))
        else:
            meta = json.dumps({"qa": self.qa, "model": self.model, "source": self.source})
            with open(path, "wb") as fh:
                np.savez(fh, **{k: np.asarray(getattr(self, k)) for k in _ARRAYS}, meta=np.array(meta))
        return path

    @classmethod
    def load(cls, path: str | Path) -> CTFeatures:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            arrays = {k: np.asarray(data[k]) for k in _ARRAYS}
            meta = {k: data[k] for k in ("qa", "model", "source")}
        else:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in _ARRAYS}
                meta = json.loads(str(z["meta"]))
        return cls(**arrays, **meta)
