"""The real service over real HTTP: every endpoint, bad inputs, lazy loading/eviction, concurrency.

One server for the module, started with ``radzoo serve`` (no API key, so it must bind
127.0.0.1), at most one loaded model, tiny random-weight models from the local zoo.
"""

from __future__ import annotations

import base64
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

import radzoo

MOCO = "tiny-random-mococxr"
PRIOR = "tiny-random-prior"
GRAPHCT = "tiny-random-graphct"


@pytest.fixture(scope="module")
def server(server_factory, serving_home):
    return server_factory(
        {},
        home=serving_home,
        via="radzoo",
        cli_args=["--models", f"{MOCO},{PRIOR},{GRAPHCT}", "--max-loaded-models", "1", "--runtime", "torch"],
    )


@pytest.fixture(scope="module")
def pngs(shared_data: Path) -> list[Path]:
    paths = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[:8]
    assert len(paths) == 8
    return paths


@pytest.fixture(scope="module")
def dicom(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="module")
def reference(serving_home: Path):
    """The same artifacts loaded in this process: what the server must answer."""

    return {name: radzoo.load(serving_home / "models" / name) for name in (MOCO, PRIOR)}


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def post_embeddings(server, inputs, model=MOCO, **extra) -> requests.Response:
    return requests.post(server.url + "/v1/embeddings", json={"model": model, "input": inputs, **extra}, timeout=60)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def assert_error(resp: requests.Response, status: int, *needles: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    message = body["error"]["message"]
    for needle in needles:
        assert needle.lower() in message.lower(), message
    return body


# ---- discovery, health, lazy loading ---------------------------------------------------------
def test_models_lists_served_entries_checked_at_startup(server):
    resp = requests.get(server.url + "/models", timeout=30, allow_redirects=False)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rows = {row["id"]: row for row in body["data"]}
    assert set(rows) == {MOCO, PRIOR, GRAPHCT}
    # every configured model was loaded once at start-up; the default one stays (max 1 loaded)
    assert body["ready"] is True and not any(row["load_error"] for row in rows.values())
    assert [name for name, row in rows.items() if row["loaded"]] == [MOCO]
    moco = rows[MOCO]
    assert moco["dim"] == 512 and moco["outputs"] == {"trunk": 512, "proj": 128}
    assert moco["license"] and moco["random_weights"] is True and moco["runtime"] == "torch"
    assert moco["capabilities"] == ["embed"] and rows[GRAPHCT]["modality"] == "ct"
    assert rows[PRIOR]["capabilities"] == ["embed", "ground", "text", "zero_shot"]
    assert body["default_model"] == MOCO and body["max_loaded_models"] == 1


def test_health_and_binding(server):
    for path in ("/livez", "/readyz", "/healthz"):
        assert requests.get(server.url + path, timeout=10).status_code == 200
    # no API key configured: the server must listen on loopback only
    assert "listening on http://127.0.0.1:" in server.log()


# ---- /v1/embeddings and /embed ---------------------------------------------------------------
def test_embeddings_match_the_library(server, pngs, dicom, reference):
    dcm = dicom / "cr_chest_pa_siim_jpegbaseline.dcm"
    inputs = [b64(pngs[0]), "data:image/png;base64," + b64(pngs[1]), "data:application/dicom;base64," + b64(dcm)]
    resp = post_embeddings(server, inputs)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list" and body["model"] == MOCO and body["random_weights"] is True
    assert body["usage"]["images"] == 3 and body["errors"] == [] and body["output"] == "trunk"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    want = reference[MOCO].embed([pngs[0], pngs[1], dcm])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_named_output_and_base64_encoding(server, pngs, reference):
    resp = post_embeddings(server, b64(pngs[2]), output="proj", encoding_format="base64")
    assert resp.status_code == 200, resp.text
    item = resp.json()["data"][0]
    vec = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, reference[MOCO].embed([pngs[2]], output="proj")[0], rtol=1e-4, atol=1e-5)
    assert_error(post_embeddings(server, b64(pngs[2]), output="nope"), 400, "no output 'nope'")


def test_multipart_embed_equals_json(server, pngs):
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in pngs[:2]]
    resp = requests.post(server.url + "/embed", files=files, data={"model": MOCO}, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    ref = post_embeddings(server, [b64(p) for p in pngs[:2]]).json()
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], [d["embedding"] for d in ref["data"]],
                               rtol=1e-4, atol=1e-5)
    assert_error(requests.post(server.url + "/embed", data={"model": MOCO}, timeout=30), 400, "no files")


