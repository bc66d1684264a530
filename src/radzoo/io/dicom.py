"""DICOM 2D pixel pipeline: parse -> checks -> decode one frame -> modality LUT -> VOI -> MONOCHROME1.

Conventions (also documented on :func:`radzoo.io.read_image`):

* **Modality LUT**: Rescale Slope/Intercept (top level, or the Pixel Value Transformation
  functional group of enhanced multi-frame objects, per frame before shared), or the Modality LUT
  Sequence. The result is ``Image.values`` (HU for CT).
* **VOI**: a VOI LUT Sequence is preferred when present (like pydicom's default), else the FIRST
  Window Center/Width (multi-valued windows use the first) with the VOI LUT Function LINEAR
  (default), LINEAR_EXACT or SIGMOID, all per PS3.3 C.11.2.1.2, mapped to [0, 1]. A VOI LUT's
  output is divided by ``2**bits - 1`` (bits from its LUT Descriptor).
* **No VOI in the file**: CT (or Rescale Type HU) uses :data:`DEFAULT_CT_WINDOW`, the full 12-bit
  HU range [-1024, 3071] (LINEAR_EXACT), which keeps every tissue distinguishable; other images
  with BitsStored <= 8 use the nominal stored range (so an 8-bit DICOM reads exactly like the
  same pixels saved as an 8-bit PNG, /255); deeper images use the per-image min..max.
* **MONOCHROME1** is inverted last: ``x -> 1 - x``.
* Colour (RGB/YBR, PALETTE COLOR) is refused unless ``convert_color=True`` (then luminance
  0.299 R + 0.587 G + 0.114 B); colour images whose channels are identical are read as grayscale.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from radzoo.io.read_errors import ImageReadError

#: (center, width) used for CT slices without a VOI: HU -1024..3071, LINEAR_EXACT.
DEFAULT_CT_WINDOW = (1023.5, 4096.0)

_INSTALL_HINTS = {
    "1.2.840.10008.1.2.4.50": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.51": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.57": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.70": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.80": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.81": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.90": "pip install pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.91": "pip install pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.5": "pip install pylibjpeg pylibjpeg-rle (or python-gdcm)",
}


def _fail(label: str, cause: str) -> ImageReadError:
    return ImageReadError(label, cause)


# ------------------------------------------------------------------------ decoder log messages

#: Loggers pydicom's pixel decoders write to. Each failing plugin logs its exception WITH a
#: traceback at ERROR before the last one raises; radzoo's ImageReadError then names the file and
#: the cause in one line, so a batch job's user saw two tracebacks for one skipped file.
_DECODER_LOGGERS = ("pydicom", "pydicom.pixels.decoders.base", "pydicom.pixels.utils")
log = logging.getLogger(__name__)


class _DemoteWhileDecoding(logging.Filter):
    """Records logged while this thread decodes pixels are re-logged at DEBUG on ``radzoo.io.dicom``
    (``--verbose`` shows them); outside a decode, pydicom's messages pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(self.active, "depth", 0):
            return True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s (%s): %s", record.name, record.levelname, record.getMessage(), exc_info=record.exc_info)
        return False


_DEMOTE = _DemoteWhileDecoding()
for _name in _DECODER_LOGGERS:
    logging.getLogger(_name).addFilter(_DEMOTE)


@contextmanager
def decoder_messages_at_debug() -> Iterator[None]:
    """Scope in which pydicom's decoder log messages go to DEBUG (this thread only)."""
    _DEMOTE.active.depth = getattr(_DEMOTE.active, "depth", 0) + 1
    try:
        yield
    finally:
        _DEMOTE.active.depth -= 1


# ------------------------------------------------------------------------------------- parsing


