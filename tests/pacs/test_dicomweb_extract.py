"""``radzoo extract`` / ``radzoo embed`` from a real Orthanc over DICOMweb: rows keyed by UIDs, the
same embeddings as from disk, resume on UIDs without transfer, filters, pseudonymisation, the
errors table, unreachable PACS, refused credentials and retried 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from flaky_proxy import FlakyProxy
from pacs_helpers import cli

import radzoo
from radzoo.extract import extract_features, read_table
from radzoo.pacs import DicomwebSource, QueryFilters, parse_auth

#: CXR-modality images a chest X-ray model embeds (the siim CR is stored once for its two headers)
IMAGES = {"cr_chest_pa_siim_jpegbaseline.dcm", "cr_chest_RG1_J2KI.dcm", "dx_thorax_lateral_canine_mono1.dcm",
          "ot_deflated_image_dfl.dcm", "ot_voi_lut_sequence_vlut_04.dcm"}
CT = {"ct_chest_CT1_JLSN.dcm", "ct_chest_CT1_rle.dcm", "ct_localizer_MAROTECH_J2K.dcm", "ct_enhanced_multiframe_eCT.dcm"}


@pytest.fixture(scope="module")
def moco(moco_dir: Path):
    return radzoo.load(moco_dir, device="cpu")


def _key(uids) -> str:
    study, series, sop = uids
    return f"studies/{study}/series/{series}/instances/{sop}"


def _rows(out: Path) -> dict[str, dict]:
    return {r["path"]: r for r in read_table(out, "embeddings").to_pylist()}


def _errors(out: Path) -> dict[str, dict]:
    table = read_table(out, "errors")
    return {r["path"]: r for r in table.to_pylist()} if table is not None else {}


def test_extract_keys_rows_by_uids_and_matches_disk(orthanc: dict, pacs_source, moco, shared_data: Path, tmp_path: Path) -> None:
    stored = orthanc["stored"]
    out = tmp_path / "pacs"
    result = extract_features(moco, pacs_source(), out, batch_size=2, quiet=True)
    rows = _rows(out)
    assert set(rows) == {_key(stored[f]) for f in IMAGES}
    for path, row in rows.items():
        study, series, sop = stored_uids = next(stored[f] for f in IMAGES if _key(stored[f]) == path)
        assert (row["study_instance_uid"], row["series_instance_uid"], row["sop_instance_uid"]) == stored_uids
        assert row["mtime_ns"] is None and row["size"] > 0
    errors = _errors(out)
    for f in CT:  # a chest X-ray model refuses CT slices (the multi-frame one included), as from disk
        assert errors[_key(stored[f])]["error_type"] == "InputError"
        assert "not a radiograph" in errors[_key(stored[f])]["message"]
    colour = _key(stored["SC_rgb_rle_2frame.dcm"])  # colour, 2 frames: frame 0 is read, colour is refused
    assert errors[colour]["error_type"] == "ImageReadError" and "colour" in errors[colour]["message"].lower()
    sr_study = stored["reportsi.dcm"][0]
    assert errors[_key(stored["reportsi.dcm"])]["skipped"]  # the SR itself: not an image, skipped
    assert errors[f"studies/{sr_study}"]["error_type"] == "NoImages"  # its study holds no image at all
    c = result.counts
    assert (c.inputs, c.written, c.not_images, c.failed) == (11, 5, 1, 6)
    assert result.exit_code == 3
    # WADO-RS brings the stored bytes (J2K stays J2K): the readers decode the same pixels as from disk
    from radzoo.io import read_image
    from radzoo.pacs import InstanceRef, fetch_instance

    j2k = InstanceRef(*stored["cr_chest_RG1_J2KI.dcm"])
    fetched = read_image(fetch_instance(pacs_source().connection, j2k))
    assert fetched.transfer_syntax == "1.2.840.10008.1.2.4.91"
    np.testing.assert_array_equal(fetched.pixels, read_image(shared_data / "dicom" / "cr_chest_RG1_J2KI.dcm").pixels)
    # and the same embeddings (up to batch-size rounding)
    disk = tmp_path / "disk"
    extract_features(moco, [str(shared_data / "dicom" / f) for f in sorted(IMAGES)], disk, quiet=True)
    by_sop = {r["sop_instance_uid"]: np.asarray(r["embedding"]) for r in read_table(disk, "embeddings").to_pylist()}
    for row in rows.values():
        np.testing.assert_allclose(np.asarray(row["embedding"]), by_sop[row["sop_instance_uid"]], rtol=1e-4, atol=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs"][-1]["options"]["inputs"] == [orthanc["url"]]
    assert manifest["runs"][-1]["options"]["dicomweb"]["authentication"] == "basic"
    assert "orthanc-test-password" not in (out / "manifest.json").read_text()


def test_resume_works_on_uids_without_transfer(orthanc: dict, moco, tmp_path: Path) -> None:
    proxy = FlakyProxy(orthanc["server"].base)
    try:
        source = DicomwebSource.from_url(proxy.url + "/dicom-web", auth=parse_auth(orthanc["auth_line"], "t"),
                                         filters=QueryFilters.parse(modality="CR,DX"), backoff=0.01)
        out = tmp_path / "out"
        first = extract_features(moco, source, out, quiet=True)
        assert first.counts.written == 3 and proxy.counts["wado"] == 3
        proxy.counts.clear()
        again = extract_features(moco, source, out, quiet=True)
        assert again.counts.written == 0 and again.counts.already_done == 3
        assert proxy.counts["wado"] == 0  # done instances are never fetched again
        assert len(read_table(out, "embeddings")) == 3
    finally:
        proxy.close()


def test_filters_study_series_modality_since(orthanc: dict, pacs_source, moco, tmp_path: Path) -> None:
    stored = orthanc["stored"]
    ct_study, ct_series, _ = stored["ct_chest_CT1_JLSN.dcm"]
    refs = pacs_source(studies=[ct_study]).query().instances
    assert {r.sop for r in refs} == {stored[f][2] for f in ("ct_chest_CT1_JLSN.dcm", "ct_chest_CT1_rle.dcm")}
    assert len(pacs_source(series=[ct_series], modality="CT").query().instances) == 2
    assert {r.modality for r in pacs_source(modality="CR,DX").query().instances} == {"CR", "DX"}
    since = {r.sop for r in pacs_source(since="2010-01-01").query().instances}
    assert stored["dx_thorax_lateral_canine_mono1.dcm"][2] in since  # 2020
    assert stored["ct_chest_CT1_JLSN.dcm"][2] not in since  # 2004
    url = f"{orthanc['url']}/studies/{ct_study}/series/{ct_series}"
    assert len(pacs_source(url).query().instances) == 2
    missing = pacs_source(studies=["1.2.3.4.5"]).query()
    assert not missing.instances and missing.problems[0][:2] == ("studies/1.2.3.4.5", "NoMatch")
    out = tmp_path / "out"
    res = extract_features(moco, pacs_source(studies=["1.2.3.4.5", stored["dx_thorax_lateral_canine_mono1.dcm"][0]]), out, quiet=True)
    assert res.counts.written == 1 and _errors(out)["studies/1.2.3.4.5"]["error_type"] == "NoMatch"


def test_pseudonymised_keys_hide_every_uid(orthanc: dict, moco_dir: Path, tmp_path: Path, capsys) -> None:
    key = tmp_path / "secret.key"
    key.write_text("a-long-pseudonymisation-secret-for-tests")
    out = tmp_path / "out"
    argv = ("extract", orthanc["url"], "--model", str(moco_dir), "--out", str(out), "--modality", "CR,DX",
            "--pacs-auth-file", str(orthanc["auth_file"]), "--pseudonymize-key-file", str(key), "-q")
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    stored = orthanc["stored"]
    table = pq.read_table(next((out / "embeddings").glob("part-*.parquet")))
    assert table.num_rows == 3
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    for f in ("cr_chest_pa_siim_jpegbaseline.dcm", "dx_thorax_lateral_canine_mono1.dcm", "cr_chest_RG1_J2KI.dcm"):
        for uid in stored[f]:
            assert uid.encode() not in blob
    # resume still works on the pseudonymised keys
    code, _, err = cli(capsys, *argv)
    assert code == 0 and "0 written, 3 already done" in err


def test_unreachable_pacs_and_refused_credentials(orthanc: dict, moco_dir: Path, tmp_path: Path, capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from orthanc_server import free_port

    monkeypatch.delenv("RADZOO_PACS_AUTH", raising=False)
    code, _, err = cli(capsys, "extract", f"http://127.0.0.1:{free_port()}/dicom-web", "--model", str(moco_dir),
                       "--out", str(tmp_path / "a"), "--pacs-retries", "1", "-q")
    assert code == 1 and "cannot reach the PACS" in err and "connection refused" in err
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("basic radzoo-test:not-the-password\n")
    code, out, err = cli(capsys, "extract", orthanc["url"], "--model", str(moco_dir), "--out", str(tmp_path / "b"),
                         "--pacs-auth-file", str(wrong), "-q")
    assert code == 1 and "HTTP 401" in err and f"file {wrong}" in err
    assert "not-the-password" not in err + out
    code, _, err = cli(capsys, "extract", orthanc["url"], "--model", str(moco_dir), "--out", str(tmp_path / "c"), "-q")
    assert code == 1 and "no credentials were given" in err
    monkeypatch.setenv("RADZOO_PACS_AUTH", orthanc["auth_line"])
    code, _, err = cli(capsys, "extract", orthanc["url"], "--model", str(moco_dir), "--out", str(tmp_path / "d"),
                       "--modality", "DX", "-q")
    assert code == 0, err
    assert not list((tmp_path / "a").glob("embeddings/part-*")) and not list((tmp_path / "b").glob("embeddings/part-*"))


def test_5xx_is_retried_and_a_failing_instance_is_an_error_row(orthanc: dict, moco, tmp_path: Path) -> None:
    stored = orthanc["stored"]
    proxy = FlakyProxy(orthanc["server"].base)
    try:
        proxy.fail_first = 2  # two 503s: retried with backoff, then served
        proxy.always_fail = {stored["cr_chest_RG1_J2KI.dcm"][2]}  # 500 every time: an error row after retries
        source = DicomwebSource.from_url(proxy.url + "/dicom-web", auth=parse_auth(orthanc["auth_line"], "t"),
                                         filters=QueryFilters.parse(modality="CR,DX"), retries=2, backoff=0.01,
                                         concurrency=2)
        out = tmp_path / "out"
        res = extract_features(moco, source, out, quiet=True)
        assert res.counts.written == 2 and res.counts.failed == 1
        err = _errors(out)[_key(stored["cr_chest_RG1_J2KI.dcm"])]
        assert err["error_type"] == "PacsError" and "HTTP 500" in err["message"] and "3 attempts" in err["message"]
        assert proxy.counts["wado"] == 2 + 3 + 2  # 2 retried 503s, 3 attempts at the failing one, 2 served
    finally:
        proxy.close()


def test_embed_command_reads_dicomweb(orthanc: dict, moco_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "emb.csv"
    code, _, err = cli(capsys, "embed", orthanc["url"], "--model", str(moco_dir), "--modality", "CR,DX", "--out", str(out),
                       "--pacs-auth-file", str(orthanc["auth_file"]))
    assert code == 0, err
    names = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    stored = orthanc["stored"]
    assert sorted(names) == sorted(_key(stored[f]) for f in ("cr_chest_pa_siim_jpegbaseline.dcm", "cr_chest_RG1_J2KI.dcm",
                                                             "dx_thorax_lateral_canine_mono1.dcm"))
