"""One extraction run over an output folder: resume filtering, row building, shard commits,
counts, progress and the manifest. Engines feed it results; it owns everything on disk."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo import __version__
from radzoo.extract import sink
from radzoo.extract.discovery import InputItem, Problem
from radzoo.extract.pseudonym import Pseudonymizer
from radzoo.extract.state import ModelIdentity, ResumeState, check_compatible, load_state
from radzoo.extract.work import Failure, Prepared

MANIFEST_FORMAT = "radzoo-extract/1"


@dataclass
class Counts:
    inputs: int = 0  # files discovered
    already_done: int = 0  # skipped: rows written by an earlier run
    previously_failed: int = 0  # skipped: failed in an earlier run (rerun with retry_failed)
    written: int = 0  # rows written by this run
    failed: int = 0  # inputs (or input arguments) that failed in this run
    not_images: int = 0  # non-image files met while walking folders (recorded, not failures)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Session:
    out: Path
    ident: ModelIdentity
    options: dict[str, Any]
    pseudonymizer: Pseudonymizer | None = None
    retry_failed: bool = False
    shard_size: int = 1024
    flush_interval: float = 30.0
    quiet: bool = False
    volumes: bool = False  # CT model: one row per volume/series with QA columns
    head: Any = None  # a radzoo.heads.TaskHead: its probabilities join every row
    metadata: Any = None  # radzoo.extract.metadata.MetadataTable: header fields for files without headers
    run_id: str = field(default_factory=sink.new_run_id)
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        sink.prepare_out(self.out)
        self.previous = sink.read_manifest(self.out)
        key = self.pseudonymizer.fingerprint if self.pseudonymizer else None
        check_compatible(self.previous, self.ident, key)
        self.state: ResumeState = load_state(self.out, self.ident)
        schema = sink.ct_embeddings_schema(self.ident.dim) if self.volumes else sink.embeddings_schema(self.ident.dim)
        if self.head is not None:
            schema = sink.with_head_columns(schema, self.head.labels)
        self.rows = sink.ShardWriter(self.out / "embeddings", schema, self.run_id)
        self.errors = sink.ShardWriter(self.out / "errors", sink.ERRORS_SCHEMA, self.run_id)
        self.started = _now()
        self._last_flush = time.monotonic()
        self._bar: Any = None
        self._write_manifest("running")

    # ---- identifiers as stored ------------------------------------------------------------
    def stored(self, value: str | None) -> str | None:
        return self.pseudonymizer(value) if self.pseudonymizer else value

    # ---- resume ---------------------------------------------------------------------------
    def todo(self, items: list[InputItem], problems: Iterable[Problem]) -> list[InputItem]:
        """Inputs this run must process; records discovery problems as failures."""
        self.counts.inputs = len(items)
        for p in problems:
            self._error(p.path, None, None, p.error_type, p.message, skipped=False)
        todo = []
        for item in items:
            key = self.stored(item.path)
            by_key = item.kind == "instance"  # DICOMweb: the UIDs decide, nothing is transferred
            if self.state.key_done(key) if by_key else self.state.unchanged_done(key, item.size, item.mtime_ns):
                self.counts.already_done += 1
            elif (before := (self.state.key_failed_before(key) if by_key
                             else self.state.failed_before(key, item.size, item.mtime_ns))) == "skipped":
                self.counts.not_images += 1  # a non-image stays a non-image: never retried
            elif before == "failed" and not self.retry_failed:
                self.counts.previously_failed += 1
            else:
                todo.append(item)
        self._start_progress(len(todo))
        return todo

    # ---- results --------------------------------------------------------------------------
    def accept(self, prepared: list[Prepared]) -> list[Prepared]:
        """Drop prepared items whose (path, sha256) already has a row (file touched, not changed)."""
        keep = []
        for p in prepared:
            if self.state.is_done(self.stored(p.path), self.stored(p.sha256)):
                self.counts.already_done += 1
                self._tick(1)
            else:
                keep.append(p)
        return keep

    def record(self, embedded: list[tuple[Prepared, np.ndarray]], failures: list[Failure]) -> None:
        now = _now()
        rows = []
        for p, emb in embedded:
            rows.append(
                {
                    "path": self.stored(p.path),
                    "sha256": self.stored(p.sha256),
                    "size": p.size,
                    "mtime_ns": p.mtime_ns,
                    "sop_instance_uid": self.stored(p.sop_instance_uid),
                    "series_instance_uid": self.stored(p.series_instance_uid),
                    "study_instance_uid": self.stored(p.study_instance_uid),
                    "embedding": np.asarray(emb, dtype=np.float32),
                    "model": self.ident.model,
                    "revision": self.ident.revision,
                    "preprocess": self.ident.preprocess,
                    "output": self.ident.output,
                    "precision": self.ident.precision,
                    "extracted_at": now,
                    "run_id": self.run_id,
                    **self._search_fields(p),
                    **self._extra(p),
                }
            )
            self.state.done.add((rows[-1]["path"], rows[-1]["sha256"]))
        if self.head is not None and rows:
            self._add_head_columns(rows, [emb for _, emb in embedded])
        self.rows.add(rows)
        for f in failures:
            self._error(f.path, f.size, f.mtime_ns, f.error_type, f.message, skipped=f.skipped)
        self._tick(len(embedded) + len(failures))
        if len(self.rows) + len(self.errors) >= self.shard_size or time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def _add_head_columns(self, rows: list[dict[str, Any]], embeddings: list[np.ndarray]) -> None:
        from radzoo.heads.head_apply import probabilities

        probs = probabilities(self.head, np.stack([np.asarray(e, dtype=np.float32) for e in embeddings]))
        for row, p in zip(rows, probs, strict=True):
            row["head_digest"] = self.head.digest
            row.update({sink.head_column(lab): float(v) for lab, v in zip(self.head.labels, p, strict=True)})

    def _search_fields(self, p: Prepared) -> dict[str, Any]:
        """Patient key, modality, view and study date: the header's, else the metadata CSV's."""
        found = {"patient_key": p.patient_id, "modality": p.modality,
                 "view_position": p.view_position, "study_date": p.study_date}
        if self.metadata is not None:
            for k, v in self.metadata.lookup(p.path).items():
                if not found.get(k):
                    found[k] = v
        found["patient_key"] = self.stored(found["patient_key"])
        return found

    def _extra(self, p: Prepared) -> dict[str, Any]:
        extra = dict(p.extra or {})
        if self.pseudonymizer:  # free text (QA warnings) must not leak the input path
            for k, v in extra.items():
                if isinstance(v, str):
                    extra[k] = v.replace(p.path, f"<{self.stored(p.path)}>")
        return extra

    def _error(self, path: str, size: int | None, mtime: int | None, etype: str, message: str, *, skipped: bool) -> None:
        if skipped:
            self.counts.not_images += 1
        else:
            self.counts.failed += 1
        if self.pseudonymizer:
            message = message.replace(path, f"<{self.stored(path)}>")
        self.errors.add(
            [
                {
                    "path": self.stored(path),
                    "size": size,
                    "mtime_ns": mtime,
                    "error_type": etype,
                    "message": message,
                    "skipped": skipped,
                    "model": self.ident.model,
                    "revision": self.ident.revision,
                    "preprocess": self.ident.preprocess,
                    "output": self.ident.output,
                    "extracted_at": _now(),
                    "run_id": self.run_id,
                }
            ]
        )

    def flush(self) -> None:
        """Commit buffered rows: embeddings first, so an error row never precedes its retry's success."""
        written = self.rows.flush()
        self.errors.flush()
        if written is not None:
            self.counts.written = self.rows.committed
        self._last_flush = time.monotonic()

    # ---- end ------------------------------------------------------------------------------
    def finish(self, status: str) -> dict[str, Any]:
        """Flush, close the progress bar, write the final manifest (``complete`` / ``interrupted`` / ``failed``)."""
        try:
            self.flush()
        except sink.OutputError:
            if status != "failed":
                raise
            # already failing: keep the first error; the rows stay unwritten and the next run redoes them
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        try:
            return self._write_manifest(status)
        except sink.OutputError:
            if status != "failed":
                raise
            return self._manifest

    def _write_manifest(self, status: str) -> dict[str, Any]:
        runs = list((self.previous or {}).get("runs", []))
        this = {
            "run_id": self.run_id,
            "status": status,
            "started": self.started.isoformat(),
            "finished": _now().isoformat() if status != "running" else None,
            "radzoo_version": __version__,
            "options": self.options,
            "counts": self.counts.to_dict(),
        }
        runs = [r for r in runs if r.get("run_id") != self.run_id] + [this]
        manifest = {
            "format": MANIFEST_FORMAT,
            "model": self.ident.to_dict(),
            "random_weights": self.ident.random_weights,
            "pseudonymized": self.pseudonymizer is not None,
            "pseudonym_key": self.pseudonymizer.fingerprint if self.pseudonymizer else None,
            "status": status,
            "rows": self.state.rows - len(self.rows),  # committed rows in the folder
            "tables": {"embeddings": "embeddings/part-*.parquet", "errors": "errors/part-*.parquet"},
            "runs": runs,
        }
        sink.write_manifest(self.out, manifest)
        self._manifest = manifest
        return manifest

    # ---- progress -------------------------------------------------------------------------
    def _start_progress(self, total: int) -> None:
        if self.quiet:
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, unit="volume" if self.volumes else "img", file=sys.stderr, desc="extract", dynamic_ncols=True, mininterval=1.0)

    def _tick(self, n: int) -> None:
        if self._bar is not None and n:
            self._bar.update(n)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
