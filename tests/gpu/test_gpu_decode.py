"""GPU JPEG 2000 decoding (nvImageCodec): on this CPU machine it must fall back per file to
pydicom, silently under ``auto`` and with one warning under ``on``; the cross-check rule itself
(exact for lossless, 1 grey level for lossy) is checked on arrays."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from radzoo.io import gpu_decode, read_image

J2K_LOSSY = "cr_chest_RG1_J2KI.dcm"


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_decode, "_state", {"decoder": None, "disabled": None, "checked": 0})


def test_cpu_machine_falls_back_to_pydicom(shared_data: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: benchmarks/gpu_check.sh exercises the GPU decoder")
    path = shared_data / "dicom" / J2K_LOSSY
    monkeypatch.setenv(gpu_decode.MODE_ENV, "off")
    reference = read_image(path).pixels
    monkeypatch.setenv(gpu_decode.MODE_ENV, "auto")
    assert gpu_decode.unavailable_reason() is not None
    assert not gpu_decode.wants("1.2.840.10008.1.2.4.91")
    np.testing.assert_array_equal(read_image(path).pixels, reference)
    monkeypatch.setenv(gpu_decode.MODE_ENV, "on")
    with caplog.at_level(logging.WARNING, logger="radzoo.io.gpu_decode"):
        np.testing.assert_array_equal(read_image(path).pixels, reference)
        np.testing.assert_array_equal(read_image(path).pixels, reference)
    warned = [r for r in caplog.records if "GPU JPEG 2000 decoding requested" in r.getMessage()]
    assert len(warned) == 1 and "decoding on the CPU" in warned[0].getMessage()
    assert not gpu_decode.wants("1.2.840.10008.1.2.1")  # only JPEG 2000 ever goes to the GPU


def test_cross_check_tolerance_per_codec() -> None:
    cpu = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert gpu_decode.compare(cpu.copy(), cpu, "1.2.840.10008.1.2.4.90") == 0.0
    off_by_one = cpu.copy()
    off_by_one[1, 2] += 1
    with pytest.raises(gpu_decode.GpuDecodeMismatch, match="tolerance 0"):
        gpu_decode.compare(off_by_one, cpu, "1.2.840.10008.1.2.4.90")  # lossless must be exact
    assert gpu_decode.compare(off_by_one, cpu, "1.2.840.10008.1.2.4.91") == 1.0  # lossy: 1 grey level
    off_by_one[0, 0] += 2
    with pytest.raises(gpu_decode.GpuDecodeMismatch, match="max difference 2"):
        gpu_decode.compare(off_by_one, cpu, "1.2.840.10008.1.2.4.91")
    with pytest.raises(gpu_decode.GpuDecodeMismatch, match="shapes differ"):
        gpu_decode.compare(cpu[:2], cpu, "1.2.840.10008.1.2.4.91")
