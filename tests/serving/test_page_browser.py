"""The browser page at ``/`` in real headless Chromium (Debian's chromium + chromedriver, driven by
selenium) against a real server with an API key: real PNG and DICOM uploads, the embedding shown,
zero-shot bars, a loaded non-blank heatmap, errors in words, and the CT panel. Screenshots are
saved under ``$RADZOO_TEST_ARTIFACTS`` (default: a pytest temp folder) and their paths printed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests

KEY = "page-test-key"
PRIOR = "tiny-random-prior"
GRAPHCT = "tiny-random-graphct"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="Debian chromium + chromium-driver are not installed (.ci/run installs them with apt)",
)


@pytest.fixture(scope="module")
def server(server_factory, serving_home):
    return server_factory({"RADZOO_API_KEY": KEY, "RADZOO_MODELS": f"{PRIOR},{GRAPHCT}", "RADZOO_RUNTIME": "torch"},
                          home=serving_home)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("RADZOO_TEST_ARTIFACTS")
    path = Path(root) / "page" if root else tmp_path_factory.mktemp("page_artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,2000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def upload(driver, input_id: str, path: Path) -> str:
    """Choose ``path`` in a file input and wait until the page has finished ("done" or "error")."""
    driver.execute_script("document.body.dataset.state = 'idle'")
    driver.find_element("id", input_id).send_keys(str(path.resolve()))
    return wait(driver, lambda d: d.execute_script("return ['done','error'].includes(document.body.dataset.state) "
                                                   "&& document.body.dataset.state"))


def image_stats(driver, element_id: str) -> dict:
    """Loaded size and pixel spread of an <img>, read back through a canvas."""
    return driver.execute_script("""
        const img = document.getElementById(arguments[0]);
        if (!img.complete || !img.naturalWidth) return {width: 0, std: 0};
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        let n = 0, s = 0, s2 = 0;
        for (let i = 0; i < d.length; i += 16) { const v = (d[i] + d[i+1] + d[i+2]) / 3; n++; s += v; s2 += v * v; }
        const mean = s / n;
        return {width: img.naturalWidth, std: Math.sqrt(Math.max(0, s2 / n - mean * mean))};
    """, element_id)


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def test_page_png_dicom_and_errors(server, browser, artifacts, shared_data, tmp_path):
    from selenium.webdriver.common.keys import Keys

    models = requests.get(server.url + "/models", headers={"X-API-Key": KEY}, timeout=30).json()
    prior_dim = next(row["dim"] for row in models["data"] if row["id"] == PRIOR)

    browser.get(server.url + "/")
    # without the key the page says so in words
    wait(browser, lambda d: d.find_element("id", "error").is_displayed())
    assert "HTTP 401" in text(browser, "error") and "API key" in text(browser, "error")
    key = browser.find_element("id", "api-key")
    key.send_keys(KEY + Keys.TAB)
    wait(browser, lambda d: d.find_element("id", "model").get_attribute("value") == PRIOR)
    assert browser.find_element("id", "random-banner").is_displayed()
    assert "RANDOM WEIGHTS" in text(browser, "random-banner")
    chips = {chip.text for chip in browser.find_elements("css selector", "#capabilities .cap")}
    assert {"embed", "zero_shot", "ground", "text"} <= chips
    assert browser.execute_script("return localStorage.length + sessionStorage.length + document.cookie.length") == 0

    png = shared_data / "cxr_nih" / "images" / "00000282_000.png"
    assert upload(browser, "image-file", png) == "done", text(browser, "error")
    assert int(text(browser, "emb-dim")) == prior_dim
    assert float(text(browser, "emb-norm")) > 0
    assert len(browser.find_elements("css selector", "#zero-shot .bar")) == 5
    assert image_stats(browser, "decoded")["width"] == 512
    heat = image_stats(browser, "heatmap")
    assert heat["width"] > 0 and heat["std"] > 5, heat  # loaded and not blank

    dicom = shared_data / "dicom" / "cr_chest_pa_siim_jpegbaseline.dcm"
    assert upload(browser, "image-file", dicom) == "done", text(browser, "error")
    assert int(text(browser, "emb-dim")) == prior_dim
    decoded = image_stats(browser, "decoded")
    assert decoded["width"] > 0 and decoded["std"] > 5, decoded
    heat = image_stats(browser, "heatmap")
    assert heat["width"] > 0 and heat["std"] > 5, heat
    shot = artifacts / "page_dicom.png"
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot of the page (DICOM + zero-shot + heatmap): {shot}")

    notes = tmp_path / "notes.txt"
    notes.write_text("Findings: no acute cardiopulmonary process.\n")
    assert upload(browser, "image-file", notes) == "error"
    message = text(browser, "error")
    assert "Embedding the image failed (HTTP 422)" in message, message
    assert "cannot read" in message.lower(), message
    browser.save_screenshot(str(artifacts / "page_error.png"))
    print(f"screenshot of the error: {artifacts / 'page_error.png'}")


def test_page_ct_panel_shows_errors_in_words(server, browser, shared_data):
    from selenium.webdriver.support.ui import Select

    browser.get(server.url + "/")
    browser.find_element("id", "api-key").send_keys(KEY + "\t")
    wait(browser, lambda d: d.find_element("id", "model").get_attribute("value") == PRIOR)
    Select(browser.find_element("id", "model")).select_by_value(GRAPHCT)
    assert browser.find_element("id", "ct-section").is_displayed()
    assert not browser.find_element("id", "image-section").is_displayed()
    abdomen = shared_data / "ct" / "totalseg_example_ct_sm.nii.gz"  # a real CT without lungs
    assert upload(browser, "ct-file", abdomen) == "error"
    assert "CT features failed (HTTP 400)" in text(browser, "error") and "lung" in text(browser, "error").lower()


def test_swagger_is_linked_and_served_locally(server, browser):
    browser.get(server.url + "/")
    browser.find_element("link text", "API docs (Swagger)").click()
    wait(browser, lambda d: "/v1/embeddings" in d.find_element("id", "swagger-ui").text, timeout=60)
    assert browser.current_url == server.url + "/docs"
    scripts = browser.execute_script("return [...document.scripts].map(s => s.src).filter(Boolean)")
    assert scripts and all(src.startswith(server.url + "/") for src in scripts)  # nothing from the internet


@pytest.mark.slow  # the chest phantom's registration takes about a minute on 2 busy cores
def test_page_ct_panel_summary(server, browser, artifacts, tmp_path):
    import SimpleITK as sitk
    from selenium.webdriver.support.ui import Select

    from radzoo.ct import chest_phantom

    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(chest_phantom().to_sitk(), str(path))
    browser.get(server.url + "/")
    browser.find_element("id", "api-key").send_keys(KEY + "\t")
    wait(browser, lambda d: d.find_element("id", "model").get_attribute("value") == PRIOR)
    Select(browser.find_element("id", "model")).select_by_value(GRAPHCT)
    assert upload(browser, "ct-file", path) == "done", text(browser, "error")
    assert text(browser, "ct-dim") == "128" and text(browser, "ct-nodes") == "581"
    assert len(browser.find_elements("css selector", "#ct-qa tr")) > 0
    browser.save_screenshot(str(artifacts / "page_ct.png"))
    print(f"\nscreenshot of the CT panel: {artifacts / 'page_ct.png'}")
