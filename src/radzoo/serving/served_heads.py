"""Task heads a server answers ``POST /classify`` with (``radzoo serve --heads HEAD,...``).

Each head folder is read strictly at start-up (a bad one stops the server with its reason); its
base model must be among the served models. The identity check against the loaded base model
(name, weights revision, preprocessing, output) happens when the model is first used and is
remembered per loaded model, so a mismatching head answers a 4xx naming both sides.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from radzoo.errors import InputError, ModelNotFoundError
from radzoo.heads import TaskHead, check_base, read_head


class ServedHeads:
    """Heads by name (their folder name unless the head names itself)."""

    def __init__(self, folders: tuple[str, ...] | list[str]) -> None:
        self.heads: dict[str, TaskHead] = {}
        for folder in folders:
            head = read_head(Path(folder).expanduser())
            if head.name in self.heads:
                raise InputError(f"two served heads are named {head.name!r}; rename one (radzoo head train --name)")
            self.heads[head.name] = head
        self._checked: dict[tuple[str, int], str] = {}  # (head, id(model)) -> precision
        self._lock = threading.Lock()

    def base_models(self) -> list[str]:
        return list(dict.fromkeys(h.base["model"] for h in self.heads.values()))

    def get(self, name: str | None) -> TaskHead:
        """The head a request names (the only one when it names none), or a 404 listing them."""
        if not self.heads:
            raise ModelNotFoundError("this server serves no task heads (start it with radzoo serve --heads HEAD,...)")
        if name is None or name == "":
            if len(self.heads) == 1:
                return next(iter(self.heads.values()))
            raise InputError(f"several heads are served; name one in \"head\": {', '.join(self.heads)}")
        if name not in self.heads:
            raise ModelNotFoundError(f"head {name!r} is not served here; available: {', '.join(self.heads)}")
        return self.heads[name]

    def precision_on(self, head: TaskHead, model: Any) -> str:
        """``check_base`` once per (head, loaded model); the model's precision."""
        key = (head.name, id(model))
        with self._lock:
            if key in self._checked:
                return self._checked[key]
        precision = check_base(head, model)
        with self._lock:
            self._checked[key] = precision
        return precision

    def describe(self) -> list[dict[str, Any]]:
        """GET /models' ``heads``: name, labels, operating points, base model, digest, CV AUROC."""
        rows = []
        for head in self.heads.values():
            doc = head.document
            rows.append({
                "id": head.name, "object": "head", "labels": head.labels, "kind": doc.get("kind"),
                "digest": head.digest, "base_model": head.base["model"], "base_output": head.base["output"],
                "base_revision": head.base["revision"], "random_weights": bool(head.base.get("random_weights")),
                "operating_points": head.operating_points(), "default_operating_point": "youden",
                "cv_auroc": {lab: doc["heads"][lab].get("cv_auroc", {}).get("value") for lab in head.labels},
                "n_rows": doc.get("data", {}).get("n_rows"),
            })
        return rows
