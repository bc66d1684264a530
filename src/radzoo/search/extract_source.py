"""Reading ``radzoo extract`` outputs into index rows: keys, vectors, model identity.

Only whole, committed shards are read (the extraction's own atomic-rename guarantee), and a shard
is read once: the index remembers which shards of each source it holds, so rerunning on a grown
extraction adds only the new shards' rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from radzoo.errors import InputError

#: the extraction's columns kept in the index (whatever the extraction stored, pseudonymised or not)
KEY_COLUMNS = ("path", "sha256", "sop_instance_uid", "series_instance_uid", "study_instance_uid",
               "patient_key", "modality", "view_position", "study_date")
IDENT_COLUMNS = ("model", "revision", "preprocess", "output", "precision")


@dataclass
class SourceRows:
    """New rows of one extraction folder: keys (with ``source``), unit vectors, the shards they came from."""

    source: str
    keys: pa.Table
    vectors: np.ndarray
    shards: list[str]
    identity: dict[str, Any]
    pseudonymized: bool
    shard_sizes: list[int] | None = None  # rows of each of ``shards``, in order (the low-memory index's row refs)


def source_identity(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model identity, manifest) of an extraction folder, or an error naming the folder."""
    from radzoo.extract.sink import read_manifest

    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None:
        raise InputError(f"{folder} is not a radzoo extract output (no manifest.json)")
    ident = manifest.get("model")
    if not isinstance(ident, dict) or "model" not in ident:
        raise InputError(f"{folder / 'manifest.json'} names no model; is it a radzoo extract output?")
    return ident, manifest


def read_new_rows(folder: Path, known_shards: set[str]) -> SourceRows:
    """Rows of the shards of ``folder/embeddings`` not in ``known_shards``."""
    ident, manifest = source_identity(folder)
    shard_dir = folder / "embeddings"
    shards = sorted(p.name for p in shard_dir.glob("part-*.parquet")) if shard_dir.is_dir() else []
    if not shards and not known_shards:
        raise InputError(f"{folder} holds no embeddings ({shard_dir}/part-*.parquet): nothing to index")
    new = [s for s in shards if s not in known_shards]
    tables = []
    for name in new:
        try:
            tables.append(pq.read_table(shard_dir / name))
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"cannot read embeddings shard {shard_dir / name}: {exc}") from exc
    dim = int(ident.get("dim") or 0)
    if not tables:
        return SourceRows(str(folder), _empty_keys(), np.zeros((0, dim), np.float32), [], ident,
                          bool(manifest.get("pseudonymized")))
    table = pa.concat_tables(tables, promote_options="default")
    if "embedding" not in table.column_names:
        raise InputError(f"{shard_dir} rows have no 'embedding' column")
    _check_one_identity(table, folder)
    first = {c: table.column(c)[0].as_py() for c in IDENT_COLUMNS}
    if any(str(first[c]) != str(ident.get(c)) for c in IDENT_COLUMNS):
        raise InputError(f"{folder}: rows were embedded by [{_fmt(first)}] but manifest.json says [{_fmt(ident)}]")
    emb = table.column("embedding").combine_chunks()
    flat = emb.values.to_numpy(zero_copy_only=False) if hasattr(emb, "values") else emb.flatten().to_numpy()
    vectors = np.asarray(flat, dtype=np.float32).reshape(len(table), -1)
    if dim and vectors.shape[1] != dim:
        raise InputError(f"{shard_dir}: embeddings have {vectors.shape[1]} dims, manifest.json says {dim}")
    columns = {c: _text_column(table, c) for c in KEY_COLUMNS}
    columns["source"] = pa.array([str(folder)] * len(table), pa.string())
    keys = pa.table(columns)
    return SourceRows(str(folder), keys, normalise(vectors), new, ident, bool(manifest.get("pseudonymized")),
                      [len(t) for t in tables])


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit rows (inner product = cosine); zero rows stay zero."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def _check_one_identity(table: pa.Table, folder: Path) -> None:
    for col in IDENT_COLUMNS:
        if col not in table.column_names:
            continue
        values = {v for v in table.column(col).unique().to_pylist()}
        if len(values) > 1:
            raise InputError(f"{folder}: rows mix {col}s {sorted(map(str, values))}; "
                             f"index one model, revision, preprocessing, output and precision at a time")


def _text_column(table: pa.Table, name: str) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(len(table), pa.string())  # an older extraction: the field stays empty
    return table.column(name).combine_chunks().cast(pa.string())


def _empty_keys() -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in (*KEY_COLUMNS, "source")})


def _fmt(ident: dict[str, Any]) -> str:
    return ", ".join(f"{k}={ident.get(k)!r}" for k in IDENT_COLUMNS)
