"""A second configuration, started with plain ``bentoml serve`` and RADZOO_* variables: API key,
a small body limit, one request in flight, random weights of a registry model; then SIGTERM."""

from __future__ import annotations

import base64
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

KEY = "s3cret-test-key"
MODEL = "mococxr_resnet18"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({
        "RADZOO_API_KEY": KEY,
        "RADZOO_MODELS": MODEL,
        "RADZOO_RANDOM_WEIGHTS": "1",
        "RADZOO_RUNTIME": "auto",
        "RADZOO_MAX_BODY_MB": "1",
        "RADZOO_MAX_IN_FLIGHT": "1",
        "RADZOO_RETRY_AFTER_S": "2",
    })


@pytest.fixture(scope="module")
def images(shared_data: Path) -> list[str]:
    paths = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[:3]
    return [base64.b64encode(p.read_bytes()).decode() for p in paths]


AUTH = {"Authorization": f"Bearer {KEY}"}


def test_auth_required_except_probes(server, images):
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    assert requests.get(server.url + "/livez", timeout=10).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY + "x"}, {"Authorization": KEY}):
        resp = requests.get(server.url + "/models", headers=headers, timeout=10)
        assert resp.status_code == 401, headers
        assert "API key" in resp.json()["error"]["message"]
        resp = requests.post(server.url + "/v1/embeddings", json={"input": images[:1]}, headers=headers, timeout=10)
        assert resp.status_code == 401
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
    # the page and Swagger load without the key (a browser cannot send it with a page load) and hold no data
    for path in ("/", "/ui/app.js", "/ui/style.css", "/docs", "/docs.json"):
        resp = requests.get(server.url + path, timeout=10)
        assert resp.status_code == 200, path
        assert KEY not in resp.text
    assert requests.get(server.url + "/models", headers={"X-API-Key": KEY}, timeout=30).status_code == 200


def test_random_weights_are_marked(server, images):
    rows = requests.get(server.url + "/models", headers=AUTH, timeout=30).json()["data"]
    assert [r["id"] for r in rows] == [MODEL] and rows[0]["random_weights"] is True
    assert rows[0]["loaded"] and rows[0]["load_error"] is None  # loaded at start-up: /readyz vouches for it
    resp = requests.post(server.url + "/v1/embeddings", json={"input": images[:1]}, headers=AUTH, timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == MODEL and body["random_weights"] is True and body["dim"] == 512
    loaded = requests.get(server.url + "/models", headers=AUTH, timeout=30).json()["data"][0]
    assert loaded["loaded"] and loaded["runtime"] == body["runtime"] and loaded["runtime_reason"].startswith("auto")
    # no radzoo bench record in this home: the batcher's size follows the device rule, and says so
    assert loaded["max_batch_size"] == 8 and loaded["max_batch_size_source"].startswith("rule for cpu")


def test_payload_limit(server):
    big = base64.b64encode(b"\0" * (1024 * 1024)).decode()
    resp = requests.post(server.url + "/v1/embeddings", json={"input": [big]}, headers=AUTH, timeout=30)
    assert resp.status_code == 413
    assert "1 MB" in resp.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit applies to bytes received
        yield b'{"input": ["'
        for _ in range(20):
            yield b"A" * 100_000
        yield b'"]}'

    resp = requests.post(server.url + "/v1/embeddings", data=chunks(), timeout=30,
                         headers={**AUTH, "content-type": "application/json"})
    assert resp.status_code == 413


def test_overload_answers_429_with_retry_after(server, images):
    def call(_: int) -> requests.Response:
        return requests.post(server.url + "/v1/embeddings", json={"input": images}, headers=AUTH, timeout=120)

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(call, range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    assert 200 in statuses and 429 in statuses, statuses
    for r in responses:
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "2"
            assert r.json()["error"]["type"] == "Overloaded"
    # the queue drained: the server answers normally again
    assert call(0).status_code == 200


def test_graceful_shutdown_on_sigterm(server):
    """Last test of the module: SIGTERM stops the server cleanly within a few seconds."""
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("server did not exit within 20 s of SIGTERM")
    assert code == 0, server.log()[-2000:]
    assert time.monotonic() - start < 20
    assert "Running cleanup hook: _shutdown" in server.log()
