"""``POST /classify`` on a real server (``radzoo serve --heads``): a task head trained on real NIH
images answers calibrated probabilities and decisions, as JSON or as a DICOM SR; ``/models``
lists the head, the page shows it; unknown heads and options are clear 4xx answers."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests

import radzoo


@pytest.fixture(scope="module")
def server(server_factory, nih_head):
    return server_factory({}, via="radzoo", cli_args=["--models", "mococxr_resnet18", "--random-weights",
                                                      "--runtime", "torch", "--heads", str(nih_head.folder)])


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_models_lists_the_head_and_page_shows_heads(server, nih_head) -> None:
    body = requests.get(server.url + "/models", timeout=30).json()
    assert "/classify" in body["endpoints"]
    (head,) = body["heads"]
    assert head["id"] == "head" and head["labels"] == ["AP", "Effusion"] and head["base_model"] == "mococxr_resnet18"
    assert set(head["operating_points"]) == {"sens90", "sens95", "spec90", "youden"}
    page = requests.get(server.url + "/ui/app.js", timeout=30).text
    assert "/classify" in page and "head-tools" in requests.get(server.url + "/", timeout=30).text


def test_classify_matches_python_and_reports_bad_items(server, nih_head) -> None:
    images = nih_head.images[:2]
    resp = requests.post(server.url + "/classify", json={"input": [_b64(p) for p in images] + ["bm90IGFuIGltYWdl"],
                                                          "operating_point": "sens90"}, timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["operating_point"] == "sens90" and body["labels"] == ["AP", "Effusion"]
    assert [d["index"] for d in body["data"]] == [0, 1] and body["errors"][0]["index"] == 2
    local = radzoo.load(nih_head.folder, runtime="torch").predict([str(p) for p in images], "sens90")
    served = np.asarray([[d["predictions"][lab]["probability"] for lab in local.labels] for d in body["data"]])
    np.testing.assert_allclose(served, local.probabilities, atol=1e-5)
    assert body["head"]["digest"] == local.head["digest"] and body["precision"] == "fp32" and body["random_weights"]


def test_classify_dicom_sr(server, nih_head, shared_data: Path) -> None:
    dcm = shared_data / "dicom" / "cr_chest_pa_siim_jpegbaseline.dcm"
    resp = requests.post(server.url + "/classify?format=dicom-sr", json={"input": _b64(dcm)}, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/dicom")
    from io import BytesIO

    ds = pydicom.dcmread(BytesIO(resp.content))
    assert ds.Modality == "SR" and ds.SeriesDescription.startswith("radzoo head head")
    png = requests.post(server.url + "/classify?format=dicom-sr", json={"input": _b64(nih_head.images[0])}, timeout=60)
    assert png.status_code == 400 and "needs a DICOM image" in png.json()["error"]["message"]


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"head": "nope"}, 404, "not served"),
    ({"operating_point": "sens99"}, 400, "operating_point"),
])
def test_classify_refusals(server, nih_head, body, status, text) -> None:
    resp = requests.post(server.url + "/classify", json={"input": _b64(nih_head.images[0]), **body}, timeout=60)
    assert resp.status_code == status, resp.text
    assert text in resp.json()["error"]["message"]
