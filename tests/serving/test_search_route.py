"""POST /v1/search on a real server (API key on): image, uid and text queries, filters, thumbnails,
bad input answered 4xx in the common error shape while the server keeps serving; no paths in logs."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import requests

import radzoo

KEY = "search-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "tiny-random-mococxr"


@pytest.fixture(scope="module")
def search_index(serving_home: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real PNGs and DICOMs embedded by the same artifact the server serves, indexed."""
    from radzoo.extract.api import extract_features
    from radzoo.search import build_index

    root = tmp_path_factory.mktemp("search-route")
    pngs = root / "pngs"
    pngs.mkdir()
    for f in sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[:8]:
        shutil.copy2(f, pngs / f.name)
    model = radzoo.load(serving_home / "models" / MODEL, device="cpu", runtime="torch", threads=1)
    extract_features(model, [pngs, shared_data / "dicom"], root / "ext", workers=0, threads=1, quiet=True,
                     metadata_csv=shared_data / "cxr_nih" / "labels.csv")
    build_index([root / "ext"], root / "index")
    return root / "index"


@pytest.fixture(scope="module")
def server(server_factory, serving_home: Path, search_index: Path):
    return server_factory({"RADZOO_API_KEY": KEY, "RADZOO_MODELS": MODEL, "RADZOO_RUNTIME": "torch",
                           "RADZOO_INDEX": str(search_index)}, home=serving_home)


def _post(server, body: dict, headers: dict | None = None) -> requests.Response:
    return requests.post(server.url + "/v1/search", json=body, headers=AUTH if headers is None else headers, timeout=120)


def test_image_query_with_thumbnails_and_patient_exclusion(server, search_index: Path) -> None:
    from radzoo.search import open as open_index

    png = sorted((search_index.parent / "pngs").glob("*.png"))[2]
    b64 = base64.b64encode(png.read_bytes()).decode()
    r = _post(server, {"image": b64, "k": 3, "thumbnails": True})
    assert r.status_code == 200, r.text
    body = r.json()
    [result] = body["data"]
    assert result["query"] == "image[0]" and [h["rank"] for h in result["hits"]] == [1, 2, 3]
    top = result["hits"][0]
    assert top["path"] == str(png) and top["score"] > 0.999
    assert top["thumbnail"].startswith("data:image/png;base64,")
    assert body["model"]["model"] == MODEL and body["timing_ms"]["embed"] > 0
    r = _post(server, {"image": b64, "k": 3, "exclude_same_patient": True})
    assert all(h["patient_key"] != top["patient_key"] for h in r.json()["data"][0]["hits"])
    uid = next(row["sop_instance_uid"] for row in open_index(search_index).keys.to_pylist() if row["modality"] == "CR")
    r = _post(server, {"uid": uid, "k": 5, "filters": {"modality": ["CR", "DX"]}})
    assert r.status_code == 200 and all(h["modality"] in ("CR", "DX") for h in r.json()["data"][0]["hits"])
    from radzoo.search import remove_uids

    remove_uids(search_index, [uid])  # a retracted image: gone from the running server's answers at once
    r = _post(server, {"uid": uid, "k": 5})
    assert r.status_code == 400 and "is not in index" in r.json()["error"]["message"]
    log = server.log()
    assert png.name not in log and uid not in log and str(search_index) not in log


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"uid": "1.2", "k": 0}, 400, "k must be an integer from 1 to 1000, got 0"),
    ({"uid": "1.2", "k": 5000}, 400, "got 5000"),
    ({"uid": "1.2", "filters": {"colour": "red"}}, 400, "unknown filter field 'colour'"),
    ({"uid": "9.9.9.not-indexed"}, 400, "uid '9.9.9.not-indexed' is not in index"),
    ({"text": "moderate left pleural effusion"}, 400, "Models that can:"),
    ({"k": 3}, 400, "give 'image', 'text' or 'uid'"),
    ({"image": "bm90IGFuIGltYWdl"}, 422, "none of the 1 images could be used"),
])
def test_bad_queries_get_4xx_and_the_server_keeps_serving(server, body: dict, status: int, message: str) -> None:
    r = _post(server, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and message in err["message"]
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200


def test_auth_and_models_route_shows_the_index(server) -> None:
    assert _post(server, {"uid": "x"}, headers={}).status_code == 401
    models = requests.get(server.url + "/models", headers=AUTH, timeout=10).json()
    assert "/v1/search" in models["endpoints"]
    index = models["index"]
    assert index["available"] and index["model"]["model"] == MODEL and index["rows"] > 8
    assert index["backend"] == "faiss-exact" and "modality" in index["filters"]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                    reason="Debian chromium + chromium-driver are not installed (.ci/run installs them with apt)")
def test_page_similar_cases_panel(server, search_index: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1400,2000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(server.url + "/")
        driver.find_element("id", "api-key").send_keys(KEY + Keys.TAB)
        wait = WebDriverWait(driver, 180, poll_frequency=0.2)
        wait.until(lambda d: d.find_element("id", "model").get_attribute("value") == MODEL)
        assert driver.find_element("id", "similar-tools").is_displayed()
        png = sorted((search_index.parent / "pngs").glob("*.png"))[0]
        driver.execute_script("document.body.dataset.state = 'idle'")
        driver.find_element("id", "image-file").send_keys(str(png.resolve()))
        state = wait.until(lambda d: d.execute_script(
            "return ['done','error'].includes(document.body.dataset.state) && document.body.dataset.state"))
        assert state == "done", driver.find_element("id", "error").text
        rows = driver.find_elements("css selector", "#similar-table tbody tr")
        assert len(rows) == 10
        assert wait.until(lambda d: d.execute_script(
            "const i = document.querySelector('#similar-table img.thumb'); return i && i.complete && i.naturalWidth"))
    finally:
        driver.quit()
