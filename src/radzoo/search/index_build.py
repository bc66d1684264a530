"""``radzoo index build|remove|info``: create or grow an index from extraction outputs, tombstone rows.

A build reads only the shards the index does not hold yet; the new rows become one segment and,
above the exact threshold, are added to the HNSW graph (whose file holds links only, the segments
holding the vectors) or, in the low-memory mode, to the IVF codes (a full rebuild only with ``rebuild=True``,
which also compacts tombstones away). ``remove`` tombstones rows by UID at once; a later rebuild
drops them for good, and remembers the UIDs so re-reading the sources does not bring them back.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radzoo.errors import InputError
from radzoo.search import faiss_backend as fb
from radzoo.search import index_folder as folder_fmt
from radzoo.search.extract_source import ExtractSource
from radzoo.search.model_check import IDENTITY_FIELDS, describe
from radzoo.search.segment_vectors import SegmentVectors

log = logging.getLogger(__name__)

UID_COLUMNS = ("sop_instance_uid", "series_instance_uid", "study_instance_uid")


def build_index(extract_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                rebuild: bool = False, exact_below: int = fb.EXACT_BELOW, threads: int | None = None,
                lock_timeout: float = 600.0, low_memory: bool | None = None,
                codes: str | None = None) -> dict[str, Any]:
    """Index the rows of ``extract_dirs`` into ``out`` (created, or grown with new rows only).

    Returns the committed manifest. ``exact_below``: row count under which search stays exact.
    ``low_memory``: IVF codes re-ranked exactly from the extraction's Parquet embeddings, no
    float32 copy in the index (None: the existing index's mode; switching needs ``rebuild``);
    ``codes``: their kind (``faiss_backend.CODES``, default sq4; kept by later grows).
    """
    if not extract_dirs:
        raise InputError("no extraction folders given")
    index_dir = Path(out)
    with folder_fmt.writer_lock(index_dir, lock_timeout):
        old = folder_fmt.read_manifest(index_dir) if (index_dir / folder_fmt.MANIFEST).exists() else None
        previous = None if rebuild else old
        if previous and low_memory is not None and bool(low_memory) != bool(previous.get("low_memory")):
            raise InputError(f"index {index_dir} was built {'with' if previous.get('low_memory') else 'without'} "
                             f"--low-memory; rebuild it (--rebuild) to switch modes")
        manifest = dict(previous) if previous else _new_manifest(exact_below)
        if low_memory is None and old:
            low_memory = bool(old.get("low_memory"))
        manifest["low_memory"] = bool(low_memory)
        if codes is not None and not low_memory:
            raise InputError("codes choose the low-memory index's compression: give them with low_memory (--low-memory)")
        if low_memory:
            held = previous.get("codes", "pq") if previous else None  # indexes from before --codes hold PQ
            if held and codes is not None and codes != held:
                raise InputError(f"index {index_dir} holds {held} codes; rebuild it (--rebuild) to switch to {codes}")
            manifest["codes"] = fb.check_codes(codes or held or (old or {}).get("codes") or fb.DEFAULT_CODES)
        if rebuild and old:  # compaction: tombstoned rows are not re-read; removed UIDs stay removed
            manifest.update(generation=old.get("generation", 0), created=old.get("created"),
                            removed_uids=old.get("removed_uids", []))
        removed = set(manifest.get("removed_uids", []))
        sources = {k: dict(v) for k, v in manifest.get("sources", {}).items()}
        started = time.perf_counter()
        new_keys, parts = [], []
        for d in extract_dirs:
            path = Path(d).resolve()
            source = ExtractSource(path, set(sources.get(str(path), {}).get("shards", [])))
            _check_identity(manifest, source.identity, path)
            for name in source.new:  # keys first (small); vectors are streamed into the segment later
                keys = source.keys(name)
                if low_memory:
                    keys = _with_row_refs(keys, [name], [len(keys)])
                keep = _not_removed(keys, removed)
                new_keys.append(keys.filter(pa.array(keep)))
                parts.append((source, name, keep))
            entry = sources.setdefault(str(path), {"shards": [], "pseudonymized": source.pseudonymized})
            entry["shards"] = sorted(set(entry["shards"]) | set(source.new))
            entry["pseudonymized"] = source.pseudonymized
        added = sum(len(k) for k in new_keys)
        manifest["sources"] = sources
        if added == 0 and previous is not None:
            log.info("index build: no new rows")
            return previous
        _write_segment(index_dir, manifest, new_keys, parts)
        _update_ann(index_dir, manifest, previous, rebuild, threads)
        manifest["added_last"] = added
        manifest["build_seconds_last"] = round(time.perf_counter() - started, 3)
        manifest["updated"] = _now()
        manifest["generation"] = manifest.get("generation", 0) + 1
        folder_fmt.commit(index_dir, manifest)
        return manifest


def _new_manifest(exact_below: int) -> dict[str, Any]:
    return {"format": folder_fmt.FORMAT, "generation": 0, "created": _now(), "model": None, "dim": None,
            "metric": "cosine", "exact_below": int(exact_below), "rows": 0, "segments": [], "ann_file": None,
            "ann": {"kind": "exact"}, "tombstones": None, "removed": 0, "removed_uids": [], "sources": {}}


def _check_identity(manifest: dict[str, Any], ident: dict[str, Any], path: Path) -> None:
    mine = {k: ident.get(k) for k in (*IDENTITY_FIELDS, "dim", "random_weights")}
    if manifest.get("model") is None:
        manifest["model"] = mine
        manifest["dim"] = int(ident["dim"])
        return
    if any(str(manifest["model"].get(k)) != str(mine.get(k)) for k in IDENTITY_FIELDS):
        raise InputError(f"{path} was extracted with [{describe(mine)}], the index holds "
                         f"[{describe(manifest['model'])}]; one index holds one model's embeddings")


def _not_removed(keys: pa.Table, removed: set[str]) -> np.ndarray:
    keep = np.ones(len(keys), bool)
    if removed:
        values = pa.array(sorted(removed), pa.string())
        for col in UID_COLUMNS:
            keep &= ~pc.fill_null(pc.is_in(keys.column(col), value_set=values), False).to_numpy(zero_copy_only=False)
    return keep


def _with_row_refs(keys: pa.Table, shards: list[str], sizes: list[int]) -> pa.Table:
    """Each row's shard file name and position in it: where the low-memory index re-reads its vector."""
    names = np.repeat(np.array(shards, dtype=object), sizes)
    local = np.concatenate([np.arange(n, dtype=np.int64) for n in sizes]) if sizes else np.zeros(0, np.int64)
    return keys.append_column("shard", pa.array(names, pa.string())).append_column("shard_row", pa.array(local))


def _write_segment(index_dir: Path, manifest: dict[str, Any], keys: list[pa.Table],
                   parts: list[tuple[ExtractSource, str, np.ndarray]]) -> None:
    """One segment: its keys, and (unless low-memory) its unit vectors, streamed shard by shard
    into the ``.npy`` file, so a build holds one shard's vectors at a time."""
    table = pa.concat_tables(keys) if keys else None
    if table is None or len(table) == 0:
        return
    kname = folder_fmt.next_name(manifest, "keys", "parquet")
    folder_fmt.write_file(index_dir, kname, lambda p: pq.write_table(table, p, compression="zstd"))
    vname = None
    if not manifest.get("low_memory"):
        vname = folder_fmt.next_name(manifest, "vectors", "npy")
        folder_fmt.write_file(index_dir, vname, lambda p: _stream_vectors(p, len(table), int(manifest["dim"]), parts))
    manifest["segments"] = [*manifest.get("segments", []), {"keys": kname, "vectors": vname, "rows": len(table)}]
    manifest["rows"] = int(manifest.get("rows", 0)) + len(table)


def _stream_vectors(path: Path, rows: int, dim: int, parts: list[tuple[ExtractSource, str, np.ndarray]]) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    at = 0
    for source, name, keep in parts:
        vectors = source.vectors(name)
        if len(vectors) != len(keep):
            raise InputError(f"{source.shard_dir / name} changed while it was indexed ({len(keep)} rows, then {len(vectors)})")
        kept = vectors[keep]
        out[at: at + len(kept)] = kept
        at += len(kept)
    out.flush()
    del out


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def load_vectors(index_dir: Path, manifest: dict[str, Any], mmap: bool = True, keys: pa.Table | None = None) -> Any:
    """All segments' vectors in row-id order (memory maps: one array, or a ``SegmentVectors`` view
    over several, never a concatenated copy); in the low-memory mode a ``ParquetVectors`` reading
    them from the extraction's shards on demand."""
    if manifest.get("low_memory"):
        from radzoo.search.parquet_vectors import ParquetVectors

        return ParquetVectors.from_keys(read_keys(index_dir, manifest) if keys is None else keys,
                                        int(manifest.get("dim") or 0))
    parts = [np.load(index_dir / s["vectors"], mmap_mode="r" if mmap else None) for s in manifest["segments"]]
    if not parts:
        return np.zeros((0, int(manifest.get("dim") or 0)), np.float32)
    return parts[0] if len(parts) == 1 else SegmentVectors(parts)


def _update_ann(index_dir: Path, manifest: dict[str, Any], previous: dict[str, Any] | None, rebuild: bool,
                threads: int | None) -> None:
    rows = int(manifest["rows"])
    low = bool(manifest.get("low_memory"))
    if rows < int(manifest.get("exact_below", fb.EXACT_BELOW)) and not low:
        manifest["ann"], manifest["ann_file"] = {"kind": "exact"}, None
        return
    vectors = load_vectors(index_dir, manifest)
    graph, tuned = None, None
    if not rebuild and previous and previous.get("ann_file"):
        graph = fb.read_ann(index_dir / previous["ann_file"], vectors, bool(previous["ann"].get("links_only")))
        tuned = previous["ann"]
    if low:
        graph, info = fb.build_ivf(vectors, graph, threads, tuned, codes=manifest["codes"])
    else:
        graph, info = fb.build_ann(vectors, graph, threads, tuned)
    name = folder_fmt.next_name(manifest, "ann", "faiss")
    folder_fmt.write_file(index_dir, name, lambda p: fb.write_ann(graph, p))
    manifest["ann"], manifest["ann_file"] = info, name


def read_keys(index_dir: Path, manifest: dict[str, Any]) -> pa.Table:
    tables = [pq.read_table(index_dir / s["keys"]) for s in manifest["segments"]]
    return pa.concat_tables(tables) if tables else pa.table({})


def read_tombstones(index_dir: Path, manifest: dict[str, Any]) -> np.ndarray:
    name = manifest.get("tombstones")
    return np.load(index_dir / name) if name else np.zeros(0, np.int64)


def remove_uids(index: str | os.PathLike[str], uids: Iterable[str], lock_timeout: float = 600.0) -> dict[str, Any]:
    """Tombstone every row whose SOP, Series or Study Instance UID is in ``uids`` (at once);
    returns ``{"removed": rows, "unknown": [uids matching nothing]}``."""
    index_dir = Path(index)
    wanted = sorted({u.strip() for u in uids if u and u.strip()})
    if not wanted:
        raise InputError("no UIDs given to remove")
    with folder_fmt.writer_lock(index_dir, lock_timeout):
        manifest = dict(folder_fmt.read_manifest(index_dir))
        keys = read_keys(index_dir, manifest)
        hit = np.zeros(len(keys), bool)
        values = pa.array(wanted, pa.string())
        seen: set[str] = set()
        for col in UID_COLUMNS:
            if len(keys):
                mask = pc.fill_null(pc.is_in(keys.column(col), value_set=values), False).to_numpy(zero_copy_only=False)
                hit |= mask
                seen |= set(keys.column(col).filter(pa.array(mask)).to_pylist())
        dead = np.union1d(read_tombstones(index_dir, manifest), np.flatnonzero(hit)).astype(np.int64)
        name = folder_fmt.next_name(manifest, "tombstones", "npy")
        folder_fmt.write_file(index_dir, name, lambda p: _save_npy(p, dead))
        manifest["tombstones"] = name
        manifest["removed"] = int(len(dead))
        manifest["removed_uids"] = sorted(set(manifest.get("removed_uids", [])) | set(wanted))
        manifest["generation"] = manifest.get("generation", 0) + 1
        manifest["updated"] = _now()
        folder_fmt.commit(index_dir, manifest)
    return {"removed": int(hit.sum()), "unknown": [u for u in wanted if u not in seen]}


def index_info(index: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``radzoo index info`` prints: model identity, rows, live rows, backend and its recall."""
    manifest = folder_fmt.read_manifest(Path(index))
    return {"index": str(index), "model": manifest["model"], "dim": manifest["dim"], "rows": manifest["rows"],
            "live_rows": manifest["rows"] - manifest.get("removed", 0), "removed": manifest.get("removed", 0),
            "backend": "faiss", "low_memory": bool(manifest.get("low_memory")), "ann": manifest.get("ann"), "sources": {k: len(v["shards"]) for k, v in manifest["sources"].items()},
            "pseudonymized": any(v.get("pseudonymized") for v in manifest["sources"].values()),
            "updated": manifest.get("updated")}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
