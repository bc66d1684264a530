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
import pyarrow.compute as pc
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


class ExtractSource:
    """One extraction folder's shards not yet indexed, read one shard at a time (a build holds one
    shard's vectors, not the whole extraction's): ``keys(name)`` then ``vectors(name)``."""

    def __init__(self, folder: Path, known_shards: set[str]) -> None:
        self.folder = folder
        self.identity, manifest = source_identity(folder)
        self.pseudonymized = bool(manifest.get("pseudonymized"))
        self.dim = int(self.identity.get("dim") or 0)
        self.shard_dir = folder / "embeddings"
        shards = sorted(p.name for p in self.shard_dir.glob("part-*.parquet")) if self.shard_dir.is_dir() else []
        if not shards and not known_shards:
            raise InputError(f"{folder} holds no embeddings ({self.shard_dir}/part-*.parquet): nothing to index")
        self.new = [s for s in shards if s not in known_shards]

    def keys(self, name: str) -> pa.Table:
        """The key columns (and ``source``) of one shard, its rows checked against the manifest's model."""
        path = self.shard_dir / name
        try:
            schema = pq.read_schema(path)
            present = [c for c in (*KEY_COLUMNS, *IDENT_COLUMNS) if c in schema.names]
            table = pq.read_table(path, columns=present)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"cannot read embeddings shard {path}: {exc}") from exc
        if "embedding" not in schema.names:
            raise InputError(f"{path} rows have no 'embedding' column")
        kind = schema.field("embedding").type
        if self.dim and pa.types.is_fixed_size_list(kind) and kind.list_size != self.dim:
            raise InputError(f"{path}: embeddings have {kind.list_size} dims, manifest.json says {self.dim}")
        _check_one_identity(table, self.folder)
        if len(table):
            first = {c: table.column(c)[0].as_py() for c in IDENT_COLUMNS if c in table.column_names}
            if any(str(first[c]) != str(self.identity.get(c)) for c in first):
                raise InputError(f"{self.folder}: rows were embedded by [{_fmt(first)}] but manifest.json says "
                                 f"[{_fmt(self.identity)}]")
        columns = {c: _text_column(table, c) for c in KEY_COLUMNS}
        columns["source"] = pa.array([str(self.folder)] * len(table), pa.string())
        return pa.table(columns)

    def vectors(self, name: str) -> np.ndarray:
        """One shard's embeddings as unit float32 rows."""
        path = self.shard_dir / name
        try:
            emb = pq.read_table(path, columns=["embedding"]).column("embedding").combine_chunks()
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"cannot read embeddings shard {path}: {exc}") from exc
        if not len(emb):
            return np.zeros((0, self.dim), np.float32)
        lengths = pc.list_value_length(emb)
        width = pc.min_max(lengths)
        if width["min"].as_py() != width["max"].as_py() or lengths.null_count:
            raise InputError(f"{path}: embedding rows differ in length (or are empty)")
        vectors = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(emb), -1)
        if self.dim and vectors.shape[1] != self.dim:
            raise InputError(f"{path}: embeddings have {vectors.shape[1]} dims, manifest.json says {self.dim}")
        return normalise(vectors)


def read_new_rows(folder: Path, known_shards: set[str]) -> SourceRows:
    """Rows of the shards of ``folder/embeddings`` not in ``known_shards``, all in memory at once
    (small extractions, the benchmark's real embeddings; an index build reads shard by shard)."""
    source = ExtractSource(folder, known_shards)
    keys = [source.keys(name) for name in source.new]
    vectors = [source.vectors(name) for name in source.new]
    return SourceRows(str(folder), pa.concat_tables(keys) if keys else _empty_keys(),
                      np.concatenate(vectors) if vectors else np.zeros((0, source.dim), np.float32),
                      list(source.new), source.identity, source.pseudonymized, [len(k) for k in keys])


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
