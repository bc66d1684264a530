"""Turning what users hand to ``model.embed`` into the reader's pixel convention.

Everything becomes a float32 ``(H, W)`` grayscale array in [0, 1] (see ``radzoo.io``) before the
spec's transform runs, so paths, bytes, PIL images and arrays all take the same path.
"""

from __future__ import annotations

import io as _io
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError

#: DICOM modalities a chest-radiograph model accepts (OT/SC: secondary captures of radiographs).
CXR_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT", "SC"})


def describe(item: Any, index: int) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    return f"input[{index}] ({type(item).__name__})"


def to_pixels(item: Any, index: int = 0, modality: str = "cxr") -> np.ndarray:
    """One input -> float32 (H, W) in [0, 1]. Raises ``InputError``/``ImageReadError`` naming the input."""
    from PIL import Image as PILImage

    from radzoo.io import Image, read_image

    if isinstance(item, Image):
        image = item
    elif isinstance(item, (str, Path, bytes, bytearray, memoryview, _io.IOBase)):
        image = read_image(item)
    elif isinstance(item, PILImage.Image):
        return _pil_to_pixels(item, describe(item, index))
    elif isinstance(item, np.ndarray):
        return _array_to_pixels(item, describe(item, index))
    else:
        raise InputError(
            f"{describe(item, index)}: unsupported input type {type(item).__name__}; pass a path, bytes, "
            "a PIL image, a numpy array or a radzoo.io.Image"
        )
    check_modality(image, modality, describe(item, index))
    return image.pixels


def check_modality(image: Any, modality: str, label: str) -> None:
    """Refuse DICOMs of the wrong modality (a CT slice sent to a chest X-ray model)."""
    found = (getattr(image, "modality", None) or "").upper()
    if modality == "cxr" and found and found not in CXR_MODALITIES:
        raise InputError(
            f"{label}: DICOM modality {found!r} is not a radiograph; this model expects chest X-rays "
            f"(one of {', '.join(sorted(CXR_MODALITIES))})"
        )


def _pil_to_pixels(img: Any, label: str) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        return _array_to_pixels(arr.astype(np.uint16) if arr.max() <= 65535 else arr, label)
    if img.mode in ("RGB", "RGBA", "LA", "P"):
        rgb = np.asarray(img.convert("RGB"))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            raise InputError(f"{label}: colour image given to a grayscale model; convert it to grayscale first")
        return rgb[..., 0].astype(np.float32) / 255.0
    if img.mode == "F":
        return _array_to_pixels(np.asarray(img, dtype=np.float32), label)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _array_to_pixels(arr: np.ndarray, label: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] in (1, 3):
        if arr.shape[-1] == 3 and not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
            raise InputError(f"{label}: colour array given to a grayscale model")
        arr = arr[..., 0]
    if arr.ndim != 2 or 0 in arr.shape:
        raise InputError(f"{label}: expected a 2D grayscale array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise InputError(f"{label}: array contains NaN or infinite values")
        if out.min() < -1e-6 or out.max() > 1 + 1e-6:
            raise InputError(
                f"{label}: float arrays must hold intensities in [0, 1] (got {out.min():.3g}..{out.max():.3g}); "
                "pass uint8/uint16 arrays or rescale"
            )
        return np.clip(out, 0.0, 1.0)
    raise InputError(f"{label}: unsupported array dtype {arr.dtype}")
