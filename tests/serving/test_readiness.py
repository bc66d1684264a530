"""Configured models load at start-up: a broken artifact keeps /readyz at 503 and shows in /models,
while the healthy models serve."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import requests

GOOD = "tiny-random-mococxr"
BROKEN = "tiny-broken-mococxr"


@pytest.fixture(scope="module")
def server(server_factory, serving_home: Path, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("readiness_home")
    shutil.copytree(serving_home / "models" / GOOD, home / "models" / GOOD)
    broken = shutil.copytree(serving_home / "models" / GOOD, home / "models" / BROKEN)
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-16:] = b"\xff" * 16  # corrupt the tensor bytes: the sha256 in config.json no longer matches
    weights.write_bytes(bytes(data))
    return server_factory({"RADZOO_MODELS": f"{GOOD},{BROKEN}", "RADZOO_RUNTIME": "torch"}, home=home,
                          wait_for="/livez")


def test_readyz_reports_the_failed_load(server):
    import time

    deadline = time.monotonic() + 60
    while True:  # start-up loads run in the background: wait until they are decided
        models = requests.get(server.url + "/models", timeout=30).json()
        if models["startup_checked"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 503
    rows = {row["id"]: row for row in models["data"]}
    assert models["ready"] is False
    assert rows[GOOD]["load_error"] is None and rows[GOOD]["loaded"]
    assert "sha256" in rows[BROKEN]["load_error"] and not rows[BROKEN]["loaded"]
    assert "failed to load" in server.log()


def test_healthy_models_still_serve(server, shared_data: Path):
    image = base64.b64encode((shared_data / "cxr_nih" / "images" / "00000129_000.png").read_bytes()).decode()
    ok = requests.post(server.url + "/v1/embeddings", json={"model": GOOD, "input": [image]}, timeout=60)
    assert ok.status_code == 200, ok.text
    bad = requests.post(server.url + "/v1/embeddings", json={"model": BROKEN, "input": [image]}, timeout=60)
    assert bad.status_code == 500 and "sha256" in bad.json()["error"]["message"]
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 503
