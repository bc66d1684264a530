"""The low-memory index: IVF codes, exact re-ranking read from the extraction's Parquet shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radzoo.errors import InputError
from radzoo.extract.sink import VECTOR_ROW_GROUP, write_parquet
from radzoo.search import IndexFolderError, build_index, remove_uids
from radzoo.search import open as open_index

DIM, ROWS, SHARD = 32, 3000, 1000


def _write_shard(ext: Path, name: str, vectors: np.ndarray, first: int, ident: dict, layout: str = "old") -> None:
    """One extraction shard: ``old`` as extractions before the 64-row layout wrote them (zstd
    everywhere, big row groups: still readable, only slower to re-rank), ``new`` through the
    extraction's own writer."""
    n = len(vectors)
    ids = np.arange(first, first + n)
    table = pa.table({
        "path": [f"/archive/img{i:05d}.dcm" for i in ids],
        "sha256": [f"{i:064x}" for i in ids],
        "sop_instance_uid": [f"1.2.826.0.1.{i}" for i in ids],
        "series_instance_uid": [f"1.2.826.0.2.{i // 4}" for i in ids],
        "study_instance_uid": [f"1.2.826.0.3.{i // 4}" for i in ids],
        "patient_key": [f"P{i // 8:04d}" for i in ids],
        "modality": ["CR" if i % 3 else "DX" for i in ids],
        "view_position": ["PA" if i % 2 else "AP" for i in ids],
        "study_date": [f"2020{1 + i % 12:02d}01" for i in ids],
        "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
        **{c: [str(ident[c])] * n for c in ("model", "revision", "preprocess", "output", "precision")},
    })
    if layout == "new":
        write_parquet(table, ext / "embeddings" / name)
    else:
        pq.write_table(table, ext / "embeddings" / name, compression="zstd", row_group_size=250)


