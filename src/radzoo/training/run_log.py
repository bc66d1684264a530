"""What a run leaves beside its artifact: per-step metrics (JSONL), a progress bar, the resolved config.

Only rank 0 writes (:class:`RunLog` is inert elsewhere). ``metrics.jsonl`` gets one JSON object
per optimiser step (``step``, ``epoch``, ``phase``, ``lr``, ``loss``, the method's own metrics,
throughput), appended across resumes so a run's history stays in one file. ``resolved.json`` is
the config after file + overrides, plus how the run was actually executed (world size, global
and per-process batch, accumulation, precision, device, backend).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"
RESOLVED = "resolved.json"


def write_json_atomic(path: Path, data: Any) -> Path:
    """JSON to ``path`` via a temp file and ``os.replace`` (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, *args: Any, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


class RunLog:
    """Rank 0's metrics file and progress bar; every method is a no-op when ``enabled`` is False."""

    def __init__(self, run_dir: Path, enabled: bool, progress: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.progress_enabled = enabled and progress
        self._fh = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.run_dir / METRICS, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self._fh.flush()

    def bar(self, total: int, initial: int, desc: str) -> Any:
        if not self.progress_enabled:
            return _NoBar()
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-step records of a run directory (for tests, plots and reports)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
