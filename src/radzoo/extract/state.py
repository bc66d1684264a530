"""Resume state: what an output folder already holds, and the identity of the model that wrote it.

A row is done when the output holds an embedding for the same input path and file sha256 under
the same model name, weights revision, preprocessing digest and output head. Inputs whose size
and mtime are unchanged since their row was written are skipped without re-hashing; anything
else is hashed by the workers and checked again before inference. DICOMweb instances are keyed by
their WADO-RS path (made of their UIDs) alone: a SOP Instance UID names one immutable object, so
a done (or failed) instance is skipped without being transferred again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radzoo.errors import InputError
from radzoo.zoo.model_identity import ModelIdentity, identity_of, model_revision, weights_digest

__all__ = ["ModelIdentity", "ResumeState", "identity_of", "load_state", "model_revision", "sha256_file", "weights_digest"]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ResumeState:
    """Keys of rows already written (and of inputs that failed) in an output folder."""

    done: set[tuple[str, str]]  # (stored path, stored sha256)
    done_stat: dict[str, tuple[int, int, str]]  # stored path -> (size, mtime_ns, stored sha256)
    failed_stat: dict[str, tuple[int | None, int | None, bool]]  # stored path -> (size, mtime_ns, skipped) at failure

    @property
    def rows(self) -> int:
        return len(self.done)

    def is_done(self, path: str, sha256: str) -> bool:
        return (path, sha256) in self.done

    def unchanged_done(self, path: str, size: int, mtime_ns: int) -> bool:
        """Done and untouched since: skip without reading the file."""
        stat = self.done_stat.get(path)
        return stat is not None and stat[0] == size and stat[1] == mtime_ns

    def key_done(self, path: str) -> bool:
        """DICOMweb instances: a row exists for this key (its UIDs), whatever its bytes hashed to."""
        return path in self.done_stat

    def key_failed_before(self, path: str) -> str | None:
        """DICOMweb instances: ``"failed"`` / ``"skipped"`` when the key failed (or was skipped) before."""
        stat = self.failed_stat.get(path)
        if stat is None or path in self.done_stat:
            return None
        return "skipped" if stat[2] else "failed"

    def failed_before(self, path: str, size: int, mtime_ns: int) -> str | None:
        """``"failed"`` / ``"skipped"`` when the input failed (or was skipped as a non-image) last
        time and is unchanged since; None otherwise (a changed file is retried automatically)."""
        stat = self.failed_stat.get(path)
        if stat is None or path in self.done_stat or stat[:2] != (size, mtime_ns):
            return None
        return "skipped" if stat[2] else "failed"


def load_state(out: Path, ident: ModelIdentity) -> ResumeState:
    """Read the key columns of every committed shard; rows of another model identity are ignored."""
    from radzoo.extract.sink import read_table

    done: set[tuple[str, str]] = set()
    done_stat: dict[str, tuple[int, int, str]] = {}
    cols = ["path", "sha256", "size", "mtime_ns", "model", "revision", "preprocess", "output"]
    table = read_table(out, "embeddings", columns=cols)
    if table is not None:
        for row in table.to_pylist():
            if _same(row, ident):
                done.add((row["path"], row["sha256"]))
                done_stat[row["path"]] = (row["size"], row["mtime_ns"], row["sha256"])
    failed: dict[str, tuple[int | None, int | None, bool]] = {}
    errors = read_table(
        out, "errors", columns=["path", "size", "mtime_ns", "skipped", "model", "revision", "preprocess", "output"]
    )
    if errors is not None:
        for row in errors.to_pylist():
            if _same(row, ident):  # rows without size (DICOMweb keys, discovery problems) count by key only
                failed[row["path"]] = (row["size"], row["mtime_ns"], bool(row["skipped"]))
    return ResumeState(done=done, done_stat=done_stat, failed_stat=failed)


def _same(row: dict[str, Any], ident: ModelIdentity) -> bool:
    return (
        row["model"] == ident.model
        and row["revision"] == ident.revision
        and row["preprocess"] == ident.preprocess
        and row["output"] == ident.output
    )


def check_compatible(manifest: dict[str, Any] | None, ident: ModelIdentity, key_fingerprint: str | None) -> None:
    """Refuse to mix two models, or two pseudonymisation secrets, in one output folder."""
    if not manifest:
        return
    old = {"precision": "fp32", **manifest.get("model", {})}  # folders written before precisions: fp32
    fields = ("model", "revision", "preprocess", "output", "precision")
    if any(old.get(f) != getattr(ident, f) for f in fields):
        was = ", ".join(f"{f}={old.get(f)}" for f in fields)
        now = ", ".join(f"{f}={getattr(ident, f)}" for f in fields)
        raise InputError(
            f"the output folder already holds embeddings of another model ({was}); this run is ({now}). "
            "Use a different --out for each model"
        )
    if manifest.get("pseudonym_key") != key_fingerprint:
        raise InputError(
            "the output folder was written with "
            + ("a different pseudonymisation secret" if manifest.get("pseudonym_key") else "no pseudonymisation")
            + " than this run; resuming would duplicate rows. Use the same secret (or none) or another --out"
        )
