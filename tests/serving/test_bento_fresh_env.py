"""The deployable bento, as a hospital runs it: built, carried as one archive, installed from its
own requirements only, served with the network cut and its models read-only.

1. ``radzoo bento build`` of a random-weight image-text model and graph-CT (offline).
2. ``bentoml export`` to a tar (what is carried into the air-gapped network) and unpacked.
3. A FRESH virtual environment from the bento's ``env/python/requirements.txt`` (``-c
   constraints.txt`` so pip takes the on-disk torch); no system site packages, no checkout on
   ``PYTHONPATH``. It is cached outside the checkout (``~/.cache/radzoo-tests/bento-venv``), keyed
   by the requirements' and constraints' hash (the first run installs torch: minutes; later runs,
   fresh clones included, reuse it).
4. ``bentoml serve <unpacked bento>`` from that venv with an empty ``BENTOML_HOME``,
   ``HF_HUB_OFFLINE=1``, ``RADZOO_OFFLINE=1``, a read-only ``RADZOO_HOME`` and read-only model
   folders; then every route answers 200 (or its documented 4xx).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PRIOR = "prior_resnet50_imagetext"
GRAPHCT = "graphct_copdgene"
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "RADZOO_OFFLINE": "1",
    "HTTP_PROXY": "http://127.0.0.1:9",  # any attempt to reach out fails fast
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "UV_OFFLINE": "1",
    "BENTOML_DO_NOT_TRACK": "True",
}


def read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable_again(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def venv_cache_root() -> Path:
    """Where the bento's venv is kept between runs: outside the checkout (a fresh clone, as CI
    makes, reuses it), like pip's own cache. ``RADZOO_TEST_VENV_CACHE`` moves it; deleting it makes
    the next run install from scratch (minutes: torch's wheels are GBs)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "radzoo-tests" / "bento-venv"
    root = Path(os.environ.get("RADZOO_TEST_VENV_CACHE", default))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _pins(constraints: Path) -> dict[str, str]:
    pins = {}
    for line in constraints.read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def _matches_pins(python: Path, constraints: Path) -> bool:
    """Every package installed in the cached venv is at the version ``constraints.txt`` pins now."""
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            timeout=120)
    if listed.returncode != 0:
        return False
    pins = _pins(constraints)
    for pkg in json.loads(listed.stdout):
        want = pins.get(re.sub(r"[-_.]+", "-", pkg["name"]).lower())
        if want is not None and want != pkg["version"]:
            return False
    return True


