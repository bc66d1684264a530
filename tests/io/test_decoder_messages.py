"""A corrupt compressed DICOM in a batch: the real CLI prints radzoo's one-line reason, not the
tracebacks pydicom's decoder plugins log at ERROR; ``--verbose`` shows that detail (DEBUG)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import radzoo
from radzoo import zoo
from radzoo.zoo.tiny import tiny_specs


def _corrupt_12bit_jpeg(src: Path, dst: Path) -> None:
    """A JPEG-compressed DICOM relabelled 12-bit JPEG Extended with a stretch of its data wiped:
    every decoder plugin fails (GDCM refuses 12-bit JPEG Extended, logging a traceback)."""
    import pydicom
    from pydicom.uid import JPEGExtended12Bit

    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = JPEGExtended12Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    data = bytearray(ds.PixelData)
    data[len(data) // 3: len(data) // 3 + 4000] = bytes(4000)
    ds.PixelData = bytes(data)
    ds.save_as(dst)


def test_embed_folder_with_a_corrupt_dicom_prints_one_clear_line(tmp_path: Path, shared_data: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _corrupt_12bit_jpeg(shared_data / "dicom" / "cr_chest_pa_siim_jpegbaseline.dcm", folder / "bad.dcm")
    shutil.copyfile(shared_data / "dicom" / "dx_thorax_lateral_canine_mono1.dcm", folder / "good.dcm")
    model = zoo.save(radzoo.build(tiny_specs()["tiny-random-mococxr"], runtime="torch"), tmp_path / "tiny")
    env = {**os.environ, "RADZOO_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join(sys.path)}

    def embed(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "radzoo.cli", *flags, "embed", str(folder), "--model", str(model),
                               "--runtime", "torch", "--out", str(tmp_path / "e.npy")],
                              env=env, capture_output=True, text=True, timeout=300)

    quiet = embed()
    assert quiet.returncode == 1, quiet.stderr  # a skipped input: exit 1 after embedding the rest
    assert f"skipped {folder / 'bad.dcm'}" in quiet.stderr and "decoding JPEG Extended" in quiet.stderr
    assert "Traceback" not in quiet.stderr and "ERROR" not in quiet.stderr, quiet.stderr
    assert "embedded 1/2 images" in quiet.stderr + quiet.stdout

    verbose = embed("--verbose")
    assert "DEBUG radzoo.io.dicom: pydicom" in verbose.stderr and "Traceback" in verbose.stderr
    assert f"skipped {folder / 'bad.dcm'}" in verbose.stderr
