"""A real Orthanc (DICOMweb plugin, basic auth on) per test module, filled by STOW-RS with the real
DICOM edge cases of ``shared/data/dicom``; tiny random-weight models; the dciodvfy validator."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orthanc_server
import pytest

import radzoo

#: The shared DICOMs Orthanc refuses (no usable data set): the rest are stored.
REFUSED = {"cr_chest_pa_siim_truncated.dcm", "ct_small_no_file_meta.dcm"}
#: pydicom's bundled real test files: a colour, 2-frame secondary capture and a text SR alone in its study.
PYDICOM_EXTRAS = ("SC_rgb_rle_2frame.dcm", "reportsi.dcm")
#: When set, dciodvfy's warnings (per IOD) are appended to this file for the record.
DCIODVFY_LOG_ENV = "RADZOO_DCIODVFY_LOG"


@pytest.fixture(scope="session")
def dicom_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "dicom").glob("*.dcm"))
    if len(files) < 10:
        pytest.skip("the shared DICOM edge cases are missing")
    # store the correct header of the two files sharing one SOP Instance UID first (Orthanc keeps the first)
    return sorted(files, key=lambda f: (f.name == "cr_chest_pa_siim_header_monochrome1.dcm", f.name))


@pytest.fixture(scope="session")
def extra_files() -> list[Path]:
    from pydicom.data import get_testdata_file

    return [Path(get_testdata_file(n)) for n in PYDICOM_EXTRAS]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, dicom_files: list[Path], extra_files: list[Path]) -> Iterator[dict]:
    """A fresh Orthanc for one test module, with every shared DICOM (and the pydicom extras) STOWed."""
    reason = orthanc_server.missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("orthanc")
    server = orthanc_server.start_orthanc(root)
    try:
        stored = orthanc_server.stow_files(server, dicom_files + extra_files)
        refused = {name for name, v in stored.items() if isinstance(v, str)}
        assert refused == REFUSED, stored
        auth = root / "pacs-auth.txt"
        auth.write_text(server.auth_line + "\n")
        auth.chmod(0o600)
        yield {"server": server, "url": server.dicomweb, "auth_file": auth, "stored": stored,
               "auth_line": server.auth_line}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pacs_source(orthanc: dict):
    """A ``DicomwebSource`` factory for the module's Orthanc."""
    from radzoo.pacs import DicomwebSource, QueryFilters, parse_auth

    auth = parse_auth(orthanc["auth_line"], "test")

    def make(url: str | None = None, **filters) -> DicomwebSource:
        return DicomwebSource.from_url(url or orthanc["url"], auth=auth, filters=QueryFilters.parse(**filters),
                                       retries=1, backoff=0.05)

    return make


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radzoo.zoo.tiny import write_test_vocab

    return write_test_vocab(tmp_path_factory.mktemp("pacs_vocab") / "vocab")


@pytest.fixture(scope="session")
def prior_dir(vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny-random-prior`` (image-text, zero-shot and grounding) saved as an artifact."""
    from radzoo import zoo
    from radzoo.zeroshot.prompts import zero_shot_section
    from radzoo.zoo.tiny import tiny_specs

    spec = tiny_specs()["tiny-random-prior"]
    model = radzoo.build(spec, tokenizer=vocab_dir, seed=3)
    return zoo.save(model, tmp_path_factory.mktemp("pacs_prior") / "tiny-random-prior",
                    sections={"zero_shot": zero_shot_section(spec)})


@pytest.fixture(scope="session")
def moco_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radzoo import zoo
    from radzoo.zoo.tiny import tiny_specs

    return zoo.save(radzoo.build(tiny_specs()["tiny-random-mococxr"]), tmp_path_factory.mktemp("pacs_moco") / "moco")


def _dciodvfy() -> str | None:
    return shutil.which("dciodvfy")


@pytest.fixture(scope="session")
def dciodvfy():
    """``check(path) -> warnings``: dciodvfy must report zero errors; warnings are returned (and
    appended to ``$RADZOO_DCIODVFY_LOG`` when set)."""
    exe = _dciodvfy()
    if exe is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools; .ci/run does this where apt exists)")
    seen: dict[str, set[str]] = {}

    def check(path: Path) -> list[str]:
        done = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
        lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines()]
        errors = [ln for ln in lines if ln.startswith("Error")]
        assert not errors, f"dciodvfy errors for {path.name}:\n" + "\n".join(errors)
        warnings = sorted({ln for ln in lines if ln.startswith("Warning")})
        iod = next((ln for ln in lines if ln and not ln.startswith(("Error", "Warning"))), "?")
        seen.setdefault(iod, set()).update(warnings)
        return warnings

    yield check
    if os.environ.get(DCIODVFY_LOG_ENV):
        with open(os.environ[DCIODVFY_LOG_ENV], "a") as fh:
            for iod, warns in sorted(seen.items()):
                for w in sorted(warns):
                    fh.write(f"{iod}\t{w}\n")