def fresh_venv(requirements: Path, cache_root: Path) -> tuple[Path, float]:
    """A venv holding only ``requirements``, its python and the install seconds. Cached by the
    requirements' hash (they are pinned) and reused only while every installed package still
    matches ``constraints.txt`` (a changed transitive pin reinstalls)."""
    constraints = REPO / "constraints.txt"
    key = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = cache_root / key
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file() and _matches_pins(python, constraints):
        return python, 0.0
    for old in cache_root.iterdir():  # one cached venv at a time (torch is GBs); a half-made one is redone
        shutil.rmtree(old, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # --no-compile: no .pyc for the thousands of torch modules at install time (Python compiles
    # what it imports on first use), which is most of pip's CPU time here
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", "-r", str(requirements),
                           "-c", str(constraints)], env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (venv / ".complete").write_text(requirements.read_text())  # last: marks the venv usable
    return python, time.perf_counter() - start


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, launch_server):
    timings: dict[str, float] = {}
    tmp = tmp_path_factory.mktemp("bento")
    build_env = {**os.environ, **OFFLINE, "BENTOML_HOME": str(tmp / "build_store"),
                 "RADZOO_HOME": str(tmp / "build_home"), "PIP_NO_INDEX": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "radzoo.cli", "bento", "build", "--models", f"{PRIOR},{GRAPHCT}",
                           "--random-weights", "--tag", "radzoo-ci:test"],
                          env=build_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "RANDOM weights" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "bentoml", "export", "radzoo-ci:test", str(tmp / "radzoo-ci.tar")],
                          env=build_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shutil.rmtree(tmp / "build_store")  # nothing of the build machine's store is left to lean on
    unpacked = tmp / "unpacked"
    with tarfile.open(tmp / "radzoo-ci.tar") as archive:
        archive.extractall(unpacked, filter="data")
    (tmp / "radzoo-ci.tar").unlink()
    timings["build + export"] = time.perf_counter() - start

    python, timings["fresh venv install"] = fresh_venv(unpacked / "env" / "python" / "requirements.txt",
                                                       venv_cache_root())
    home = tmp / "radzoo_home"
    home.mkdir()
    read_only(home)
    read_only(unpacked / "models")
    files_before = sorted(str(p.relative_to(unpacked)) for p in (unpacked / "models").rglob("*"))
    start = time.perf_counter()
    server = launch_server(
        home, tmp, {**OFFLINE, "PYTHONPATH": "", "BENTOML_HOME": str(tmp / "empty_store")},
        argv=[str(python), "-m", "bentoml", "serve", str(unpacked), "--host", "127.0.0.1"], startup_timeout=600,
    )
    timings["server start"] = time.perf_counter() - start
    yield server, unpacked, timings
    server.stop()
    # nothing was written: no export into the bento's models, no cache in RADZOO_HOME
    assert sorted(str(p.relative_to(unpacked)) for p in (unpacked / "models").rglob("*")) == files_before
    assert not list(home.iterdir()), list(home.iterdir())
    writable_again(unpacked / "models")
    writable_again(home)
    print("bento test timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def test_every_route_of_the_built_bento_answers_offline(bento, shared_data: Path) -> None:
    server, unpacked, timings = bento
    start = time.perf_counter()
    meta = yaml.safe_load((unpacked / "bento.yaml").read_text())
    assert meta["labels"]["models"] == f"{PRIOR},{GRAPHCT}" and meta["labels"]["random_weights"] == "true" and "RANDOM WEIGHTS" in (unpacked / "README.md").read_text()
    assert {m["tag"].split(":")[0] for m in meta["models"]} == {"radzoo-" + PRIOR, "radzoo-" + GRAPHCT}
    cards = sorted((unpacked / "models").glob("radzoo-*/*/README.md"))
    assert len(cards) == 2 and all("**Random weights.**" in card.read_text() for card in cards)
    call_every_route(server.url, shared_data)
    log = server.log()
    assert "Traceback" not in log and "exported" not in log, log[-4000:]
    timings["requests"] = time.perf_counter() - start


def call_every_route(url: str, shared_data: Path) -> None:
    """Every route of the bento's server: 200, or the documented 4xx."""
    png = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[0]
    dcm = shared_data / "dicom" / "cr_chest_pa_siim_jpegbaseline.dcm"

    assert requests.get(url + "/readyz", timeout=10).status_code == 200
    models = {m["id"]: m for m in requests.get(url + "/models", timeout=10).json()["data"]}
    assert set(models) == {PRIOR, GRAPHCT}
    for row in models.values():
        assert row["source"] == "bento" and row["random_weights"] is True and row["loaded"], row
        assert row["unavailable"] == [], row
    assert models[GRAPHCT]["runtime"] == "onnx", models[GRAPHCT]  # its graphs came in the bento
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()

    image = {"model": PRIOR, "input": [data_url(png, "image/png")]}
    resp = requests.post(url + "/v1/embeddings", json=image, timeout=300)
    assert resp.status_code == 200 and resp.json()["random_weights"] is True, resp.text
    resp = requests.post(url + "/v1/embeddings", json={"model": PRIOR, "input": ["Edema"], "input_type": "text"},
                         timeout=300)
    assert resp.status_code == 200, resp.text
    resp = requests.post(url + "/embed", files={"files": (png.name, png.read_bytes(), "image/png")},
                         data={"model": PRIOR}, timeout=300)
    assert resp.status_code == 200, resp.text

    body = {"model": PRIOR, "input": data_url(dcm, "application/dicom")}
    assert requests.post(url + "/zero_shot", json=body, timeout=300).status_code == 200
    resp = requests.post(url + "/zero_shot?format=dicom-sr", json=body, timeout=300)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/dicom"), resp.text
    ground = {"model": PRIOR, "image": data_url(dcm, "application/dicom"), "text": "Pleural Effusion is observed"}
    resp = requests.post(url + "/ground", json=ground, timeout=300)
    assert resp.status_code == 200 and resp.content.startswith(b"\x89PNG"), resp.text
    resp = requests.post(url + "/ground?format=dicom-pmap", json=ground, timeout=300)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/dicom"), resp.text
    resp = requests.post(url + "/display", json={"image": base64.b64encode(dcm.read_bytes()).decode()}, timeout=300)
    assert resp.status_code == 200 and resp.content.startswith(b"\x89PNG"), resp.text

    # a real CT without lungs (abdomen): graph-CT's documented 400 that says so (a chest takes a minute more)
    ct = shared_data / "ct" / "totalseg_example_ct_sm.nii.gz"
    resp = requests.post(url + "/ct_features", files={"file": (ct.name, ct.read_bytes(), "application/octet-stream")},
                         data={"model": GRAPHCT}, timeout=300)
    assert resp.status_code == 400 and "lung" in resp.json()["error"]["message"], resp.text
