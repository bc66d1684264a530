"""Index build / grow / remove / compaction and queries on the real FAISS backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import radzoo
from radzoo.errors import CapabilityError, InputError
from radzoo.search import IndexFolderError, ModelMismatchError, build_index, index_info, remove_uids
from radzoo.search import open as open_index

FAST = {"threads": 1, "quiet": True, "workers": 0}


def test_build_records_keys_identity_and_metadata(index_dir: Path, extraction: Path) -> None:
    info = index_info(index_dir)
    assert info["model"]["model"] == "tiny-random-mococxr" and info["model"]["output"]
    assert {"revision", "preprocess", "precision"} <= set(info["model"])
    assert info["rows"] == info["live_rows"] > 12 and info["ann"]["kind"] == "exact"
    index = open_index(index_dir)
    rows = index.keys.to_pylist()
    pngs = [r for r in rows if r["path"].endswith(".png")]
    assert len(pngs) == 12 and all(r["patient_key"] and r["view_position"] in ("PA", "AP") for r in pngs)
    dicoms = [r for r in rows if r["path"].endswith(".dcm")]
    assert dicoms and all(r["modality"] and r["sop_instance_uid"] for r in dicoms)
    assert any(r["study_date"] for r in dicoms) and any(r["patient_key"] for r in dicoms)


def test_image_query_finds_itself_and_excludes_its_patient(index_dir: Path, extraction: Path, search_model) -> None:
    index = open_index(index_dir)
    png = sorted((extraction.parent / "pngs").glob("*.png"))[3]
    [res] = index.query(images=[png], k=5, model=search_model)
    assert res.hits[0]["path"] == str(png) and res.hits[0]["score"] > 0.999
    assert [h["rank"] for h in res.hits] == [1, 2, 3, 4, 5]
    assert all(a["score"] >= b["score"] for a, b in zip(res.hits, res.hits[1:], strict=False))
    [excl] = index.query(images=[png], k=5, model=search_model, exclude_same_patient=True)
    patient = res.hits[0]["patient_key"]
    assert all(h["patient_key"] != patient for h in excl.hits) and len(excl.hits) == 5


def test_filters_uid_queries_and_bad_values(index_dir: Path) -> None:
    index = open_index(index_dir)
    uid = next(r["sop_instance_uid"] for r in index.keys.to_pylist() if r["modality"] == "CR")
    [res] = index.query(uids=[uid], k=20, filters={"modality": "CR"})
    assert res.hits and all(h["modality"] == "CR" for h in res.hits)
    [pa_only] = index.query(uids=[uid], k=3, filters=["view=PA"])
    assert all(h["view_position"] == "PA" for h in pa_only.hits)
    [dated] = index.query(uids=[uid], k=50, filters=["study_date=19000101..20001231"])
    assert all("19000101" <= h["study_date"] <= "20001231" for h in dated.hits)
    with pytest.raises(InputError, match="unknown filter field 'colour'"):
        index.query(uids=[uid], filters={"colour": "red"})
    for k in (0, 1001, -3):
        with pytest.raises(InputError, match=f"k must be an integer from 1 to 1000, got {k}"):
            index.query(uids=[uid], k=k)
    with pytest.raises(InputError, match="uid '1.2.3.4.nothing' is not in index"):
        index.query(uids=["1.2.3.4.nothing"])


def test_text_query_on_image_only_index_names_models_that_can(index_dir: Path, search_model) -> None:
    with pytest.raises(CapabilityError, match=r"text queries need .*Models that can: .*prior"):
        open_index(index_dir).query(texts=["moderate left pleural effusion"], model=search_model)


def test_query_with_another_model_is_refused_naming_both(index_dir: Path, extraction: Path, search_model_dir: Path) -> None:
    other = radzoo.load(search_model_dir, device="cpu", threads=1, precision="bf16", runtime="torch")
    png = sorted((extraction.parent / "pngs").glob("*.png"))[0]
    with pytest.raises(ModelMismatchError, match=r"precision differ.*index \[.*precision='fp32'.*\] vs image query \[.*precision='bf16'"):
        open_index(index_dir).query(images=[png], model=other)


def test_grow_adds_only_new_rows_and_remove_tombstones_then_compacts(extraction: Path, tmp_path: Path,
                                                                      search_model, nih_pngs: list[Path]) -> None:
    from radzoo.extract.api import extract_features

    ext = tmp_path / "ext"
    shutil.copytree(extraction, ext)
    out = tmp_path / "index"
    first = build_index([ext], out)
    again = build_index([ext], out)
    assert again["generation"] == first["generation"]  # nothing new: unchanged
    more = tmp_path / "more"
    more.mkdir()
    for f in nih_pngs[20:23]:
        shutil.copy2(f, more / f.name)
    extract_features(search_model, [more], ext, **FAST)
    grown = build_index([ext], out)
    assert grown["added_last"] == 3 and grown["rows"] == first["rows"] + 3 and len(grown["segments"]) == 2

    index = open_index(out)
    uid = next(r["sop_instance_uid"] for r in index.keys.to_pylist() if r["modality"] == "DX")
    uid_file = tmp_path / "retracted.txt"
    uid_file.write_text(uid + "\n1.2.3.unknown\n")
    done = remove_uids(out, uid_file.read_text().splitlines())
    assert done["removed"] >= 1 and done["unknown"] == ["1.2.3.unknown"]
    after = open_index(out)
    assert len(after) == grown["rows"] - done["removed"]
    with pytest.raises(InputError, match="not in index"):
        after.query(uids=[uid])
    other = after.keys.column("sop_instance_uid").drop_null()[0].as_py()
    [res] = after.query(uids=[other], k=1000)
    assert all(h["sop_instance_uid"] != uid for h in res.hits)
    compact = build_index([ext], out, rebuild=True)
    assert compact["rows"] == grown["rows"] - done["removed"] and compact["removed"] == 0
    assert uid not in pq.read_table(out / compact["segments"][0]["keys"]).column("sop_instance_uid").to_pylist()


def test_hnsw_above_threshold_stores_recall_and_agrees_with_exact(extraction: Path, tmp_path: Path) -> None:
    exact = open_index(_built(extraction, tmp_path / "exact"))
    ann_dir = tmp_path / "ann"
    manifest = build_index([extraction], ann_dir, exact_below=5)
    assert manifest["ann"]["kind"] == "hnsw" and manifest["ann"]["recall_at_10"] >= 0.95
    ann = open_index(ann_dir)
    assert ann.backend == "faiss-hnsw" and exact.backend == "faiss-exact"
    uid = exact.keys.column("sop_instance_uid").drop_null()[0].as_py()
    [a], [b] = ann.query(uids=[uid], k=5), exact.query(uids=[uid], k=5)
    assert [h["path"] for h in a.hits] == [h["path"] for h in b.hits]
    [f] = ann.query(uids=[uid], k=5, filters={"modality": "CR"})
    assert all(h["modality"] == "CR" for h in f.hits)


def _built(extraction: Path, out: Path) -> Path:
    build_index([extraction], out)
    return out


def test_bad_index_folders_name_the_file(index_dir: Path, extraction: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexFolderError, match="no index folder at .*nowhere"):
        open_index(tmp_path / "nowhere")
    with pytest.raises(IndexFolderError, match="index.json is missing.*radzoo extract output"):
        open_index(extraction)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "index.json").write_text(json.dumps({"format": "something-else/2"}))
    with pytest.raises(IndexFolderError, match="format 'something-else/2'"):
        open_index(foreign)
    manifest = json.loads((index_dir / "index.json").read_text())
    victim = manifest["segments"][0]["vectors"]
    (index_dir / victim).unlink()
    with pytest.raises(IndexFolderError, match=f"truncated: {victim}"):
        open_index(index_dir)


def test_bad_extractions_are_refused(extraction: Path, tmp_path: Path, search_model_dir: Path) -> None:
    empty = tmp_path / "empty"
    shutil.copytree(extraction, empty)
    shutil.rmtree(empty / "embeddings")
    with pytest.raises(InputError, match="holds no embeddings"):
        build_index([empty], tmp_path / "i1")
    mixed = tmp_path / "mixed"
    shutil.copytree(extraction, mixed)
    shard = sorted((mixed / "embeddings").glob("part-*.parquet"))[0]
    table = pq.read_table(shard)
    precision = table.column("precision").to_pylist()
    precision[0] = "bf16"
    import pyarrow as pa

    pq.write_table(table.set_column(table.schema.get_field_index("precision"), "precision", pa.array(precision)), shard)
    with pytest.raises(InputError, match=r"rows mix precisions \['bf16', 'fp32'\]"):
        build_index([mixed], tmp_path / "i2")
    other = tmp_path / "other"
    shutil.copytree(extraction, other)
    m = json.loads((other / "manifest.json").read_text())
    m["model"]["revision"] = "0000deadbeef"
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="manifest.json says"):
        build_index([other], tmp_path / "i3")
    with pytest.raises(InputError, match="not a radzoo extract output"):
        build_index([tmp_path], tmp_path / "i4")


def test_killed_build_leaves_index_usable_and_writers_are_serialised(index_dir: Path, extraction: Path) -> None:
    from radzoo.search.index_folder import writer_lock

    before = open_index(index_dir)
    # what a kill between writing the new files and the manifest swap leaves behind
    (index_dir / "vectors-999999-abcdef.npy").write_bytes(b"partial")
    (index_dir / ".tmp-0123-keys.parquet").write_bytes(b"partial")
    reopened = open_index(index_dir)
    assert len(reopened) == len(before)
    with writer_lock(index_dir), pytest.raises(IndexFolderError, match="locked by another writer"):
        build_index([extraction], index_dir, lock_timeout=0.2)
    build_index([extraction], index_dir, rebuild=True)  # the next writer finishes and cleans up
    assert not (index_dir / "vectors-999999-abcdef.npy").exists()
    assert not (index_dir / ".tmp-0123-keys.parquet").exists()
    assert len(open_index(index_dir)) == len(before)


def test_pseudonymised_extraction_keeps_pseudonyms_in_results(tmp_path: Path, search_model, shared_data: Path) -> None:
    from radzoo.extract.api import extract_features

    out = tmp_path / "ext"
    dicoms = [p for p in sorted((shared_data / "dicom").glob("*.dcm"))][:6]
    extract_features(search_model, dicoms, out, pseudonym_secret="a-long-test-secret-0123456789", **FAST)
    build_index([out], tmp_path / "index")
    index = open_index(tmp_path / "index")
    assert index.pseudonymized
    rows = index.keys.to_pylist()
    assert rows and all(len(r["path"]) == 32 and "/" not in r["path"] for r in rows)
    assert all(r["patient_key"] is None or len(r["patient_key"]) == 32 for r in rows)
    [res] = index.query(uids=[rows[0]["sop_instance_uid"]], k=3)
    assert all(len(h["path"]) == 32 for h in res.hits)
    assert np.isfinite([h["score"] for h in res.hits]).all()


def test_text_queries_on_a_joint_image_text_index(tmp_path: Path, nih_pngs: list[Path]) -> None:
    """A PRIOR-architecture index (its joint 'global' output): text queries rank the images."""
    from radzoo.extract.api import extract_features
    from radzoo.zoo.tiny import tiny_specs, write_test_vocab

    prior = radzoo.build(tiny_specs()["tiny-random-prior"], tokenizer=write_test_vocab(tmp_path / "vocab"))
    extract_features(prior, nih_pngs[:6], tmp_path / "ext", output="global", **FAST)
    build_index([tmp_path / "ext"], tmp_path / "index")
    [res] = open_index(tmp_path / "index").query(texts=["moderate left pleural effusion"], k=4, model=prior)
    assert res.query.startswith("text:") and len(res.hits) == 4
    assert all(a["score"] >= b["score"] for a, b in zip(res.hits, res.hits[1:], strict=False))
    other = radzoo.build(tiny_specs()["tiny-random-prior"], tokenizer=write_test_vocab(tmp_path / "vocab2"), seed=5)
    with pytest.raises(ModelMismatchError, match="revision differ"):
        open_index(tmp_path / "index").query(texts=["effusion"], model=other)


def test_an_older_extraction_without_the_header_fields_still_indexes(extraction: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(extraction, old)
    for shard in (old / "embeddings").glob("part-*.parquet"):
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns(["patient_key", "modality", "view_position", "study_date"]), shard)
    build_index([old], tmp_path / "index")
    index = open_index(tmp_path / "index")
    rows = index.keys.to_pylist()
    assert rows and all(r["modality"] is None and r["patient_key"] is None for r in rows)
    uid = next(r["sop_instance_uid"] for r in rows if r["sop_instance_uid"])
    [res] = index.query(uids=[uid], k=3, exclude_same_patient=True)
    assert len(res.hits) == 3
