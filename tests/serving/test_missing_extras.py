"""An optional package that is not installed is an answer in words, not a bare 500.

The absent package is simulated for real: a ``sitecustomize`` on ``PYTHONPATH`` installs a
``sys.meta_path`` finder that refuses the named top-level packages (as if pip never installed
them) in the server and CLI subprocesses. Our code is not patched.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

PRIOR = "tiny-random-prior"

BLOCKER = '''\
import os
import sys

_BLOCKED = {n for n in os.environ.get("RADZOO_TEST_BLOCK_MODULES", "").split(",") if n}


class _Absent:
    """Refuses the blocked packages the way an interpreter without them does."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Absent())
'''


def blocked_env(tmp_path: Path, *modules: str) -> dict[str, str]:
    """Environment in which ``modules`` cannot be imported (sitecustomize + PYTHONPATH)."""
    folder = tmp_path / "absent_packages"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "RADZOO_TEST_BLOCK_MODULES": ",".join(modules)}


def run_python(code: str, env: dict[str, str], home: Path) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "RADZOO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cr(shared_data: Path) -> Path:
    path = shared_data / "dicom" / "cr_chest_pa_siim_jpegbaseline.dcm"
    if not path.is_file():
        pytest.skip("shared DICOM data missing")
    return path


@pytest.fixture(scope="module")
def server(server_factory, serving_home, tmp_path_factory):
    env = blocked_env(tmp_path_factory.mktemp("blocker"), "highdicom", "dicomweb_client")
    return server_factory({**env, "RADZOO_MODELS": PRIOR, "RADZOO_RUNTIME": "torch"}, home=serving_home)


def test_route_needing_an_absent_extra_answers_501_naming_it(server, cr: Path) -> None:
    body = {"model": PRIOR, "input": "data:application/dicom;base64," + base64.b64encode(cr.read_bytes()).decode()}
    assert requests.post(server.url + "/zero_shot", json=body, timeout=120).status_code == 200  # JSON still works
    resp = requests.post(server.url + "/zero_shot?format=dicom-sr", json=body, timeout=120)
    assert resp.status_code == 501, resp.text
    error = resp.json()["error"]
    assert error["type"] == "MissingExtra" and error["status"] == 501
    assert "'highdicom'" in error["message"] and "pip install 'radzoo[dicom]'" in error["message"]
    resp = requests.post(server.url + "/ground?format=dicom-pmap",
                         json={"model": PRIOR, "image": body["input"], "text": "Edema"}, timeout=120)
    assert resp.status_code == 501 and "radzoo[dicom]" in resp.json()["error"]["message"], resp.text
    assert "ModuleNotFoundError" not in server.log()  # said in words, not a traceback
    row = next(m for m in requests.get(server.url + "/models", timeout=10).json()["data"] if m["id"] == PRIOR)
    missing = {u["feature"]: u for u in row["unavailable"]}
    assert set(missing) == {"POST /zero_shot?format=dicom-sr", "POST /ground?format=dicom-pmap"}
    assert all(u["install"] == "pip install 'radzoo[dicom]'" for u in missing.values())
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200


def test_cli_needing_an_absent_extra_exits_1_naming_it(serving_home: Path, tmp_path: Path, cr: Path) -> None:
    env = {**os.environ, **blocked_env(tmp_path, "highdicom"), "RADZOO_HOME": str(serving_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "radzoo.cli", "zero-shot", str(cr), "--model", PRIOR,
                           "--dicom-sr", str(tmp_path / "sr")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "pip install 'radzoo[dicom]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "sr").glob("*.dcm"))
    proc = subprocess.run([sys.executable, "-m", "radzoo.cli", "extract", str(cr), "--model", PRIOR,
                           "--out", str(tmp_path / "table")], env={**env, **blocked_env(tmp_path, "pyarrow")},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "pip install 'radzoo[extract]'" in proc.stderr and "Traceback" not in proc.stderr


def test_dicom_results_need_no_pyarrow(serving_home: Path, tmp_path: Path, cr: Path) -> None:
    """The weights revision a DICOM SR carries lives in radzoo.extract, which must not pull pyarrow in."""
    code = (
        "import sys, radzoo\n"
        "from radzoo.dicom_out.provenance import provenance_of\n"
        f"model = radzoo.load({PRIOR!r}, runtime='torch')\n"
        "print(provenance_of(model).revision)\n"
        "assert 'pyarrow' not in sys.modules\n"
        "from radzoo.extras import require_extra\n"
        "try:\n"
        "    require_extra('extract', 'pyarrow')\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    proc = run_python(code, blocked_env(tmp_path, "pyarrow"), serving_home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MissingExtra" in proc.stdout and "pip install 'radzoo[extract]'" in proc.stdout
