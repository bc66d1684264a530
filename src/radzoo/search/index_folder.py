"""The on-disk index folder: immutable data files, one manifest that names them, and a writer lock.

Layout::

    INDEX/index.json            the manifest (format, model identity, files, ANN settings, sources)
    INDEX/keys-<gen>.parquet    one segment's keys (path, sha256, UIDs, patient key, modality ...)
    INDEX/vectors-<gen>.npy     that segment's L2-normalised float32 vectors (row order = keys);
                                none in the low-memory mode (re-ranking reads the extraction's Parquet)
    INDEX/ann-<gen>.faiss       the ANN graph over all live segments (only above the exact threshold),
                                or the low-memory mode's IVF codes (sq4, sq8 or pq)
    INDEX/tombstones-<gen>.npy  row ids removed since the last compaction
    INDEX/.lock                 serialises writers (filelock)

Every write creates new files (temporary name, fsync, ``os.replace``) and commits by replacing
``index.json`` last, so a killed build leaves the previous index whole; the next run redoes the
step. Files no manifest names are deleted by the next writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from radzoo.errors import InputError

FORMAT = "radzoo-index/1"
MANIFEST = "index.json"
LOCK = ".lock"
_TMP = ".tmp-"


class IndexFolderError(InputError):
    """A missing, truncated or foreign index folder; the message names the file."""


def is_uri(location: object) -> bool:
    """A vector-database URI (``milvus://``, ``milvus-lite://``) rather than an index folder."""
    return isinstance(location, str) and location.startswith(("milvus://", "milvus-lite://"))


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an index folder, checked for format and for every file it names."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise IndexFolderError(f"no index folder at {folder}")
    if not path.is_file():
        hint = " (it looks like a radzoo extract output: build an index from it with `radzoo index build`)" \
            if (folder / "manifest.json").is_file() else ""
        raise IndexFolderError(f"{folder} is not a radzoo index: {MANIFEST} is missing{hint}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexFolderError(f"cannot read index manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise IndexFolderError(f"{path} is not a radzoo index manifest (format {found!r}, expected {FORMAT!r})")
    for name in data_files(manifest):
        if not (folder / name).is_file():
            raise IndexFolderError(f"index {folder} is truncated: {name} named in {MANIFEST} is missing")
    return manifest


def data_files(manifest: dict[str, Any]) -> list[str]:
    segments = manifest.get("segments", [])
    names = [s["keys"] for s in segments] + [s["vectors"] for s in segments if s.get("vectors")]
    for key in ("ann_file", "tombstones"):
        if manifest.get(key):
            names.append(manifest[key])
    return names


def write_file(folder: Path, name: str, write: Callable[[Path], None]) -> str:
    """Write ``folder/name`` through a temporary file (``write(tmp)``), fsync, rename. Returns ``name``."""
    tmp = folder / f"{_TMP}{uuid.uuid4().hex}-{name}"
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise IndexFolderError(f"cannot write {folder / name}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return name


def commit(folder: Path, manifest: dict[str, Any]) -> None:
    """Make ``manifest`` the index (atomic replace), then delete files neither it nor its predecessor name."""
    previous = folder / MANIFEST
    keep = set(data_files(manifest))
    if previous.is_file():
        with contextlib.suppress(OSError, ValueError):
            keep |= set(data_files(json.loads(previous.read_text())))
    text = json.dumps(manifest, indent=2, default=str) + "\n"
    write_file(folder, MANIFEST, lambda p: p.write_text(text))
    for path in folder.iterdir():
        if path.name in (MANIFEST, LOCK) or path.name in keep:
            continue
        if path.name.startswith(_TMP) or path.suffix in (".parquet", ".npy", ".faiss"):
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def writer_lock(folder: Path, timeout: float = 600.0) -> Iterator[None]:
    """One writer at a time per index folder (a second waits, then fails naming the lock)."""
    from filelock import FileLock, Timeout

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexFolderError(f"cannot create index folder {folder}: {exc.strerror or exc}") from exc
    lock = FileLock(str(folder / LOCK))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise IndexFolderError(f"index {folder} is locked by another writer ({folder / LOCK}); "
                               f"waited {timeout:.0f} s") from exc
    try:
        yield
    finally:
        lock.release()


def next_name(manifest: dict[str, Any] | None, stem: str, ext: str) -> str:
    gen = (manifest or {}).get("generation", 0) + 1
    return f"{stem}-{gen:06d}-{uuid.uuid4().hex[:6]}.{ext}"
