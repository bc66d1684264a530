"""/v1/embeddings in the shapes other servers' clients send, through the real ``openai`` client where it
can express them (raw HTTP elsewhere); text embeddings; allow-listed URLs; and the bad inputs of
issue 17. One server (``radzoo serve``) for the module, plus a small local HTTP server holding
images for the URL cases."""

from __future__ import annotations

import base64
import http.server
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

import radzoo

MOCO = "tiny-random-mococxr"
PRIOR = "tiny-random-prior"
LOVT = "tiny-random-lovt"
URL_LIMIT_MB = 0.5


@pytest.fixture(scope="module")
def cxr_png(shared_data: Path) -> bytes:
    return (shared_data / "cxr_nih" / "images" / "00000129_000.png").read_bytes()


@pytest.fixture(scope="module")
def image_host(cxr_png: bytes):
    """A local HTTP server: /cxr.png, /big.png (over the URL limit), /slow.png (drips), /moved."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/cxr.png")
                self.end_headers()
                return
            body = {"/cxr.png": cxr_png, "/big.png": b"\0" * int(URL_LIMIT_MB * 4 * 1024 * 1024),
                    "/slow.png": cxr_png}.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            if self.path != "/big.png":  # the big one is chunked: the limit must hold on bytes received
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if self.path == "/slow.png":
                    for start in range(0, len(body), 1000):
                        self.wfile.write(body[start:start + 1000])
                        self.wfile.flush()
                        time.sleep(0.3)
                else:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(server_factory, serving_home, image_host):
    host = image_host.removeprefix("http://")
    return server_factory(
        {"RADZOO_URL_MAX_MB": str(URL_LIMIT_MB), "RADZOO_URL_TIMEOUT_S": "2"},
        home=serving_home,
        via="radzoo",
        cli_args=["--models", f"{MOCO},{PRIOR},{LOVT}", "--runtime", "torch", "--max-loaded-models", "3",
                  "--url-allow-hosts", host],
    )


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="unused-here", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def reference(serving_home: Path):
    return {name: radzoo.load(serving_home / "models" / name) for name in (MOCO, PRIOR, LOVT)}


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


def png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((height, width), 128, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def post(server, **body) -> requests.Response:
    return requests.post(server.url + "/v1/embeddings", json=body, timeout=120)


def vectors(response) -> np.ndarray:
    return np.array([d.embedding for d in response.data], dtype=np.float32)


# ---- the shapes, through the openai client ------------------------------------------------------
def test_openai_client_images(client, cxr_png, reference):
    """OpenAI's own shape (base64 / data URLs in input); the client asks for base64 floats by default."""
    want = reference[MOCO].embed([cxr_png])
    got = client.embeddings.create(model=MOCO, input=[base64.b64encode(cxr_png).decode(), data_url(cxr_png)])
    np.testing.assert_allclose(vectors(got), np.repeat(want, 2, axis=0), rtol=1e-4, atol=1e-5)
    floats = client.embeddings.create(model=MOCO, input=data_url(cxr_png), encoding_format="float")
    np.testing.assert_allclose(vectors(floats), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [PRIOR, LOVT])
def test_openai_client_texts_in_the_joint_space(client, name, reference):
    texts = ["Pleural effusion is observed.", "No acute cardiopulmonary process."]
    got = client.embeddings.create(model=name, input=texts, extra_body={"input_type": "text"})
    assert got.model == name and len(got.data) == 2
    np.testing.assert_allclose(vectors(got), reference[name].embed_text(texts), rtol=1e-4, atol=1e-5)


def test_openai_client_vllm_items_mixed(client, cxr_png, reference):
    """vLLM / OpenAI-chat content parts: image_url and text items in one request, one joint space."""
    items = [{"type": "image_url", "image_url": {"url": data_url(cxr_png)}}, {"type": "text", "text": "Edema"}]
    got = client.embeddings.create(model=PRIOR, input=items)
    joint = vectors(got)
    np.testing.assert_allclose(joint[0], reference[PRIOR].embed([cxr_png], output="global")[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(joint[1], reference[PRIOR].embed_text(["Edema"])[0], rtol=1e-4, atol=1e-5)


def test_openai_client_infinity_modality_with_urls(client, image_host, cxr_png, reference):
    """Infinity's shape: modality=image with a data URI and an (allow-listed) URL."""
    got = client.embeddings.create(model=MOCO, input=[data_url(cxr_png), image_host + "/cxr.png"],
                                   extra_body={"modality": "image"})
    np.testing.assert_allclose(vectors(got), np.repeat(reference[MOCO].embed([cxr_png]), 2, axis=0),
                               rtol=1e-4, atol=1e-5)


def test_openai_client_sees_the_422(client):
    import openai

    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.embeddings.create(model=MOCO, input=["Edema"], extra_body={"input_type": "text"})
    assert "it offers: embed" in str(info.value)


# ---- shapes the client cannot express: raw HTTP -------------------------------------------------
def test_raw_infinity_text_modality_and_plain_image_url_string(server, cxr_png, reference):
    resp = post(server, model=LOVT, input="Small left effusion.", modality="text")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["output"] == "global" and body["usage"]["texts"] == 1 and body["dim"] == 32
    item = {"type": "image_url", "image_url": data_url(cxr_png)}  # image_url as a bare string
    resp = post(server, model=MOCO, input=[item])
    assert resp.status_code == 200, resp.text
    np.testing.assert_allclose(resp.json()["data"][0]["embedding"], reference[MOCO].embed([cxr_png])[0],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": MOCO, "input": ["x"], "modality": "audio"}, 400, "modality"),
        ({"model": MOCO, "input": ["x"], "input_type": "text", "modality": "image"}, 400, "disagree"),
        ({"model": MOCO, "input": ["Edema", "Atelectasis"], "input_type": "text"}, 422, "it offers: embed"),
        ({"model": PRIOR, "input": [{"type": "text", "text": "Edema"}], "output": "trunk"}, 400, "joint space"),
    ],
)
def test_bad_shapes_are_4xx_in_words(server, body, status, needle):
    resp = post(server, **body)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]["message"]


