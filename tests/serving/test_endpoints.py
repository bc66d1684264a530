"""``Endpoints`` in-process (no HTTP, no BentoML): each route's logic on the tiny local-zoo models,
and ``answer``, the one place results and errors become responses."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo.errors import CapabilityError, InputError, ModelNotFoundError
from radzoo.io.read_errors import ReadError
from radzoo.serving.endpoints import Endpoints
from radzoo.serving.http_errors import NoUsableItemsError, PayloadTooLargeError, answer, status_for
from radzoo.serving.settings import ServeSettings

MOCO = "tiny-random-mococxr"
PRIOR = "tiny-random-prior"
GRAPHCT = "tiny-random-graphct"


@pytest.fixture(scope="module")
def endpoints(serving_home: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RADZOO_HOME", str(serving_home))
        settings = ServeSettings(models=(MOCO, PRIOR, GRAPHCT), runtime="torch", max_loaded_models=2, max_items=4)
        ep = Endpoints(settings)
        yield ep
        ep.pool.close()


@pytest.fixture(scope="module")
def pngs(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[:3]


@pytest.fixture(scope="module")
def reference(serving_home: Path):
    return {name: radzoo.load(serving_home / "models" / name) for name in (MOCO, PRIOR)}


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_models_lists_capabilities_from_the_spec(endpoints):
    body = endpoints.models()
    rows = {row["id"]: row for row in body["data"]}
    assert set(rows) == {MOCO, PRIOR, GRAPHCT} and body["default_model"] == MOCO
    assert rows[PRIOR]["capabilities"] == sorted(radzoo.spec_of(PRIOR)[0].capabilities)
    assert rows[GRAPHCT]["capabilities"] == ["ct"] and rows[MOCO]["random_weights"] is True
    assert "/v1/embeddings" in body["endpoints"]


def test_embeddings_equal_the_library(endpoints, pngs, shared_data, reference):
    dcm = shared_data / "dicom" / "cr_chest_pa_siim_jpegbaseline.dcm"
    body = endpoints.embeddings({"model": MOCO, "input": [b64(pngs[0]), "data:application/dicom;base64," + b64(dcm)]})
    assert [d["index"] for d in body["data"]] == [0, 1] and body["dim"] == 512 and body["errors"] == []
    want = reference[MOCO].embed([pngs[0], dcm])
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], want, rtol=1e-4, atol=1e-5)
    packed = endpoints.embeddings({"model": MOCO, "input": b64(pngs[0]), "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, want[0], rtol=1e-4, atol=1e-5)


def test_uploads_equal_json(endpoints, pngs):
    by_upload = endpoints.embed_uploads(list(pngs[:2]), MOCO)
    by_json = endpoints.embeddings({"model": MOCO, "input": [b64(p) for p in pngs[:2]]})
    np.testing.assert_allclose([d["embedding"] for d in by_upload["data"]], [d["embedding"] for d in by_json["data"]])
    with pytest.raises(InputError, match="no files uploaded"):
        endpoints.embed_uploads([], MOCO)


def test_per_item_errors_and_all_failed(endpoints, pngs, shared_data):
    body = endpoints.embeddings({"model": MOCO, "input": [b64(pngs[0]), "@@@", "https://example.org/x.png"]})
    assert [d["index"] for d in body["data"]] == [0]
    assert [(e["index"], e["type"]) for e in body["errors"]] == [(1, "InputError"), (2, "InputError")]
    with pytest.raises(NoUsableItemsError) as info:
        endpoints.embeddings({"model": MOCO, "input": [b64(shared_data / "dicom" / "ct_chest_CT1_rle.dcm")]})
    assert status_for(info.value) == 422 and "not a radiograph" in str(info.value)
    assert info.value.errors[0]["index"] == 0


@pytest.mark.parametrize(
    ("fields", "error", "status", "needle"),
    [
        ({"input": []}, InputError, 400, "no images"),
        ({}, InputError, 400, "input"),
        ({"input": 42}, InputError, 400, "input"),
        ({"input": ["x"], "model": "nope"}, ModelNotFoundError, 404, "not served"),
        ({"input": ["x"], "model": GRAPHCT}, CapabilityError, 400, "ct model"),
        ({"input": ["x"], "encoding_format": "int8"}, InputError, 400, "encoding_format"),
        ({"input": ["x"] * 5}, PayloadTooLargeError, 413, "limit of 4"),
    ],
)
def test_bad_requests_raise_what_maps_to_their_status(endpoints, fields, error, status, needle):
    with pytest.raises(error, match=f"(?i){needle}") as info:
        endpoints.embeddings(fields)
    assert status_for(info.value) == status


def test_zero_shot_and_ground(endpoints, pngs, reference):
    labels = ["Atelectasis", "Edema"]
    body = endpoints.zero_shot({"model": PRIOR, "input": [b64(pngs[0])], "labels": labels})
    want = reference[PRIOR].zero_shot([pngs[0]], labels=labels)
    got = [body["data"][0]["probabilities"][label] for label in labels]
    np.testing.assert_allclose(got, want.probabilities[0], rtol=1e-4, atol=1e-5)
    assert body["rule"] == want.rule
    png = endpoints.ground({"model": PRIOR, "image": b64(pngs[1]), "text": "pleural effusion"})
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
    grid = endpoints.ground({"model": PRIOR, "image": b64(pngs[1]), "text": "edema", "response_format": "json"})
    assert grid["heatmap_shape"] == [512, 512]
    with pytest.raises(CapabilityError, match="text tower"):
        endpoints.zero_shot({"model": MOCO, "input": [b64(pngs[0])]})
    with pytest.raises(InputError, match="text"):
        endpoints.ground({"model": PRIOR, "image": b64(pngs[1]), "text": "  "})


def test_ct_features_refuses_non_volumes(endpoints, pngs):
    with pytest.raises(ReadError) as info:
        endpoints.ct_features(pngs[0], GRAPHCT)
    assert status_for(info.value) == 422
    with pytest.raises(CapabilityError, match="graph-CT"):
        endpoints.ct_features(pngs[0], MOCO)


def test_answer_is_the_one_error_mapping():
    ok = answer("t", lambda: {"a": 1})
    assert ok.status_code == 200 and json.loads(ok.body) == {"a": 1}
    png = answer("t", lambda: b"\x89PNG...")
    assert png.media_type == "image/png"

    def bad_input():
        raise InputError("input[0]: nope")

    err = answer("t", bad_input)
    assert err.status_code == 400
    assert json.loads(err.body) == {"error": {"type": "InputError", "message": "input[0]: nope", "status": 400}}

    def bug():
        raise KeyError("secret detail")

    crash = answer("t", bug)
    assert crash.status_code == 500 and "secret" not in crash.body.decode()


def test_texts_and_mixed_items(endpoints, pngs, reference):
    texts = endpoints.embeddings({"model": PRIOR, "input": ["Edema", "Small effusion."], "input_type": "text"})
    assert texts["output"] == "global" and texts["usage"]["texts"] == 2
    np.testing.assert_allclose([d["embedding"] for d in texts["data"]], reference[PRIOR].embed_text(["Edema", "Small effusion."]),
                               rtol=1e-4, atol=1e-5)
    mixed = endpoints.embeddings({"model": MOCO, "input": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(pngs[0])}},
        {"type": "text", "text": "Edema"},
    ]})
    assert [d["index"] for d in mixed["data"]] == [0] and mixed["output"] == "trunk"
    assert mixed["errors"][0]["index"] == 1 and "it offers: embed" in mixed["errors"][0]["message"]
    with pytest.raises(NoUsableItemsError, match="it offers: embed") as info:
        endpoints.embeddings({"model": MOCO, "input": "Edema", "modality": "text"})
    assert status_for(info.value) == 422


def test_display_is_the_decoded_image(endpoints, shared_data):
    from PIL import Image

    data = (shared_data / "dicom" / "cr_chest_RG1_J2KI.dcm").read_bytes()  # MONOCHROME1, 15-bit, 1955x1841
    png = endpoints.display({"image": base64.b64encode(data).decode(), "max_side": 512})
    shown = Image.open(__import__("io").BytesIO(png))
    assert shown.mode == "L" and max(shown.size) == 512 and np.asarray(shown).std() > 10


def test_startup_load_records_failures(serving_home, tmp_path, monkeypatch):
    import shutil

    from radzoo.serving.pool import ModelPool

    home = tmp_path / "home"
    shutil.copytree(serving_home / "models" / MOCO, home / "models" / MOCO)
    broken = shutil.copytree(serving_home / "models" / MOCO, home / "models" / "broken")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setenv("RADZOO_HOME", str(home))
    pool = ModelPool(ServeSettings(models=(MOCO, "broken"), runtime="torch"))
    assert not pool.ready()  # not decided before the start-up loads ran
    pool.preload()
    rows = {row["id"]: row for row in pool.describe()}
    assert not pool.ready() and rows[MOCO]["loaded"] and rows[MOCO]["load_error"] is None
    assert rows["broken"]["load_error"] and not rows["broken"]["loaded"]
    (broken / "model.safetensors").write_bytes((home / "models" / MOCO / "model.safetensors").read_bytes())
    pool.get("broken")  # repaired: the next load clears the error
    assert pool.ready()
    pool.close()
