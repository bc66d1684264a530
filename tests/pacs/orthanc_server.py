"""A real Orthanc PACS with its DICOMweb plugin on 127.0.0.1, in a throwaway folder, auth on.

Used by the tests in this folder (``conftest.py``) and by ``benchmarks/bench_dicomweb.py``.
``Orthanc`` and the plugin come from Debian (``apt-get install orthanc orthanc-dicomweb``);
``.ci/run`` installs them where apt exists.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins", "/usr/local/share/orthanc/plugins")
PLUGIN = "libOrthancDicomWeb.so"
USER, PASSWORD = "radzoo-test", "orthanc-test-password-1"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), None)


def dicomweb_plugin() -> str | None:
    return next((str(Path(d) / PLUGIN) for d in PLUGIN_DIRS if (Path(d) / PLUGIN).is_file()), None)


def missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if orthanc_binary() is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; .ci/run does this where apt exists)"
    if dicomweb_plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OrthancServer:
    root: Path
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    @property
    def auth_line(self) -> str:
        return f"basic {USER}:{PASSWORD}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_orthanc(root: Path, *, timeout: float = 30.0) -> OrthancServer:
    """Start Orthanc with DICOMweb and basic auth in ``root``; wait until its REST API answers."""
    import requests

    reason = missing()
    if reason:
        raise RuntimeError(reason)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "radzoo-test",
        "HttpPort": port,
        "DicomServerEnabled": False,
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [dicomweb_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    cfg = root / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    log = root / "orthanc.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([orthanc_binary(), str(cfg)], stdout=fh, stderr=subprocess.STDOUT, cwd=root)
    server = OrthancServer(root, port, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{server.base}/system", auth=(USER, PASSWORD), timeout=1).ok:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within {timeout} s: {log.read_text()[-2000:]}")


def stow_files(server: OrthancServer, files: list[Path]) -> dict[str, object]:
    """STOW-RS each file (dicomweb-client); -> {file name: (study, series, sop) or the error text}."""
    import warnings

    import pydicom
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = (USER, PASSWORD)
    client = DICOMwebClient(server.dicomweb, session=session)
    out: dict[str, object] = {}
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(f, force=True)
                client.store_instances([ds])
                out[f.name] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
            except Exception as exc:  # noqa: BLE001 - the test records which files Orthanc refuses
                out[f.name] = f"{type(exc).__name__}: {exc}"
    return out