def test_mixed_batch_with_bad_items_reports_each(server, cxr_png):
    inputs = [
        data_url(cxr_png),
        {"type": "text", "text": "Edema"},  # a text for an image-only model
        {"type": "text", "text": "   "},
        {"type": "audio", "audio": "..."},
        data_url(png(1, 1)),
        data_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg' width='64' height='64'/>").decode(),
        base64.b64encode(cxr_png).decode(),
    ]
    resp = post(server, model=MOCO, input=inputs)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [d["index"] for d in body["data"]] == [0, 7]
    errors = {e["index"]: e["message"] for e in body["errors"]}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6]
    assert "it offers: embed" in errors[1] and "non-empty text" in errors[2] and "unknown item type" in errors[3]
    assert "1x1 pixels" in errors[4] and "image/svg+xml" in errors[5] and "cannot read" in errors[6].lower()


def test_a_1x1_image_does_not_poison_later_requests(server, cxr_png, reference):
    bad = post(server, model=MOCO, input=[data_url(png(1, 1))])
    assert bad.status_code == 422 and "1x1 pixels" in bad.json()["error"]["message"]
    for _ in range(2):
        resp = post(server, model=MOCO, input=[data_url(cxr_png), data_url(png(64, 48))])
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(resp.json()["data"][0]["embedding"], reference[MOCO].embed([cxr_png])[0],
                                   rtol=1e-4, atol=1e-5)


def test_a_100_megapixel_image_is_refused(server):
    resp = post(server, model=MOCO, input=[data_url(png(10_000, 10_000))])
    assert resp.status_code == 422, resp.text
    assert "too large" in resp.json()["error"]["message"]
    assert post(server, model=MOCO, input=[data_url(png(64, 64))]).status_code == 200


# ---- URLs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "needle"),
    [("/big.png", "limit"), ("/slow.png", "longer than"), ("/moved", "redirect"), ("/missing.png", "HTTP 404")],
)
def test_allow_listed_urls_keep_their_limits(server, image_host, path, needle):
    resp = post(server, model=MOCO, input=[image_host + path], modality="image")
    assert resp.status_code == 422, resp.text
    assert needle in resp.json()["errors"][0]["message"]


def test_urls_of_other_hosts_are_refused(server, image_host):
    other_port = image_host.rsplit(":", 1)[0] + ":9"
    for url in (other_port + "/cxr.png", "http://localhost/cxr.png", "file:///etc/passwd"):
        resp = post(server, model=MOCO, input=[url])
        assert resp.status_code == 422, resp.text
        message = resp.json()["errors"][0]["message"]
        assert "allow-list" in message or "not fetched" in message, message


# ---- /display: what the server decoded --------------------------------------------------------------
def test_display_shows_the_decoded_dicom(server, shared_data: Path):
    from PIL import Image

    def shown(name: str, **extra) -> np.ndarray:
        data = (shared_data / "dicom" / name).read_bytes()
        resp = requests.post(server.url + "/display", json={"image": base64.b64encode(data).decode(), **extra},
                             timeout=60)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "image/png"
        return np.asarray(Image.open(io.BytesIO(resp.content)), dtype=np.float32)

    normal = shown("cr_chest_pa_siim_jpegbaseline.dcm", max_side=256)
    inverted = shown("cr_chest_pa_siim_header_monochrome1.dcm", max_side=256)
    assert max(normal.shape) == 256 and normal.std() > 10
    assert np.abs((255 - normal) - inverted).mean() < 2  # MONOCHROME1 applied: the server's decoding, not the bytes
    resp = requests.post(server.url + "/display", json={"image": base64.b64encode(b"hello").decode()}, timeout=30)
    assert resp.status_code == 422 and "cannot read" in resp.json()["error"]["message"].lower()


def test_request_texts_never_reach_the_log(server):
    """A text longer than the tokenizer's limit is truncated; the log says so without quoting it."""
    marker = "Zyxwvut Qponmlk"  # stands in for a patient's name inside a report
    report = f"{marker} report. " + "Stable small left pleural effusion with basilar atelectasis. " * 12
    for name in (PRIOR, LOVT):
        resp = post(server, model=name, input=[report], input_type="text")
        assert resp.status_code == 200, resp.text
    log = server.log()
    assert "truncated to the model's maximum length (text not logged)" in log
    assert marker not in log and "Zyxwvut" not in log
