"""Parquet output: shards committed by atomic rename, an errors table, and the run manifest.

Layout of an output folder::

    OUT/manifest.json                 the run description (model identity, options, counts)
    OUT/embeddings/part-*.parquet     one row per input embedded
    OUT/errors/part-*.parquet         one row per input that failed or was skipped

Each shard is written to a hidden temporary file, fsynced, then renamed into place, so a reader
(or a resumed run) only ever sees whole shards; a killed run leaves at most a temporary file,
which the next run deletes. ``pyarrow.dataset.dataset(OUT / "embeddings")`` reads the table.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radzoo.errors import RadzooError
from radzoo.extras import require_extra

pa = require_extra("extract", "pyarrow", feature="Parquet tables")
pq = require_extra("extract", "pyarrow.parquet", feature="Parquet tables")

TABLES = ("embeddings", "errors")
#: rows per Parquet row group of a shard holding vectors. The low-memory search index re-reads one
#: row group per re-ranked candidate: 64 rows x 768 floats decoded in ~0.4 ms, a whole 1024-row zstd
#: shard in ~8 ms (measured on random 768-d floats); full scans read the groups in parallel anyway.
VECTOR_ROW_GROUP = 64
MANIFEST = "manifest.json"
_TMP_PREFIX = ".tmp-"


class OutputError(RadzooError, OSError):
    """The output folder cannot be written (permissions, full disk ...); the message says which file."""


def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("path", pa.string()),
            ("sha256", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("sop_instance_uid", pa.string()),
            ("series_instance_uid", pa.string()),
            ("study_instance_uid", pa.string()),
            ("embedding", pa.list_(pa.float32(), dim)),
            ("model", pa.string()),
            ("revision", pa.string()),
            ("preprocess", pa.string()),
            ("output", pa.string()),
            ("precision", pa.string()),  # fp32, bf16, fp16 or int8 (radzoo.runtimes)
            ("extracted_at", pa.timestamp("us", tz="UTC")),
            ("run_id", pa.string()),
            *SEARCH_COLUMNS,
        ]
    )


#: header fields for similar-case search (``radzoo.search``): patient key (PatientID, pseudonymised
#: with the paths when the run is), modality, view position and study date (YYYYMMDD), from the
#: header or ``--metadata CSV``. Appended last: older shards lack them and read back as nulls.
SEARCH_COLUMNS = [
    ("patient_key", pa.string()),
    ("modality", pa.string()),
    ("view_position", pa.string()),
    ("study_date", pa.string()),
]


#: extra columns of a CT row (graph-CT QA; rows exist only for volumes that passed QA)
CT_COLUMNS = [
    ("qa_passed", pa.bool_()),
    ("lung_volume_ml", pa.float64()),
    ("right_lung_ml", pa.float64()),
    ("left_lung_ml", pa.float64()),
    ("registration_dice", pa.float64()),  # lung-mask Dice of the affine atlas registration
    ("registration_mattes_mi", pa.float64()),  # final Mattes mutual information (lower is better)
    ("patches_in_lung_fraction", pa.float64()),
    ("qa_warnings", pa.string()),  # "; "-joined
    ("qa", pa.string()),  # the whole QA report as JSON (timings, registration summary, segmenter)
]


def ct_embeddings_schema(dim: int) -> pa.Schema:
    """The embeddings table of a CT model: one row per volume/series, QA columns appended."""
    base = embeddings_schema(dim)
    return pa.schema(list(base) + [pa.field(name, kind) for name, kind in CT_COLUMNS])


def head_column(label: str) -> str:
    """The column of a task head's calibrated probability of ``label`` (``radzoo extract --head``)."""
    return f"probability:{label}"


def with_head_columns(schema: pa.Schema, labels: Sequence[str]) -> pa.Schema:
    """``schema`` plus the task head's columns: its digest, then one probability per label."""
    extra = [pa.field("head_digest", pa.string())] + [pa.field(head_column(lab), pa.float64()) for lab in labels]
    return pa.schema(list(schema) + extra)


ERRORS_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("skipped", pa.bool_()),  # True: not an image, found while walking a folder (not a failure)
        ("model", pa.string()),
        ("revision", pa.string()),
        ("preprocess", pa.string()),
        ("output", pa.string()),
        ("extracted_at", pa.timestamp("us", tz="UTC")),
        ("run_id", pa.string()),
    ]
)


def prepare_out(out: Path) -> None:
    """Create the folder layout and delete temporary files left by a killed run."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            folder = out / name
            folder.mkdir(exist_ok=True)
            for tmp in folder.glob(_TMP_PREFIX + "*"):
                tmp.unlink()
        probe = out / f"{_TMP_PREFIX}probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {out}: {exc.strerror or exc}") from exc


class ShardWriter:
    """Buffers rows of one table and commits them as whole Parquet shards."""

    def __init__(self, folder: Path, schema: pa.Schema, run_id: str) -> None:
        self.folder = folder
        self.schema = schema
        self.run_id = run_id
        self._rows: list[dict[str, Any]] = []
        self._seq = 0
        self.committed = 0
        self.shards: list[Path] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        self._rows.extend(rows)

    def flush(self) -> Path | None:
        """Write buffered rows as one shard (atomic rename). No-op when empty."""
        if not self._rows:
            return None
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        final = self.folder / name
        tmp = self.folder / f"{_TMP_PREFIX}{name}"
        try:
            with open(tmp, "wb") as fh:
                write_parquet(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.folder)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputError(
                f"cannot write shard {final} ({len(self._rows)} rows kept in memory were lost): "
                f"{exc.strerror or exc}; free disk space or fix permissions, then rerun the same command to resume"
            ) from exc
        self._seq += 1
        self.committed += len(self._rows)
        self.shards.append(final)
        self._rows = []
        return final


def write_parquet(table: pa.Table, where: Any) -> None:
    """Write one shard the way every radzoo table is laid out: zstd for keys and numbers; float
    vector columns uncompressed and without a dictionary (embeddings do not compress: zstd saved
    ~7 % on them and doubled their decode time) in row groups of ``VECTOR_ROW_GROUP`` rows."""
    vectors = [f.name for f in table.schema if _is_vector(f.type)]
    if not vectors:
        pq.write_table(table, where, compression="zstd")
        return
    others = [n for n in table.column_names if n not in vectors]
    pq.write_table(table, where, compression={**dict.fromkeys(others, "zstd"), **dict.fromkeys(vectors, "none")},
                   use_dictionary=others, row_group_size=VECTOR_ROW_GROUP)


def _is_vector(kind: pa.DataType) -> bool:
    return (pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind)) \
        and pa.types.is_floating(kind.value_type)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_table(out: Path, name: str, columns: list[str] | None = None) -> pa.Table | None:
    """All committed shards of one table (temporary files excluded), or None when there are none."""
    folder = out / name
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.glob("part-*.parquet"))
    if not files:
        return None
    try:
        return pa.concat_tables([pq.read_table(f, columns=columns) for f in files], promote_options="default")
    except (OSError, pa.ArrowException) as exc:
        raise OutputError(f"cannot read existing output shards in {folder}: {exc}") from exc


def read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot read {path}: {exc}; move it away to start a new output folder") from exc


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Atomic replace of ``manifest.json``."""
    path = out / MANIFEST
    tmp = out / f"{_TMP_PREFIX}{MANIFEST}.{uuid.uuid4().hex}"
    try:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