@pytest.fixture(scope="module")
def clustered(extraction: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """3,000 (+1,000 held back for a grow) clustered vectors written as a real extraction output
    (the NIH extraction's manifest and model identity, 3 shards)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, 30, ROWS + SHARD)] + 0.5 * rng.standard_normal((ROWS + SHARD, DIM)).astype(np.float32)
    ext = tmp_path_factory.mktemp("lowmem") / "ext"
    (ext / "embeddings").mkdir(parents=True)
    manifest = json.loads((extraction / "manifest.json").read_text())
    manifest["model"]["dim"] = DIM
    (ext / "manifest.json").write_text(json.dumps(manifest))
    for s in range(ROWS // SHARD):
        _write_shard(ext, f"part-synthetic-{s:05d}.parquet", vectors[s * SHARD:(s + 1) * SHARD], s * SHARD, manifest["model"])
    return ext, vectors


def _paths(result) -> list[str]:
    return [h["path"] for h in result.hits]


def test_low_memory_index_holds_codes_only_recall_stored_and_matches_exact(clustered, tmp_path: Path) -> None:
    ext, _ = clustered
    m = build_index([ext], tmp_path / "low", low_memory=True)
    assert m["low_memory"] and m["ann"]["kind"] == "ivf" and m["ann"]["recall_at_10"] >= 0.95
    assert m["codes"] == "sq4" and m["ann"]["codes"] == "sq4" and m["ann"]["code_bytes"] == DIM // 2  # 4 bits a dim
    assert not list((tmp_path / "low").glob("*.npy"))  # no float32 copy: re-ranking reads the Parquet shards
    build_index([ext], tmp_path / "exact")
    low, exact = open_index(tmp_path / "low"), open_index(tmp_path / "exact")
    assert low.backend == "faiss-ivf" and exact.backend == "faiss-exact"
    uids = [f"1.2.826.0.1.{i}" for i in range(0, ROWS, 150)]
    overlap = []
    for a, b in zip(low.query(uids=uids, k=10), exact.query(uids=uids, k=10), strict=True):
        assert _paths(a)[0] == _paths(b)[0] and len(a.hits) == 10
        exact_score = {h["path"]: h["score"] for h in b.hits}  # shared hits: re-ranked scores are exact
        assert all(abs(h["score"] - exact_score[h["path"]]) < 1e-5 for h in a.hits if h["path"] in exact_score)
        overlap.append(len(set(_paths(a)) & set(exact_score)) / 10)
    assert np.mean(overlap) >= 0.9, overlap
    [f] = low.query(uids=uids[:1], k=10, filters={"modality": "DX"}, exclude_same_patient=True)
    [g] = exact.query(uids=uids[:1], k=10, filters={"modality": "DX"}, exclude_same_patient=True)
    assert _paths(f)[0] == _paths(g)[0] and len(set(_paths(f)) & set(_paths(g))) >= 8
    assert all(h["modality"] == "DX" and h["patient_key"] != "P0000" for h in f.hits)
    [few] = low.query(uids=uids[:1], k=5, filters={"study_date": "20200101..20200131", "view": "AP"})
    assert few.hits and all(h["study_date"] == "20200101" and h["view_position"] == "AP" for h in few.hits)


def test_low_memory_grow_remove_rebuild_and_mode_switch(clustered, tmp_path: Path) -> None:
    src, vectors = clustered
    ext = tmp_path / "ext"
    shutil.copytree(src, ext)
    out = tmp_path / "index"
    first = build_index([ext], out, low_memory=True)
    ident = json.loads((ext / "manifest.json").read_text())["model"]
    _write_shard(ext, "part-synthetic-00009.parquet", vectors[ROWS:], ROWS, ident)
    grown = build_index([ext], out)  # the index's mode is kept
    assert grown["low_memory"] and grown["added_last"] == SHARD and grown["rows"] == first["rows"] + SHARD
    assert grown["ann"]["kind"] == "ivf" and grown["ann"]["recall_at_10"] >= 0.95
    index = open_index(out)
    [hit] = index.query(uids=[f"1.2.826.0.1.{ROWS + 7}"], k=1)  # a grown row finds its nearest neighbour
    assert hit.hits and hit.hits[0]["score"] > 0.5
    done = remove_uids(out, [f"1.2.826.0.1.{ROWS + 7}", "1.2.826.0.3.0"])
    assert done["removed"] == 5
    [res] = open_index(out).query(uids=["1.2.826.0.1.100"], k=1000)
    gone = {f"/archive/img{i:05d}.dcm" for i in (0, 1, 2, 3, ROWS + 7)}
    assert not gone & set(_paths(res))
    with pytest.raises(InputError, match="rebuild it"):
        build_index([ext], out, low_memory=False)
    with pytest.raises(InputError, match="holds sq4 codes; rebuild it"):
        build_index([ext], out, codes="sq8")
    with pytest.raises(InputError, match="unknown low-memory codes 'zip'"):
        build_index([ext], tmp_path / "other", low_memory=True, codes="zip")
    with pytest.raises(InputError, match="give them with low_memory"):
        build_index([ext], tmp_path / "other", codes="sq8")
    compact = build_index([ext], out, rebuild=True)
    assert compact["low_memory"] and compact["rows"] == ROWS + SHARD - 5 and compact["removed"] == 0
    (ext / "embeddings" / "part-synthetic-00009.parquet").unlink()
    with pytest.raises(IndexFolderError, match="part-synthetic-00009.parquet is gone"):
        open_index(out)


def test_low_memory_on_the_small_nih_extraction_equals_exact(extraction: Path, tmp_path: Path, search_model) -> None:
    m = build_index([extraction], tmp_path / "low", low_memory=True)
    assert m["ann"]["kind"] == "ivf" and m["ann"]["recall_at_10"] >= 0.95
    low, exact = open_index(tmp_path / "low"), open_index(_exact(extraction, tmp_path / "exact"))
    png = sorted((extraction.parent / "pngs").glob("*.png"))[2]
    [a], [b] = (i.query(images=[png], k=5, model=search_model, exclude_same_patient=True) for i in (low, exact))
    assert _paths(a) == _paths(b) and len(a.hits) == 5


def _exact(extraction: Path, out: Path) -> Path:
    build_index([extraction], out)
    return out


def test_hnsw_graph_file_holds_links_only_and_grows(clustered, tmp_path: Path) -> None:
    """The HNSW file leaves the float32 vectors to the segments (a grow rewrites only links);
    an index written before that (full graph file) still opens and grows."""
    import faiss

    src, vectors = clustered
    ext = tmp_path / "ext"
    shutil.copytree(src, ext)
    out = tmp_path / "index"
    m = build_index([ext], out, exact_below=1000)
    assert m["ann"]["kind"] == "hnsw" and m["ann"]["links_only"]
    graph = out / m["ann_file"]
    links = graph.stat().st_size
    full = faiss.read_index(str(graph), faiss.IO_FLAG_SKIP_STORAGE)  # rewrite it the old way: with storage
    flat = faiss.IndexFlatIP(DIM)
    flat.add(np.load(out / m["segments"][0]["vectors"]))
    full.storage = flat
    faiss.write_index(full, str(graph))
    assert graph.stat().st_size - links >= ROWS * DIM * 4  # the links-only file left the vectors out
    manifest = json.loads((out / "index.json").read_text())
    manifest["ann"].pop("links_only")
    (out / "index.json").write_text(json.dumps(manifest))
    [old] = open_index(out).query(uids=["1.2.826.0.1.5"], k=10)
    ident = json.loads((ext / "manifest.json").read_text())["model"]
    _write_shard(ext, "part-synthetic-00009.parquet", vectors[ROWS:], ROWS, ident)
    grown = build_index([ext], out)
    assert grown["ann"]["links_only"] and grown["ann"]["recall_at_10"] >= 0.95 and grown["rows"] == ROWS + SHARD
    index = open_index(out)
    assert index.backend == "faiss-hnsw"
    assert type(index.store.vectors).__name__ == "SegmentVectors"  # two segments mapped, not concatenated
    [new] = index.query(uids=[f"1.2.826.0.1.{ROWS + 3}"], k=10)
    assert len(new.hits) == 10 and new.hits[0]["score"] > 0.5 and old.hits


def test_extraction_shards_are_laid_out_for_rereading_and_open_files_are_bounded(clustered, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """New shards: vectors uncompressed, no dictionary, 64-row groups (re-ranking decodes one group
    per candidate); keys zstd. Re-reading across more shards than may stay open keeps the bound
    and returns the stored vectors, unit length."""
    from radzoo.search import parquet_vectors

    src, vectors = clustered
    ext = tmp_path / "ext"
    shutil.copytree(src, ext)
    for f in (ext / "embeddings").glob("*.parquet"):
        f.unlink()
    ident = json.loads((ext / "manifest.json").read_text())["model"]
    for s in range(5):
        _write_shard(ext, f"part-new-{s:05d}.parquet", vectors[s * 500:(s + 1) * 500], s * 500, ident, layout="new")
    meta = pq.ParquetFile(ext / "embeddings" / "part-new-00000.parquet").metadata
    assert meta.num_row_groups == -(-500 // VECTOR_ROW_GROUP) and meta.row_group(0).num_rows == VECTOR_ROW_GROUP
    chunks = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i) for i in range(meta.num_columns)}
    vec = next(c for name, c in chunks.items() if name.startswith("embedding."))
    assert vec.compression == "UNCOMPRESSED" and not any("DICT" in e for e in vec.encodings)
    assert chunks["path"].compression == "ZSTD"
    m = build_index([ext], tmp_path / "low", low_memory=True)
    monkeypatch.setattr(parquet_vectors, "OPEN_FILES", 2)
    index = open_index(tmp_path / "low")
    rows = np.random.default_rng(3).permutation(2500)[:300]
    got = index.store.vectors.take(rows)
    assert len(index.store.vectors._open) <= 2
    want = vectors[rows] / np.linalg.norm(vectors[rows], axis=1, keepdims=True)
    assert np.allclose(got, want, atol=1e-6) and m["rows"] == 2500


def test_a_small_grow_keeps_the_measured_recall_a_large_one_measures_again(clustered, tmp_path: Path) -> None:
    from radzoo.search.faiss_backend import RETUNE_GROWTH

    src, vectors = clustered
    ext = tmp_path / "ext"
    shutil.copytree(src, ext)
    ident = json.loads((ext / "manifest.json").read_text())["model"]
    out = tmp_path / "index"
    first = build_index([ext], out, exact_below=1000)["ann"]
    assert first["recall_rows"] == ROWS and "leave-one-out" in first["recall_note"]
    small = int(ROWS * RETUNE_GROWTH) - 100
    _write_shard(ext, "part-synthetic-00010.parquet", vectors[ROWS:ROWS + small], ROWS, ident)
    kept = build_index([ext], out)
    assert kept["rows"] == ROWS + small and kept["ann"]["recall_rows"] == ROWS  # last measurement kept
    assert kept["ann"]["recall_at_10"] == first["recall_at_10"] and kept["ann"]["added_rows"] == small
    _write_shard(ext, "part-synthetic-00011.parquet", vectors[ROWS + small:], ROWS + small, ident)
    again = build_index([ext], out)
    assert again["ann"]["recall_rows"] == ROWS + SHARD and again["ann"]["recall_at_10"] >= 0.95


def test_leave_one_out_recall_ignores_the_query_row() -> None:
    """Each query's own row is dropped from truth and result before comparing (plain sets here)."""
    from radzoo.search.faiss_backend import recall_without_self

    truth = np.array([[7, 1, 2, 3], [8, 4, 5, 6]])
    own = np.array([7, 8])
    assert recall_without_self(truth, truth, own, 3) == 1.0
    only_self = np.array([[7, 90, 91, 92], [8, 93, 94, 95]])
    assert recall_without_self(truth, only_self, own, 3) == 0.0  # finding itself is no credit
    half = np.array([[7, 1, 90, 91], [6, 5, 8, 4]])  # order within the top-k does not matter
    assert recall_without_self(truth, half, own, 3) == pytest.approx((1 / 3 + 1) / 2)


def test_filtered_search_is_exact_when_selective_and_keeps_recall_when_broad(clustered, tmp_path: Path,
                                                                            monkeypatch) -> None:
    """HNSW and IVF stores against plain numpy on the allowed rows: a filter allowing 2 % of rows
    is answered exactly; one allowing 40 % walks the graph (budget lowered to force it here)."""
    from radzoo.search import faiss_backend

    src, vectors = clustered
    hnsw = open_index(_built(src, tmp_path / "hnsw", exact_below=1000)).store
    ivf = open_index(_built(src, tmp_path / "ivf", low_memory=True)).store
    unit = vectors[:ROWS] / np.linalg.norm(vectors[:ROWS], axis=1, keepdims=True)
    rng = np.random.default_rng(5)
    queries = unit[rng.choice(ROWS, 20, replace=False)] + 0.01
    for share in (0.02, 0.4):
        allowed = rng.random(ROWS) < share
        rows = np.flatnonzero(allowed)
        truth = rows[np.argsort(-(queries @ unit[rows].T), axis=1, kind="stable")[:, :10]]
        if share > 0.1:
            monkeypatch.setattr(faiss_backend, "EXACT_FILTER_BUDGET", 0)  # 1,200 rows would be scored exactly
        for store in (hnsw, ivf):
            _, ids = store.search(queries, 10, allowed)
            assert allowed[ids[ids >= 0]].all() and (ids >= 0).all()
            got = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
            assert got == 1.0 if (share < 0.1 and store is hnsw) else got >= 0.95, (share, store.kind, got)
        monkeypatch.undo()
    none = np.zeros(ROWS, bool)
    _, ids = hnsw.search(queries[:2], 10, none)
    assert (ids == -1).all()


def _built(src: Path, out: Path, **options) -> Path:
    build_index([src], out, **options)
    return out


@pytest.mark.parametrize(("codes", "size"), [("sq8", DIM), ("pq", DIM // 4)])
def test_other_low_memory_codes_hold_the_recall_target(clustered, tmp_path: Path, codes: str, size: int) -> None:
    src, _ = clustered
    m = build_index([src], tmp_path / codes, low_memory=True, codes=codes)
    assert m["codes"] == codes and m["ann"]["code_bytes"] == size and m["ann"]["recall_at_10"] >= 0.95
    [hit] = open_index(tmp_path / codes).query(uids=["1.2.826.0.1.42"], k=5)
    assert len(hit.hits) == 5 and "/archive/img00042.dcm" not in _paths(hit)
