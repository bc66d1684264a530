"""JPEG 2000 frames of DICOM files decoded on the GPU with nvImageCodec, when it is installed.

JPEG 2000 archives are decode-bound on CPUs (a 2048x2048 12-bit lossless frame takes ~0.5 s with
GDCM, 10-30x a ResNet-50 forward pass), so on a GPU machine radzoo hands those frames to
nvImageCodec (``pip install nvidia-nvimgcodec-cu12`` or ``-cu13``; it uses nvJPEG2000).

* **When**: ``RADZOO_GPU_DECODE`` is ``auto`` (default: on when nvImageCodec imports and a CUDA
  device is visible), ``on`` (same, but a missing codec is logged once as a warning) or ``off``.
* **Fallback**: any failure on a file (codec missing, unsupported stream, GPU error) decodes
  that file on the CPU with pydicom's decoders instead; the read never fails because of the GPU.
* **Cross-check**: the first ``RADZOO_GPU_DECODE_CHECKS`` (default 3) GPU-decoded frames of each
  process are also decoded by pydicom and compared: lossless syntaxes must match exactly,
  lossy ones within ``LOSSY_TOLERANCE`` grey levels (decoders of the irreversible 9/7 wavelet
  round differently). A mismatch turns GPU decoding off for the process, with a warning, and
  the pydicom result is used.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import warnings
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Transfer syntaxes handed to the GPU, lossless ones first.
J2K_LOSSLESS = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202")
J2K_LOSSY = ("1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203")
#: Largest difference (grey levels) tolerated between nvJPEG2000 and OpenJPEG on lossy streams.
LOSSY_TOLERANCE = 1
MODE_ENV = "RADZOO_GPU_DECODE"
CHECKS_ENV = "RADZOO_GPU_DECODE_CHECKS"

_state: dict[str, Any] = {"decoder": None, "disabled": None, "checked": 0}
_lock = threading.Lock()


class GpuDecodeMismatch(RuntimeError):
    """nvImageCodec and pydicom disagree beyond the codec's tolerance."""


def mode() -> str:
    """``auto``, ``on`` or ``off`` from ``RADZOO_GPU_DECODE`` (anything else counts as ``auto``)."""
    value = os.environ.get(MODE_ENV, "auto").strip().lower()
    return value if value in ("auto", "on", "off") else "auto"


@functools.lru_cache(maxsize=1)
def _probe() -> str | None:
    """Checked once per process: is nvImageCodec importable and a CUDA device visible?"""
    try:
        from nvidia import nvimgcodec  # noqa: F401
    except ImportError:
        return "nvImageCodec is not installed (pip install nvidia-nvimgcodec-cu12 or nvidia-nvimgcodec-cu13)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return None


def unavailable_reason() -> str | None:
    """Why GPU decoding is off in this process, or ``None`` when it is on."""
    if _state["disabled"]:
        return _state["disabled"]
    if mode() == "off":
        return f"{MODE_ENV}=off"
    return _probe()


def wants(transfer_syntax: str) -> bool:
    """Whether a frame of this transfer syntax should go to the GPU now."""
    if transfer_syntax not in J2K_LOSSLESS + J2K_LOSSY:
        return False
    why = unavailable_reason()
    if why and mode() == "on" and not _state.get("warned"):
        _state["warned"] = True
        log.warning("GPU JPEG 2000 decoding requested (%s=on) but off: %s; decoding on the CPU", MODE_ENV, why)
    return why is None


def _decoder() -> Any:
    with _lock:
        if _state["decoder"] is None:
            from nvidia import nvimgcodec

            _state["decoder"] = nvimgcodec.Decoder()
        return _state["decoder"]


def decode_codestream(codestream: bytes, rows: int, columns: int, dtype: np.dtype) -> np.ndarray:
    """One JPEG 2000 codestream -> ``(rows, columns)`` array of ``dtype`` (grayscale, any bit depth)."""
    from nvidia import nvimgcodec

    params = nvimgcodec.DecodeParams(allow_any_depth=True, color_spec=nvimgcodec.ColorSpec.UNCHANGED)
    image = _decoder().decode(codestream, params=params)
    if image is None:
        raise RuntimeError("nvImageCodec returned no image")
    arr = np.asarray(image.cpu())
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != (rows, columns):
        raise RuntimeError(f"nvImageCodec decoded shape {arr.shape}, header says {(rows, columns)}")
    if arr.dtype != dtype:
        if arr.dtype.itemsize != np.dtype(dtype).itemsize:
            arr = arr.astype(dtype)
        else:
            arr = arr.view(dtype)  # same width, signedness from the DICOM header
    return arr


def compare(gpu: np.ndarray, cpu: np.ndarray, transfer_syntax: str) -> float:
    """Max abs difference; raises ``GpuDecodeMismatch`` beyond the codec's tolerance."""
    if gpu.shape != cpu.shape:
        raise GpuDecodeMismatch(f"shapes differ: GPU {gpu.shape}, pydicom {cpu.shape}")
    diff = float(np.max(np.abs(gpu.astype(np.int64) - cpu.astype(np.int64)))) if gpu.size else 0.0
    tolerance = 0 if transfer_syntax in J2K_LOSSLESS else LOSSY_TOLERANCE
    if diff > tolerance:
        raise GpuDecodeMismatch(f"max difference {diff:g} grey levels > tolerance {tolerance} ({transfer_syntax})")
    return diff


def decode_frame_gpu(ds: Any, frame: int, transfer_syntax: str, cpu_decode: Any) -> np.ndarray | None:
    """The frame decoded on the GPU (cross-checked while checks remain), or ``None`` to decode on the CPU.

    ``cpu_decode()`` returns pydicom's decode of the same frame (used for the cross-check).
    """
    from pydicom.encaps import get_frame

    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        codestream = get_frame(ds.PixelData, frame, number_of_frames=n_frames)
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        bits = int(ds.get("BitsAllocated", 16))
        dtype = np.dtype(f"{'i' if signed else 'u'}{max(1, bits // 8)}")
        arr = decode_codestream(codestream, int(ds.Rows), int(ds.Columns), dtype)
    except Exception as exc:  # noqa: BLE001 - any GPU/codec failure: this file goes to the CPU
        log.debug("GPU JPEG 2000 decode failed (%s: %s); decoding on the CPU", type(exc).__name__, exc)
        return None
    limit = int(os.environ.get(CHECKS_ENV, "3"))
    with _lock:
        check = _state["checked"] < limit
        if check:
            _state["checked"] += 1
    if check:
        reference = np.asarray(cpu_decode())
        try:
            compare(arr, reference, transfer_syntax)
        except GpuDecodeMismatch as exc:
            message = f"GPU JPEG 2000 decoding turned off for this process: {exc}"
            _state["disabled"] = message
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return reference
    return arr
