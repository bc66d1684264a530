"""The whole loop against a real Orthanc: PACS -> radzoo -> TID 1500 SR + Parametric Map -> PACS,
read back over WADO-RS and checked with highdicom, pydicom and dciodvfy; STOW refusals relayed;
nothing identifying in the logs."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pacs_helpers import cli, run_cli

import radzoo
from radzoo.extract import extract_features
from radzoo.pacs import DicomwebSource, InstanceRef, QueryFilters, fetch_dataset, parse_auth

SR_CLASS, PM_CLASS = "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.30"
CR = "cr_chest_pa_siim_jpegbaseline.dcm"


def _source(orthanc: dict, url: str | None = None, **filters) -> DicomwebSource:
    return DicomwebSource.from_url(url or orthanc["url"], auth=parse_auth(orthanc["auth_line"], "t"),
                                   filters=QueryFilters.parse(**filters), retries=1, backoff=0.05)


def _instances_of_class(orthanc: dict, study: str, sop_class: str) -> list[InstanceRef]:
    return [r for r in _source(orthanc, studies=[study]).query().instances if r.sop_class == sop_class]


def test_zero_shot_sr_round_trip(orthanc: dict, prior_dir: Path, tmp_path: Path, dciodvfy, capsys) -> None:
    out_dir, js = tmp_path / "sr", tmp_path / "zs.json"
    code, stdout, err = cli(capsys, "zero-shot", orthanc["url"], "--modality", "CR,DX", "--model", str(prior_dir),
                            "--dicom-sr", str(out_dir), "--stow", orthanc["url"], "--out", str(js),
                            "--pacs-auth-file", str(orthanc["auth_file"]))
    assert code == 0, err
    assert "stored 3 of 3" in stdout
    written = sorted(out_dir.glob("sr-*.dcm"))
    assert len(written) == 3 and not list(out_dir.glob(".tmp-*"))
    for path in written:
        dciodvfy(path)
    report = json.loads(js.read_text())
    probs = {item["image"]: item["probabilities"] for item in report["items"]}
    conn = _source(orthanc).connection
    uids = sorted({v for v in orthanc["stored"].values() if isinstance(v, tuple)})  # two files share one SOP UID
    checked = 0
    for study, series, sop in uids:
        key = f"studies/{study}/series/{series}/instances/{sop}"
        if key not in probs:
            continue
        (ref,) = _instances_of_class(orthanc, study, SR_CLASS)
        ds = fetch_dataset(conn, ref)  # read back over WADO-RS
        assert ds.StudyInstanceUID == study and ds.SeriesInstanceUID != series
        sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
        got = {g.tracking_identifier: g.get_measurements()[0].value for g in sr.content.get_image_measurement_groups()}
        assert got == pytest.approx(probs[key])
        assert [s.source_images[0].referenced_sop_instance_uid for s in sr.content.get_image_measurement_groups()] == [sop] * len(got)
        (evidence,) = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        assert (evidence.SeriesInstanceUID, evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) == (series, sop)
        checked += 1
    assert checked == 3


def test_grounding_pmap_round_trip(orthanc: dict, prior_dir: Path, tmp_path: Path, dciodvfy, capsys) -> None:
    study, series, sop = orthanc["stored"][CR]
    url = f"{orthanc['url']}/studies/{study}/series/{series}/instances/{sop}"
    out_dir, npy = tmp_path / "pm", tmp_path / "heat.npy"
    code, stdout, err = cli(capsys, "ground", url, "Pleural Effusion is observed", "--model", str(prior_dir),
                            "--dicom-pmap", str(out_dir), "--heatmap", str(npy), "--stow", orthanc["url"],
                            "--pacs-auth-file", str(orthanc["auth_file"]))
    assert code == 0, err
    (written,) = out_dir.glob("pm-*.dcm")
    dciodvfy(written)
    (ref,) = _instances_of_class(orthanc, study, PM_CLASS)
    ds = fetch_dataset(_source(orthanc).connection, ref)
    assert ds.SOPInstanceUID == pydicom.dcmread(written, stop_before_pixels=True).SOPInstanceUID
    pm = hd.pm.ParametricMap.from_dataset(ds)
    heat = np.load(npy)
    np.testing.assert_array_equal(pm.pixel_array, heat.astype(np.float32))
    src = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert src.ReferencedSOPInstanceUID == sop
    assert ds.StudyInstanceUID == study and ds.ContentDescription == "Pleural Effusion is observed"


def test_stow_rejection_relays_the_pacs_reason(orthanc: dict, prior_dir: Path, tmp_path: Path, capsys) -> None:
    study, series, sop = orthanc["stored"][CR]
    url = f"{orthanc['url']}/studies/{study}/series/{series}/instances/{sop}"
    out_dir = tmp_path / "pm"
    code, _, err = cli(capsys, "ground", url, "Edema", "--model", str(prior_dir), "--dicom-pmap", str(out_dir),
                       "--stow", f"{orthanc['url']}/studies/1.2.3.999", "--pacs-auth-file", str(orthanc["auth_file"]))
    assert code == 1
    assert "the PACS refused 1 of 1 instance(s) (HTTP 409" in err and "Failure Reason 0x0110 Processing failure" in err
    assert len(list(out_dir.glob("pm-*.dcm"))) == 1 and not list(out_dir.glob(".tmp-*"))  # whole file kept, nothing partial
    # a colour image and a PNG get no SR, with the reason; the others still do
    png = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png)
    code, _, err = cli(capsys, "zero-shot", str(png), "--model", str(prior_dir), "--dicom-sr", str(tmp_path / "sr"))
    assert code == 1 and "--dicom-sr needs DICOM images" in err and not list((tmp_path / "sr").glob("*.dcm"))


def test_results_in_the_pacs_are_skipped_by_extraction(orthanc: dict, moco_dir: Path, tmp_path: Path) -> None:
    """After the round trips above the CR study also holds radzoo's SR and Parametric Map."""
    study = orthanc["stored"][CR][0]
    moco = radzoo.load(moco_dir, device="cpu")
    res = extract_features(moco, _source(orthanc, studies=[study]), tmp_path / "out", quiet=True)
    assert res.counts.written == 1 and res.counts.failed == 0 and res.counts.not_images >= 2


def test_logs_hold_nothing_identifying(orthanc: dict, prior_dir: Path, tmp_path: Path, shared_data: Path) -> None:
    """``radzoo -v`` (DEBUG) over the PACS: no patient names or IDs, no credentials, in any output."""
    done = run_cli("-v", "zero-shot", orthanc["url"], "--modality", "CR,DX,OT", "--model", str(prior_dir),
                   "--dicom-sr", str(tmp_path / "sr"), "--pacs-auth-file", str(orthanc["auth_file"]))
    assert done.returncode == 1, done.stderr  # the colour secondary capture (OT) gets no label
    text = done.stdout + done.stderr
    assert "colour image" in text and "wrote 5 DICOM SR(s)" in text
    assert "DEBUG" in text  # debug logging was on
    for f in ("cr_chest_pa_siim_jpegbaseline.dcm", "cr_chest_RG1_J2KI.dcm", "dx_thorax_lateral_canine_mono1.dcm",
              "ot_voi_lut_sequence_vlut_04.dcm"):
        ds = pydicom.dcmread(shared_data / "dicom" / f, stop_before_pixels=True)
        for value in (str(ds.PatientName), str(ds.PatientID)):
            if len(value) >= 4:
                assert value not in text, (f, value)
    assert "orthanc-test-password" not in text and "Authorization" not in text
