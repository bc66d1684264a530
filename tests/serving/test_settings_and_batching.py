"""In-process pieces of the service: settings parsing, payload decoding, API-key check, batching."""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
import pytest

from radzoo.errors import InputError
from radzoo.serving.batching import Batcher
from radzoo.serving.guard import api_key_matches
from radzoo.serving.payloads import decode_image_string
from radzoo.serving.settings import ServeSettings


def test_settings_from_env_file_and_round_trip(tmp_path):
    cfg = tmp_path / "serve.toml"
    cfg.write_text('models = ["a", "b"]\nmax_loaded_models = 3\nruntime = "onnx"\n')
    env = {"RADZOO_SERVE_CONFIG": str(cfg), "RADZOO_RUNTIME": "torch", "RADZOO_RANDOM_WEIGHTS": "yes",
           "RADZOO_MAX_BODY_MB": "2.5"}
    s = ServeSettings.from_env(env)
    assert s.models == ("a", "b") and s.max_loaded_models == 3 and s.runtime == "torch"  # env beats file
    assert s.random_weights is True and s.max_body_bytes == int(2.5 * 1024 * 1024)
    assert s.resolved_default_model() == "a" and s.bind_host == "127.0.0.1"
    assert ServeSettings.from_env(s.to_env()) == s
    assert s.with_(api_key="k").bind_host == "0.0.0.0"
    assert s.with_(api_key="k", host="10.0.0.1").bind_host == "10.0.0.1"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RADZOO_RUNTIME": "tensorrt"}, "runtime"),
        ({"RADZOO_MAX_LOADED_MODELS": "0"}, "max_loaded_models"),
        ({"RADZOO_MAX_IN_FLIGHT": "many"}, "RADZOO_MAX_IN_FLIGHT"),
        ({"RADZOO_RANDOM_WEIGHTS": "maybe"}, "boolean"),
        ({"RADZOO_MODELS": "a", "RADZOO_DEFAULT_MODEL": "b"}, "default model"),
        ({"RADZOO_SERVE_CONFIG": "/nonexistent/serve.json"}, "does not exist"),
    ],
)
def test_bad_settings_name_the_problem(env, needle):
    with pytest.raises(InputError, match=needle):
        ServeSettings.from_env(env)


def test_decode_image_strings():
    raw = b"\x89PNG\r\n\x1a\nabc"
    text = base64.b64encode(raw).decode()
    assert decode_image_string(text, 0) == raw
    assert decode_image_string("data:image/png;base64," + text, 0) == raw
    assert decode_image_string(text.rstrip("="), 0) == raw  # missing padding is tolerated
    for bad, needle in [("", "empty"), ("@@@", "base64"), ("data:text/plain;base64,QQ==", "text/plain"),
                        ("data:image/png,abc", "base64"), ("http://host/x.png", "not fetched")]:
        with pytest.raises(InputError, match=needle):
            decode_image_string(bad, 3)


def test_api_key_headers():
    key = "k3y"
    assert api_key_matches({b"authorization": b"Bearer k3y"}, key)
    assert api_key_matches({b"x-api-key": b"k3y"}, key)
    assert not api_key_matches({b"authorization": b"Bearer k3"}, key)
    assert not api_key_matches({b"authorization": b"k3y"}, key)
    assert not api_key_matches({}, key)


def test_batcher_combines_concurrent_requests_and_keeps_order():
    calls: list[int] = []

    def run(batch: np.ndarray, output: str) -> np.ndarray:
        calls.append(len(batch))
        time.sleep(0.05)  # a slow forward pass lets requests queue up behind it
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True) * (2 if output == "double" else 1)

    batcher = Batcher(run, max_batch_size=8)
    results: dict[int, np.ndarray] = {}

    def client(i: int) -> None:
        results[i] = batcher.submit(np.full((1, 2), float(i), dtype=np.float32), "double" if i % 2 else "plain")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(16):
        assert results[i][0, 0] == pytest.approx(2 * i * (2 if i % 2 else 1))
    assert sum(calls) == 16 and len(calls) < 16 and max(calls) <= 8  # batched, never over the limit
    batcher.close()
    # after close, a late submit still runs (inline)
    assert batcher.submit(np.ones((1, 2), dtype=np.float32), "plain")[0, 0] == 2


def test_batcher_propagates_errors_to_the_caller():
    def run(batch: np.ndarray, output: str) -> np.ndarray:
        raise InputError("bad output")

    batcher = Batcher(run)
    with pytest.raises(InputError, match="bad output"):
        batcher.submit(np.zeros((1, 1), dtype=np.float32), "x")
    batcher.close()


def test_url_allow_list_and_refusals():
    from radzoo.serving.request_items import request_kind
    from radzoo.serving.url_fetch import UrlFetcher

    fetcher = UrlFetcher(ServeSettings(url_allow_hosts=("pacs.local", "img.example.org:8443", "*.hospital.org")))
    assert fetcher.allowed("pacs.local", 80) and fetcher.allowed("PACS.local", 8080)
    assert fetcher.allowed("img.example.org", 8443) and not fetcher.allowed("img.example.org", 443)
    assert fetcher.allowed("xr.hospital.org", 443) and not fetcher.allowed("hospital.org.evil.com", 443)
    assert not fetcher.allowed("evilhospital.org", 443) and not fetcher.allowed("10.0.0.1", 80)
    for url, needle in [("ftp://pacs.local/x", "only http"), ("http://u:p@pacs.local/x", "credentials"),
                        ("http://169.254.169.254/latest", "allow-list")]:
        with pytest.raises(InputError, match=needle):
            fetcher.fetch(url, 2)
    with pytest.raises(InputError, match="not fetched"):
        UrlFetcher(ServeSettings()).fetch("https://example.org/x.png", 0)
    assert request_kind(None, None) == "image" and request_kind("text", None) == "text"
    with pytest.raises(InputError, match="disagree"):
        request_kind("text", "image")
    env = ServeSettings(url_allow_hosts=("a", "b:1")).to_env()
    assert env["RADZOO_URL_ALLOW_HOSTS"] == "a,b:1" and ServeSettings.from_env(env).url_allow_hosts == ("a", "b:1")


def test_guard_does_not_keep_the_request_body_after_handing_it_over():
    """BentoML keeps a finished request's ``receive`` referenced (keep-alive); the guard's buffered
    body must not stay reachable from it (that grew the server by the body size per request)."""
    import asyncio
    import gc

    from radzoo.serving.guard import RequestGuard

    body = b'{"input": "' + b"A" * 300_000 + b'"}'
    kept: list = []

    async def app(scope, receive, send):
        message = await receive()
        assert message["body"] == body
        kept.append(receive)  # as the framework does
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        pass

    scope = {"type": "http", "path": "/v1/embeddings", "method": "POST",
             "headers": [(b"content-type", b"application/json")]}
    asyncio.run(RequestGuard(app, ServeSettings())(scope, receive, send))
    (replay,) = kept
    reachable = [cell.cell_contents for cell in replay.__closure__ or ()]
    reachable += [o for c in reachable for o in gc.get_referents(c)]
    assert not any(isinstance(o, bytes) and len(o) >= len(body) for o in reachable)


def test_max_batch_size_unset_means_measured_and_explicit_wins():
    assert ServeSettings().max_batch_size is None
    assert ServeSettings.from_env({"RADZOO_MAX_BATCH_SIZE": "4"}).max_batch_size == 4
    assert ServeSettings.from_mapping({"max_batch_size": None}).max_batch_size is None