def parse(data: bytes, label: str, offsets: list[int], *, stop_before_pixels: bool = False) -> Any:
    """Parse a DICOM data set; detect the empty/truncated results pydicom returns without raising."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    last_problem = "no DICOM data elements could be parsed"
    for off in offsets or [0]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = pydicom.dcmread(io.BytesIO(data[off:]), force=True, stop_before_pixels=stop_before_pixels)
            except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt input
                last_problem = f"DICOM parsing failed ({type(exc).__name__}: {exc}); the file is truncated or corrupt"
                continue
        eof = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
        if len(ds) == 0 or ("PixelData" not in ds and "Rows" not in ds and len(ds) < 3):
            if eof:
                last_problem = f"the file is truncated: no usable data set could be parsed ({eof[0]})"
            else:
                last_problem = "no DICOM data set could be parsed (empty, truncated or not DICOM)"
            continue
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            meta = FileMetaDataset()
            ds.file_meta = meta
        if "TransferSyntaxUID" not in meta:
            implicit, little = getattr(ds, "original_encoding", (None, None))
            if implicit is None:
                implicit, little = True, True
            meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
            )
        ds._radzoo_eof = eof  # noqa: SLF001 - carried to later error messages
        return ds
    raise _fail(label, last_problem)


# --------------------------------------------------------------------------------- attributes


def _first(value: Any) -> Any:
    if value is None:
        return None
    try:
        from pydicom.multival import MultiValue

        if isinstance(value, (MultiValue, list, tuple)):
            return value[0] if len(value) else None
    except ImportError:  # pragma: no cover
        pass
    return value


def _float(value: Any) -> float | None:
    value = _first(value)
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def functional_group(ds: Any, frame: int, seq_keyword: str) -> Any:
    """Item of ``seq_keyword`` for ``frame`` from the per-frame, then shared, functional groups."""
    for kw, idx in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(kw)
        if groups is None or len(groups) <= idx:
            continue
        seq = groups[idx].get(seq_keyword)
        if seq is not None and len(seq) > 0:
            return seq[0]
    return None


def _attr(ds: Any, frame: int, keyword: str, group: str) -> Any:
    value = ds.get(keyword)
    if value is not None and value != "":
        return value
    item = functional_group(ds, frame, group)
    return None if item is None else item.get(keyword)


def pixel_spacing(ds: Any, frame: int = 0) -> tuple[float, float] | None:
    """(row, column) spacing in mm: Pixel Spacing, functional groups, then Imager Pixel Spacing."""
    for value in (ds.get("PixelSpacing"), _attr(ds, frame, "PixelSpacing", "PixelMeasuresSequence"),
                  ds.get("ImagerPixelSpacing")):
        try:
            if value is not None and len(value) == 2:
                r, c = float(value[0]), float(value[1])
                if r > 0 and c > 0 and np.isfinite(r) and np.isfinite(c):
                    return (r, c)
        except (TypeError, ValueError):
            continue
    return None


def header_info(ds: Any, frame: int = 0) -> dict[str, Any]:
    """The metadata ``Image`` carries."""
    n_frames = _int_or(ds.get("NumberOfFrames"), 1)
    ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    return {
        "modality": _str(ds.get("Modality")),
        "photometric": _str(ds.get("PhotometricInterpretation")),
        "pixel_spacing": pixel_spacing(ds, frame),
        "view_position": _str(ds.get("ViewPosition")),
        "body_part": _str(ds.get("BodyPartExamined")),
        "sop_instance_uid": _str(ds.get("SOPInstanceUID")),
        "series_instance_uid": _str(ds.get("SeriesInstanceUID")),
        "study_instance_uid": _str(ds.get("StudyInstanceUID")),
        "patient_id": _str(ds.get("PatientID")),
        "study_date": _str(ds.get("StudyDate")),
        "bits_stored": _int_or(ds.get("BitsStored"), None),
        "n_frames": max(n_frames, 1),
        "transfer_syntax": str(ts) if ts else None,
    }


def _int_or(value: Any, default: Any) -> Any:
    value = _first(value)
    try:
        return int(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


# ------------------------------------------------------------------------------------ decoding


def check_header(ds: Any, label: str, frame: int, max_pixels: int) -> tuple[int, int, int]:
    """Checks made before any pixel is decoded. Returns (rows, columns, frames)."""
    eof = getattr(ds, "_radzoo_eof", [])
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise _fail(label, "float pixel data (parametric maps) is not supported")
        if eof:
            raise _fail(label, f"the file is truncated: no Pixel Data element ({eof[0]})")
        raise _fail(label, "DICOM file has no Pixel Data (0x7FE0,0010): not an image (SR, presentation state, ...?)")
    rows, cols = _int_or(ds.get("Rows"), 0), _int_or(ds.get("Columns"), 0)
    frames = _int_or(ds.get("NumberOfFrames"), 1)
    if rows <= 0 or cols <= 0:
        raise _fail(label, f"zero-size image (Rows={rows}, Columns={cols})")
    if frames <= 0:
        frames = 1
    spp = max(_int_or(ds.get("SamplesPerPixel"), 1), 1)
    total = rows * cols * frames * spp
    if total > max_pixels:
        raise _fail(
            label,
            f"image too large: Rows*Columns*Frames*Samples = {rows}*{cols}*{frames}*{spp} = {total} exceeds "
            f"max_pixels={max_pixels} (decompression-bomb guard; pass a larger max_pixels if this is genuine)",
        )
    if not 0 <= frame < frames:
        raise _fail(label, f"frame {frame} requested but the file has {frames} frame(s)")
    return rows, cols, frames


def decode_frame(ds: Any, label: str, frame: int) -> np.ndarray:
    """Decode one frame with pydicom's decoders (pylibjpeg plugins, then python-gdcm, tried in turn)."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    tsuid = UID(str(ds.file_meta.TransferSyntaxUID))
    name = tsuid.name if tsuid.is_valid else str(tsuid)
    try:
        decoder = get_decoder(tsuid)
    except NotImplementedError:
        raise _fail(label, f"unsupported transfer syntax {name} ({tsuid}): no pixel decoder exists for it") from None
    if not decoder.is_available:
        missing = "; ".join(f"{k}: {v}" for k, v in decoder.missing_dependencies.items()) if hasattr(
            decoder, "missing_dependencies") else ""
        hint = _INSTALL_HINTS.get(str(tsuid), "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle python-gdcm")
        raise _fail(label, f"no decoder installed for transfer syntax {name}; {hint}" + (f" ({missing})" if missing else ""))
    n_frames = _int_or(ds.get("NumberOfFrames"), 1)
    from radzoo.io import gpu_decode

    if gpu_decode.wants(str(tsuid)):  # JPEG 2000 on a GPU machine with nvImageCodec
        gpu = gpu_decode.decode_frame_gpu(ds, frame, str(tsuid), lambda: _cpu_frame(ds, label, frame, n_frames, name))
        if gpu is not None:
            return gpu
    return _cpu_frame(ds, label, frame, n_frames, name)


