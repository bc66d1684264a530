"""The local engine end to end on real PNGs and DICOM edge cases, with a tiny random model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from radzoo.errors import InputError
from radzoo.extract import extract_features, read_table

FAST = {"threads": 1, "quiet": True}


def _by_path(out: Path) -> dict[str, dict]:
    rows = read_table(out, "embeddings").to_pylist()
    by = {r["path"]: r for r in rows}
    assert len(by) == len(rows), "duplicate rows"
    return by


def test_archive_with_bad_files(tiny_model_dir: Path, tiny_model, png_subset: Path, dicom_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = extract_features(str(tiny_model_dir), [png_subset, dicom_copy, dicom_copy / "empty", tmp_path / "nope.png"], out,
                     batch_size=5, workers=1, **FAST)
    assert result.exit_code == 3 and not result.ok
    rows = _by_path(out)
    errors = {Path(r["path"]).name: r for r in read_table(out, "errors").to_pylist()}

    # every real radiograph is embedded (PNGs + CR/DX/OT DICOMs); CT slices are refused per file
    cxr_dicoms = {"cr_chest_pa_siim_jpegbaseline.dcm", "cr_chest_pa_siim_header_monochrome1.dcm",
                  "cr_chest_RG1_J2KI.dcm", "dx_thorax_lateral_canine_mono1.dcm", "ot_deflated_image_dfl.dcm",
                  "ot_voi_lut_sequence_vlut_04.dcm"}
    names = {Path(p).name for p in rows}
    assert names == {p.name for p in png_subset.glob("*.png")} | cxr_dicoms
    assert errors["cr_chest_pa_siim_truncated.dcm"]["error_type"] == "ImageReadError"
    assert "truncated" in errors["cr_chest_pa_siim_truncated.dcm"]["message"]
    assert errors["ct_chest_CT1_rle.dcm"]["error_type"] == "InputError" and "radiograph" in errors["ct_chest_CT1_rle.dcm"]["message"]
    assert errors["MANIFEST.csv"]["skipped"] and errors["MANIFEST.csv"]["error_type"] == "NotAnImage"
    assert errors["empty"]["error_type"] == "EmptyFolder"
    assert errors["nope.png"]["error_type"] == "FileNotFound"
    c = result.counts
    assert (c.written, c.not_images, c.failed) == (18, 1, 8)  # 5 CT + truncated + empty folder + missing

    # row contents: embeddings equal the model's own embed() on the same files; hashes and UIDs
    paths = sorted(rows)
    ref = tiny_model.embed(paths, batch_size=7)
    got = np.stack([np.asarray(rows[p]["embedding"], dtype=np.float32) for p in paths])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    import hashlib

    for p in paths:
        r = rows[p]
        assert r["sha256"] == hashlib.sha256(Path(p).read_bytes()).hexdigest()
        assert r["model"] == "tiny-random-mococxr" and r["output"] == "trunk"
        assert (r["sop_instance_uid"] is not None) == p.endswith(".dcm")
    schema = pq.read_schema(next((out / "embeddings").glob("part-*.parquet")))
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[512]"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["random_weights"] is True
    assert manifest["model"]["revision"] == tiny_model.revision
    assert manifest["model"]["preprocess"] == tiny_model.spec.preprocess.digest()
    assert manifest["rows"] == 18 and manifest["runs"][-1]["counts"]["failed"] == 8

    # resume: nothing redone, nothing duplicated; earlier failures are not retried unless asked
    again = extract_features(str(tiny_model_dir), [png_subset, dicom_copy], out, batch_size=5, workers=0, **FAST)
    assert (again.counts.written, again.counts.already_done, again.counts.previously_failed) == (0, 18, 6)
    assert again.ok and again.exit_code == 0
    os.utime(sorted(png_subset.glob("*.png"))[0])  # touched, same bytes: hashed again, not re-embedded
    retry = extract_features(str(tiny_model_dir), [png_subset, dicom_copy], out, retry_failed=True, workers=0, **FAST)
    assert (retry.counts.written, retry.counts.failed, retry.counts.already_done) == (0, 6, 18)
    assert len(_by_path(out)) == 18 and json.loads((out / "manifest.json").read_text())["rows"] == 18


def test_batch_sizes_and_workers_agree(tiny_model_dir: Path, png_subset: Path, tmp_path: Path) -> None:
    a = extract_features(str(tiny_model_dir), [png_subset], tmp_path / "a", batch_size=1, workers=0, **FAST)
    b = extract_features(str(tiny_model_dir), [png_subset], tmp_path / "b", batch_size=5, workers=2, shard_size=4, **FAST)
    assert a.ok and b.ok
    ra, rb = _by_path(tmp_path / "a"), _by_path(tmp_path / "b")
    assert sorted(ra) == sorted(rb) and len(ra) == 12
    assert len(list((tmp_path / "b" / "embeddings").glob("part-*.parquet"))) >= 3  # shard_size honoured
    for p in ra:
        np.testing.assert_allclose(ra[p]["embedding"], rb[p]["embedding"], rtol=1e-4, atol=1e-5)


def test_pseudonymised_output(tiny_model_dir: Path, dicom_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    secret = "a long hospital secret, never shared"
    r = extract_features(str(tiny_model_dir), [dicom_copy], out, pseudonym_secret=secret, workers=0, **FAST)
    assert r.counts.written == 6
    table = out / "embeddings"
    text = b"".join(p.read_bytes() for p in table.glob("*.parquet")) + (out / "manifest.json").read_bytes()
    text += b"".join(p.read_bytes() for p in (out / "errors").glob("*.parquet"))
    assert str(dicom_copy).encode() not in text and b"cr_chest" not in text and b"1.2.840" not in text
    rows = read_table(out, "embeddings").to_pylist()
    assert all(len(r["path"]) == 32 and len(r["sop_instance_uid"]) == 32 for r in rows)
    again = extract_features(str(tiny_model_dir), [dicom_copy], out, pseudonym_secret=secret, workers=0, **FAST)
    assert again.counts.written == 0 and again.counts.already_done == 6
    with pytest.raises(InputError, match="pseudonymisation secret"):
        extract_features(str(tiny_model_dir), [dicom_copy], out, pseudonym_secret="another secret of enough length", **FAST)
    with pytest.raises(InputError, match="pseudonymisation"):
        extract_features(str(tiny_model_dir), [dicom_copy], out, **FAST)


def test_one_model_per_output_folder(tiny_model_dir: Path, png_subset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract_features(str(tiny_model_dir), [png_subset / "*.png"], out, workers=0, **FAST)
    with pytest.raises(InputError, match="another model"):
        extract_features(str(tiny_model_dir), [png_subset], out, output="proj", workers=0, **FAST)


def test_unreadable_file_is_logged(tiny_model_dir: Path, png_subset: Path, tmp_path: Path) -> None:
    victim = sorted(png_subset.glob("*.png"))[0]
    victim.chmod(0)
    try:
        try:
            victim.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("running with privileges that ignore file permissions (root): chmod 000 does not block reads")
        r = extract_features(str(tiny_model_dir), [png_subset], tmp_path / "out", workers=0, **FAST)
        errors = read_table(tmp_path / "out", "errors").to_pylist()
        assert r.exit_code == 3 and r.counts.written == 11
        assert [e["error_type"] for e in errors] == ["PermissionError"] and victim.name in errors[0]["message"]
    finally:
        victim.chmod(0o644)


def test_output_folder_not_writable(tiny_model_dir: Path, png_subset: Path) -> None:
    from radzoo.extract import OutputError

    with pytest.raises(OutputError, match="cannot write to output folder /dev/full/x"):
        extract_features(str(tiny_model_dir), [png_subset], "/dev/full/x", **FAST)


def test_bad_options_are_named(tiny_model_dir: Path, png_subset: Path, tmp_path: Path) -> None:
    for kwargs, match in [({"batch_size": 0}, "batch_size"), ({"engine": "spark"}, "engine"),
                          ({"workers": -1}, "workers"), ({"address": "x:1"}, "address")]:
        with pytest.raises(InputError, match=match):
            extract_features(str(tiny_model_dir), [png_subset], tmp_path / "o", **FAST, **kwargs)
    with pytest.raises(InputError, match="random_weights"):
        extract_features(str(tiny_model_dir), [png_subset], tmp_path / "o", random_weights=True, **FAST)
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
