"""``/zero_shot?format=dicom-sr`` and ``/ground?format=dicom-pmap`` on a real server: DICOM objects
(``application/dicom``) that highdicom reads back, and clear 4xx answers for what cannot be one."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests

PRIOR = "tiny-random-prior"


@pytest.fixture(scope="module")
def server(server_factory, serving_home):
    return server_factory({}, home=serving_home, via="radzoo",
                          cli_args=["--models", PRIOR, "--runtime", "torch"])


@pytest.fixture(scope="module")
def cr(shared_data: Path) -> Path:
    path = shared_data / "dicom" / "cr_chest_pa_siim_jpegbaseline.dcm"
    if not path.is_file():
        pytest.skip("shared DICOM data missing")
    return path


def b64(path: Path) -> str:
    return "data:application/dicom;base64," + base64.b64encode(path.read_bytes()).decode()


def test_zero_shot_as_dicom_sr(server, cr: Path) -> None:
    body = {"model": PRIOR, "input": b64(cr)}
    plain = requests.post(server.url + "/zero_shot", json=body, timeout=120).json()
    resp = requests.post(server.url + "/zero_shot?format=dicom-sr", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/dicom")
    ds = pydicom.dcmread(io.BytesIO(resp.content))
    source = pydicom.dcmread(cr, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and ds.StudyInstanceUID == source.StudyInstanceUID
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    got = {g.tracking_identifier: g.get_measurements()[0].value for g in sr.content.get_image_measurement_groups()}
    assert got == pytest.approx(plain["data"][0]["probabilities"])


def test_ground_as_parametric_map(server, cr: Path) -> None:
    resp = requests.post(server.url + "/ground?format=dicom-pmap",
                         json={"model": PRIOR, "image": b64(cr), "text": "Pleural Effusion is observed"}, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/dicom")
    ds = pydicom.dcmread(io.BytesIO(resp.content))
    pm = hd.pm.ParametricMap.from_dataset(ds)
    source = pydicom.dcmread(cr, stop_before_pixels=True)
    assert pm.pixel_array.dtype == np.float32 and pm.pixel_array.shape == (source.Rows, source.Columns)
    ref = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_what_cannot_be_a_dicom_result_is_a_clear_4xx(server, cr: Path, shared_data: Path) -> None:
    png = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[0]
    png_b64 = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    cases = [
        ("/zero_shot?format=dicom-sr", {"model": PRIOR, "input": png_b64}, "needs a DICOM image"),
        ("/zero_shot?format=dicom-sr", {"model": PRIOR, "input": [b64(cr), b64(cr)]}, "one DICOM object from one image"),
        ("/zero_shot?format=xml", {"model": PRIOR, "input": b64(cr)}, "format must be"),
        ("/ground?format=dicom-pmap", {"model": PRIOR, "image": b64(shared_data / "dicom" / "cr_chest_RG1_J2KI.dcm"),
                                       "text": "Edema"}, "no usable pixel spacing"),
    ]
    for route, body, needle in cases:
        resp = requests.post(server.url + route, json=body, timeout=120)
        assert 400 <= resp.status_code < 500, (route, resp.status_code, resp.text)
        assert needle in resp.text, (route, resp.text)
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200  # still serving