def test_bentoml_client(server, pngs):
    import bentoml

    with bentoml.SyncHTTPClient(server.url) as client:
        result = client.embeddings(input=[b64(pngs[0])], model=MOCO)
    data = result["data"] if isinstance(result, dict) else result.data
    first = data[0]["embedding"] if isinstance(data[0], dict) else data[0].embedding
    assert len(first) == 512


# ---- bad input -------------------------------------------------------------------------------
def test_per_item_errors_do_not_fail_the_others(server, pngs, dicom):
    inputs = [
        b64(pngs[0]),
        "this is not base64 !!",
        b64(dicom / "cr_chest_pa_siim_truncated.dcm"),
        b64(dicom / "ct_chest_CT1_JLSN.dcm"),
        "https://example.org/cxr.png",
        b64(pngs[1]),
    ]
    resp = post_embeddings(server, inputs)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [d["index"] for d in body["data"]] == [0, 5]
    errors = {e["index"]: e for e in body["errors"]}
    assert sorted(errors) == [1, 2, 3, 4]
    assert "base64" in errors[1]["message"]
    assert errors[2]["type"] == "ImageReadError"
    assert "'CT'" in errors[3]["message"] and "radiograph" in errors[3]["message"]
    assert "not fetched" in errors[4]["message"]


@pytest.mark.parametrize(
    ("payload", "status", "needles"),
    [
        ({"input": []}, 400, ["no images"]),
        ({}, 400, ["input"]),
        ({"input": ["x"], "model": "no-such-model"}, 404, ["not served", MOCO]),
        ({"input": ["x"], "model": GRAPHCT}, 400, ["ct model"]),
        ({"input": ["x"], "encoding_format": "int8"}, 400, ["encoding_format"]),
        ({"input": 42}, 400, ["input"]),
    ],
)
def test_bad_requests_get_4xx_json(server, payload, status, needles):
    assert_error(requests.post(server.url + "/v1/embeddings", json=payload, timeout=30), status, *needles)


def test_malformed_json(server):
    resp = requests.post(server.url + "/v1/embeddings", data=b'{"input": [', timeout=30,
                         headers={"content-type": "application/json"})
    assert_error(resp, 400, "malformed JSON")


def test_bad_images_alone_are_422_naming_the_problem(server, dicom):
    assert_error(post_embeddings(server, [b64(dicom / "cr_chest_pa_siim_truncated.dcm")]), 422, "cannot read")
    body = assert_error(post_embeddings(server, [b64(dicom / "ct_chest_CT1_rle.dcm")]), 422, "not a radiograph")
    assert body["errors"][0]["index"] == 0
    assert_error(post_embeddings(server, [base64.b64encode(b"%PDF-1.4 hello").decode()]), 422, "PDF")
    assert_error(post_embeddings(server, [base64.b64encode(png_bomb(60000, 60000)).decode()]), 422, "too large")


def test_server_keeps_serving_after_bad_input(server, pngs):
    assert post_embeddings(server, [b64(pngs[3])]).status_code == 200


def test_no_patient_identifiers_in_logs(server, dicom):
    import pydicom

    path = dicom / "cr_chest_pa_siim_jpegbaseline.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    post_embeddings(server, [b64(path), b64(dicom / "ct_chest_CT1_JLSN.dcm")])
    ct = pydicom.dcmread(dicom / "ct_chest_CT1_JLSN.dcm", stop_before_pixels=True)
    log = server.log()
    for value in (ds.SOPInstanceUID, ds.StudyInstanceUID, ct.SOPInstanceUID, str(ct.get("PatientName", ""))):
        if value and len(str(value)) > 4:
            assert str(value) not in log


# ---- several models, LRU, concurrency, metrics -----------------------------------------------
def loaded(server) -> set[str]:
    return {row["id"] for row in requests.get(server.url + "/models", timeout=30).json()["data"] if row["loaded"]}


def test_lazy_loading_and_lru_eviction(server, pngs, reference):
    assert post_embeddings(server, [b64(pngs[0])], model=MOCO).status_code == 200
    assert loaded(server) == {MOCO}
    resp = post_embeddings(server, [b64(pngs[0])], model=PRIOR)
    assert resp.status_code == 200, resp.text
    np.testing.assert_allclose(resp.json()["data"][0]["embedding"], reference[PRIOR].embed([pngs[0]])[0],
                               rtol=1e-4, atol=1e-5)
    assert loaded(server) == {PRIOR}  # max 1 loaded: the least recently used one was unloaded
    assert post_embeddings(server, [b64(pngs[0])], model=MOCO).status_code == 200
    assert loaded(server) == {MOCO}


