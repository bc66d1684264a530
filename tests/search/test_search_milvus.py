"""The same index interface on the real Milvus engine (milvus-lite runs it locally): build by URI,
grow, query with filters and patient exclusion inside the search, removals at once, bad URIs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from radzoo.errors import InputError
from radzoo.search import build_index, index_info, remove_uids
from radzoo.search import open as open_index

pytest.importorskip("milvus_lite")


def test_milvus_lite_index_matches_the_exact_local_index(extraction: Path, index_dir: Path, tmp_path: Path,
                                                         search_model) -> None:
    uri = f"milvus-lite://{tmp_path}/cases.db/cases"
    manifest = build_index([extraction], uri)
    assert manifest["backend"] == "milvus" and manifest["rows"] > 12
    assert build_index([extraction], uri)["added_last"] == 0  # nothing new
    info = index_info(uri)
    assert info["live_rows"] == manifest["rows"] and info["model"]["model"] == "tiny-random-mococxr"

    milvus, local = open_index(uri), open_index(index_dir)
    assert milvus.backend == "milvus"
    uid = next(r["sop_instance_uid"] for r in local.keys.to_pylist() if r["modality"] == "CR")
    [m], [e] = milvus.query(uids=[uid], k=5), local.query(uids=[uid], k=5)
    assert [h["path"] for h in m.hits] == [h["path"] for h in e.hits]
    assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(m.hits, e.hits, strict=True))
    [f] = milvus.query(uids=[uid], k=10, filters={"modality": ["CR"]})
    assert f.hits and all(h["modality"] == "CR" for h in f.hits)
    png = sorted((extraction.parent / "pngs").glob("*.png"))[1]
    [img] = milvus.query(images=[png], k=3, model=search_model, exclude_same_patient=True)
    patient = local.keys.filter(local.keys.column("path").to_numpy(zero_copy_only=False) == str(png)) \
        .column("patient_key")[0].as_py()
    assert patient and len(img.hits) == 3 and all(h["patient_key"] != patient for h in img.hits)

    done = remove_uids(uri, [uid])
    assert done["removed"] >= 1
    with pytest.raises(InputError, match="not in index"):
        open_index(uri).query(uids=[uid])


def test_milvus_grows_with_the_extraction_and_refuses_bad_uris(extraction: Path, tmp_path: Path) -> None:
    ext = tmp_path / "ext"
    shutil.copytree(extraction, ext)
    uri = f"milvus-lite://{tmp_path}/grow.db/cases"
    first = build_index([ext], uri)
    import pyarrow.parquet as pq

    shard = sorted((ext / "embeddings").glob("part-*.parquet"))[0]
    shutil.copy2(shard, shard.with_name(shard.name.replace("part-", "part-zz-later-")))  # a later run's shard
    grown = build_index([ext], uri)
    assert grown["added_last"] == pq.read_metadata(shard).num_rows
    assert grown["rows"] == first["rows"] + grown["added_last"]
    with pytest.raises(InputError, match="name a collection"):
        open_index("milvus://127.0.0.1:19530/")
    with pytest.raises(InputError, match="no radzoo index in collection 'empty'"):
        open_index(f"milvus-lite://{tmp_path}/none.db/empty")
