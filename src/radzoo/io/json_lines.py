"""JSON Lines files (manifests, RadGraph entries): one JSON object per non-empty line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radzoo.errors import InputError


def json_objects(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-empty line; a bad line raises ``InputError`` naming
    ``what`` (e.g. ``"manifest pairs.jsonl"``) and the line."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{what}, line {n}: not valid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise InputError(f"{what}, line {n}: expected a JSON object")
            yield n, obj