def test_concurrent_clients_get_correct_answers(server, pngs):
    encoded = [b64(p) for p in pngs]
    single = {i: np.array(post_embeddings(server, [encoded[i]]).json()["data"][0]["embedding"]) for i in range(len(pngs))}

    def client(worker: int) -> list[tuple[int, int, list[float] | None]]:
        out = []
        with requests.Session() as session:
            for k in range(3):
                i = (worker + k) % len(pngs)
                r = session.post(server.url + "/v1/embeddings", json={"model": MOCO, "input": [encoded[i]]}, timeout=120)
                out.append((r.status_code, i, r.json()["data"][0]["embedding"] if r.status_code == 200 else None))
        return out

    with ThreadPoolExecutor(16) as pool:
        results = [row for rows in pool.map(client, range(16)) for row in rows]
    statuses = [s for s, _, _ in results]
    assert len(results) == 48 and all(s == 200 for s in statuses), statuses
    for _, i, emb in results:
        np.testing.assert_allclose(emb, single[i], rtol=1e-4, atol=1e-4)


def test_prometheus_metrics(server):
    text = requests.get(server.url + "/metrics", timeout=30).text
    assert 'radzoo_items_embedded_total{endpoint="embeddings",model="tiny-random-mococxr"}' in text
    assert 'radzoo_errors_total{endpoint="embeddings",type="ImageReadError"}' in text
    assert "radzoo_model_loads_total" in text


# ---- zero-shot and grounding (image-text models) ---------------------------------------------
def test_zero_shot_names_rule_and_matches_library(server, pngs, reference):
    labels = ["Atelectasis", "Edema"]
    resp = requests.post(server.url + "/zero_shot", timeout=120,
                         json={"model": PRIOR, "input": [b64(pngs[0]), "%%%"], "labels": labels})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    want = reference[PRIOR].zero_shot([pngs[0]], labels=labels)
    assert body["rule"] == want.rule and body["mode"] == want.mode and body["labels"] == labels
    probs = body["data"][0]["probabilities"]
    np.testing.assert_allclose([probs[label] for label in labels], want.probabilities[0], rtol=1e-4, atol=1e-5)
    assert [e["index"] for e in body["errors"]] == [1]
    assert_error(requests.post(server.url + "/zero_shot", json={"model": MOCO, "input": [b64(pngs[0])]}, timeout=60),
                 400, "text tower")
    assert_error(requests.post(server.url + "/zero_shot", json={"model": PRIOR, "input": [b64(pngs[0])],
                                                                "mode": "both"}, timeout=60), 400, "mode")


def test_ground_png_overlay_and_json_map(server, pngs):
    payload = {"model": PRIOR, "image": b64(pngs[1]), "text": "pleural effusion"}
    resp = requests.post(server.url + "/ground", json=payload, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png" and resp.content.startswith(b"\x89PNG")
    resp = requests.post(server.url + "/ground", json={**payload, "response_format": "json"}, timeout=120)
    body = resp.json()
    assert resp.status_code == 200 and body["method"] and body["heatmap_shape"] == [512, 512]
    assert np.isfinite(np.array(body["grid"], dtype=float)).all()
    assert_error(requests.post(server.url + "/ground", json={**payload, "text": " "}, timeout=60), 400, "text")


# ---- lung CT features ------------------------------------------------------------------------
def post_ct(server, path: Path | None, data: bytes | None = None, model: str = GRAPHCT) -> requests.Response:
    content = data if data is not None else path.read_bytes()
    name = path.name if path is not None else "volume.bin"
    return requests.post(server.url + "/ct_features", files={"file": (name, content, "application/octet-stream")},
                         data={"model": model}, timeout=300)


def test_ct_features_bad_inputs(server, shared_data, pngs):
    # a real abdominal CT: no lungs in it, and the answer says so
    assert_error(post_ct(server, shared_data / "ct" / "totalseg_example_ct_sm.nii.gz"), 400, "lung")
    assert_error(post_ct(server, pngs[0]), 422, "cannot read")
    assert_error(post_ct(server, shared_data / "ct" / "totalseg_example_ct_sm.nii.gz", model=MOCO), 400, "graph-CT")


@pytest.mark.slow  # ~1 min on 2 busy cores: registration of a whole synthetic chest
def test_ct_features_of_a_chest_phantom(server, tmp_path):
    import SimpleITK as sitk

    from radzoo.ct import chest_phantom

    volume = chest_phantom()
    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(volume.to_sitk(), str(path))
    resp = post_ct(server, path)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["subject_embedding"]) == 128 and body["n_nodes"] == 581
    assert np.array(body["node_embeddings"]).shape == (581, 128)
    assert "passed" in body and isinstance(body["qa"], dict)