def _cpu_frame(ds: Any, label: str, frame: int, n_frames: int, name: str) -> np.ndarray:
    """One frame through pydicom's decoders (the CPU path, and the GPU path's cross-check)."""
    from pydicom.pixels import pixel_array

    try:
        with warnings.catch_warnings(), decoder_messages_at_debug():
            warnings.simplefilter("ignore")
            arr = pixel_array(ds, index=frame if n_frames > 1 else None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - decoders raise anything on corrupt data, incl. Rust
        # panics (pyo3 PanicException derives from BaseException, e.g. pylibjpeg-rle)
        eof = getattr(ds, "_radzoo_eof", [])
        why = "the file is truncated" if eof else "the pixel data is corrupt or truncated"
        raise _fail(label, f"decoding {name} pixel data failed ({type(exc).__name__}: {_short(exc)}); {why}") from exc
    arr = np.asarray(arr)
    if n_frames > 1 and arr.ndim >= 3 and arr.shape[0] == n_frames and arr.ndim == (4 if ds.get("SamplesPerPixel", 1) > 1 else 3):
        arr = arr[frame]
    return arr


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


# ----------------------------------------------------------------------------------- pipeline


def _equal_channels(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def _luminance(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def colour_to_gray(ds: Any, arr: np.ndarray, label: str, convert_color: bool) -> np.ndarray:
    """Colour/palette frame -> float64 [0, 1] gray, or a clear error."""
    photometric = _str(ds.get("PhotometricInterpretation")) or "?"
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = np.asarray(apply_color_lut(arr, ds))
        desc = ds.get("RedPaletteColorLookupTableDescriptor") or [0, 0, 16]
        bits = 8 if int(desc[2]) == 8 else 16
        if rgb.dtype == np.uint8:
            bits = 8
    else:
        rgb = arr
        bits = _int_or(ds.get("BitsStored"), 8 * rgb.dtype.itemsize)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise _fail(label, f"colour image with unexpected decoded shape {rgb.shape}")
    peak = float(2 ** min(max(bits, 1), 32) - 1)
    if _equal_channels(rgb):
        return rgb[..., 0].astype(np.float64) / peak
    if not convert_color:
        raise _fail(
            label,
            f"colour image (PhotometricInterpretation {photometric}) but the models expect grayscale; "
            "pass convert_color=True to convert it to luminance",
        )
    return _luminance(rgb) / peak


def modality_lut(ds: Any, arr: np.ndarray, frame: int) -> tuple[np.ndarray, str]:
    """Stored values -> modality output (float64). Returns (values, description)."""
    if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence) > 0:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64), "modality_lut_sequence"
    slope = _float(_attr(ds, frame, "RescaleSlope", "PixelValueTransformationSequence"))
    intercept = _float(_attr(ds, frame, "RescaleIntercept", "PixelValueTransformationSequence"))
    out = arr.astype(np.float64)
    if slope is None and intercept is None:
        return out, "identity"
    slope = 1.0 if slope is None or slope == 0 else slope
    intercept = 0.0 if intercept is None else intercept
    return out * slope + intercept, f"rescale(slope={slope:g}, intercept={intercept:g})"


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing to [0, 1] (LINEAR, LINEAR_EXACT, SIGMOID)."""
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    # LINEAR: x <= c - 0.5 - (w-1)/2 -> 0; x > c - 0.5 + (w-1)/2 -> 1; else ((x - (c - 0.5)) / (w-1) + 0.5)
    if width <= 1.0:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _lut_array(item: Any) -> tuple[np.ndarray, int, int]:
    desc = [int(v) for v in item.LUTDescriptor]
    n_entries = desc[0] or 65536
    first, bits = desc[1], desc[2]
    raw = item.LUTData
    if isinstance(raw, (bytes, bytearray)):
        dtype = np.uint8 if (bits <= 8 and len(raw) == n_entries) else np.dtype("<u2")
        lut = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    else:
        lut = np.asarray(list(raw) if not np.isscalar(raw) else [raw], dtype=np.float64)
    if lut.size == 0:
        raise ValueError("empty LUT Data")
    return lut[:n_entries], first, bits


def voi(ds: Any, values: np.ndarray, frame: int, override: tuple[float, float] | None,
        modality: str | None) -> tuple[np.ndarray, str, tuple[float, float] | None]:
    """Modality output -> [0, 1]. Returns (pixels, description, (center, width) used or None)."""
    if override is not None:
        c, w = float(override[0]), float(override[1])
        return window(values, c, w), "window(override)", (c, w)
    seq = ds.get("VOILUTSequence")
    if seq is not None and len(seq) > 0 and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]:
        try:
            lut, first, bits = _lut_array(seq[0])
        except Exception:  # noqa: BLE001 - a broken LUT falls back to the window / default
            lut = None
        if lut is not None:
            pixel_rep = _int_or(ds.get("PixelRepresentation"), 0)
            if pixel_rep == 1 and first > 32767:
                first -= 65536
            idx = np.clip(np.rint(values - first), 0, lut.size - 1).astype(np.int64)
            peak = float(2 ** min(max(bits, 1), 16) - 1)
            return np.clip(lut[idx] / peak, 0.0, 1.0), f"voi_lut_sequence(bits={bits})", None
    center = _float(_attr(ds, frame, "WindowCenter", "FrameVOILUTSequence"))
    width = _float(_attr(ds, frame, "WindowWidth", "FrameVOILUTSequence"))
    function = _str(_attr(ds, frame, "VOILUTFunction", "FrameVOILUTSequence")) or "LINEAR"
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    if center is not None and width is not None and width > 0 and not (function == "LINEAR" and width < 1):
        return window(values, center, width, function), f"window({function})", (center, width)
    rescale_type = _str(_attr(ds, frame, "RescaleType", "PixelValueTransformationSequence"))
    if modality == "CT" or rescale_type == "HU":
        c, w = DEFAULT_CT_WINDOW
        return window(values, c, w, "LINEAR_EXACT"), "default_ct_window", (c, w)
    bits = _int_or(ds.get("BitsStored"), 16)
    if bits <= 8 and "ModalityLUTSequence" not in ds:
        signed = _int_or(ds.get("PixelRepresentation"), 0) == 1
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        slope = _float(_attr(ds, frame, "RescaleSlope", "PixelValueTransformationSequence")) or 1.0
        intercept = _float(_attr(ds, frame, "RescaleIntercept", "PixelValueTransformationSequence")) or 0.0
        a, b = sorted((lo * slope + intercept, hi * slope + intercept))
        return np.clip((values - a) / (b - a), 0.0, 1.0), "nominal_range", None
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        return np.zeros_like(values), "minmax(constant image)", None
    return (values - lo) / (hi - lo), "minmax", None


def read_dicom_bytes(data: bytes, label: str, offsets: list[int], *, frame: int, convert_color: bool,
                     max_pixels: int, window_override: tuple[float, float] | None) -> dict[str, Any]:
    """The whole pipeline; returns the fields of ``Image``."""
    ds = parse(data, label, offsets)
    check_header(ds, label, frame, max_pixels)
    info = header_info(ds, frame)
    arr = decode_frame(ds, label, frame)
    photometric = info["photometric"] or "MONOCHROME2"
    values = None
    voi_desc = "colour"
    used_window = None
    if arr.ndim == 3 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim == 2 and photometric != "PALETTE COLOR":
            # header claims colour but only one sample decoded: treat as monochrome
            photometric = "MONOCHROME2"
        else:
            gray = colour_to_gray(ds, arr, label, convert_color)
            pixels = gray
    if arr.ndim == 2 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        values, _ = modality_lut(ds, arr, frame)
        pixels, voi_desc, used_window = voi(ds, values, frame, window_override, info["modality"])
        pixels = np.clip(pixels, 0.0, 1.0).astype(np.float32)
        if photometric == "MONOCHROME1":
            pixels = np.float32(1.0) - pixels  # in float32, so it is exactly 1 - (MONOCHROME2 reading)
    if pixels.ndim != 2:
        raise _fail(label, f"decoded pixel array has unexpected shape {pixels.shape}")
    pixels = pixels.astype(np.float32)
    if not np.all(np.isfinite(pixels)):
        raise _fail(label, "decoded pixels contain NaN or infinity")
    np.clip(pixels, 0.0, 1.0, out=pixels)
    info.update(
        pixels=pixels,
        values=None if values is None else values.astype(np.float32),
        voi=voi_desc,
        window=used_window,
        frame=frame,
    )
    return info
