"""2D image reading: DICOM, PNG (8/16-bit), JPEG -> :class:`Image` with float32 (H, W) pixels in [0, 1].

Intensity convention (``Image.pixels``, float32, shape (H, W), values in [0, 1]):

* 8-bit PNG/JPEG: value / 255. 16-bit PNG: value / 65535. 1-bit PNG: 0 or 1.
* DICOM: stored values -> modality LUT -> VOI (VOI LUT Sequence, else the first Window
  Center/Width with its VOI LUT Function) -> MONOCHROME1 inversion, the VOI output range mapped to
  [0, 1]; i.e. what an 8-bit PNG export of the displayed image would hold, divided by 255. See
  :mod:`radzoo.io.dicom` for the defaults used when a file has no VOI (CT: HU -1024..3071; 8-bit:
  the stored range; deeper: per-image min..max).
* Colour inputs: refused unless ``convert_color=True`` (luminance; PIL ``convert("L")`` for
  PNG/JPEG, which is what the original PIL-based pipelines did). Colour images whose channels are
  all equal are grayscale stored as colour and read as such. PNG alpha is dropped.

``Image.values`` holds the modality-LUT output of monochrome DICOM (HU for CT) as float32;
``Image.hu`` returns it for CT. :func:`read_dicom_values` returns just that array.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radzoo.io import _source
from radzoo.io.read_errors import ImageReadError

#: Default decompression-bomb limit: header Rows*Columns*Frames*Samples (DICOM) or W*H (PNG/JPEG).
DEFAULT_MAX_PIXELS = 1 << 28  # 268,435,456 (e.g. 16384 x 16384)


@dataclass(eq=False)
class Image:
    """A decoded 2D image plus the metadata the models and the logs need."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1]
    source: str  # label for messages: path, file object name or "<bytes: N bytes>"
    format: str  # "dicom" | "png" | "jpeg"
    modality: str | None = None
    photometric: str | None = None  # as read from the file (DICOM) or the PIL mode (PNG/JPEG)
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm
    view_position: str | None = None
    body_part: str | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    patient_id: str | None = None  # DICOM PatientID (extraction stores it pseudonymised when asked)
    study_date: str | None = None  # DICOM StudyDate, YYYYMMDD
    bits_stored: int | None = None
    n_frames: int = 1
    frame: int = 0
    transfer_syntax: str | None = None
    voi: str = ""  # which intensity mapping was applied (e.g. "window(LINEAR)", "nominal_range")
    window: tuple[float, float] | None = None  # (center, width) applied, if any
    values: np.ndarray | None = field(default=None, repr=False)  # modality-LUT output (DICOM mono)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    @property
    def hu(self) -> np.ndarray | None:
        """Hounsfield units (float32, same shape as ``pixels``) for CT DICOM, else None."""
        return self.values if self.modality == "CT" else None

    def __repr__(self) -> str:
        return (f"Image(source={self.source!r}, format={self.format!r}, shape={self.shape}, "
                f"modality={self.modality!r}, photometric={self.photometric!r}, voi={self.voi!r})")


def read_image(source: Any, *, frame: int = 0, convert_color: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS, window: tuple[float, float] | None = None) -> Image:
    """Read a 2D image (DICOM, PNG, JPEG; sniffed by content) into an :class:`Image`.

    ``source``: path (str/Path), bytes, or a binary file object. ``frame``: which frame of a
    multi-frame DICOM (0-based). ``convert_color``: convert colour/palette images to luminance
    instead of refusing them. ``max_pixels``: decompression-bomb guard, checked from the header
    before decoding. ``window``: (center, width) in modality units overriding the file's VOI
    (DICOM monochrome only).

    Raises :class:`ImageReadError` (naming the source and the cause) for every unusable input;
    no pydicom/PIL/numpy exception escapes.
    """
    label = _source.source_label(source)
    try:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0:
            raise ImageReadError(label, f"frame must be a non-negative int, got {frame!r}")
        data, label = _source.load_bytes(source, ImageReadError)
        kind = _source.sniff(data)
        if kind == "dicom":
            from radzoo.io import dicom

            fields = dicom.read_dicom_bytes(
                data, label, _source.dicom_offsets(data), frame=int(frame), convert_color=convert_color,
                max_pixels=int(max_pixels), window_override=window,
            )
            return Image(source=label, format="dicom", **fields)
        if kind in ("png", "jpeg"):
            if frame != 0:
                raise ImageReadError(label, f"frame {frame} requested but {kind.upper()} images have one frame")
            return _read_pil(data, label, kind, convert_color, int(max_pixels))
        raise ImageReadError(label, _source.describe_unknown(data))
    except ImageReadError:
        raise
    except MemoryError as exc:
        raise ImageReadError(label, "out of memory while decoding (image too large?)") from exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the contract: only ImageReadError leaves read_image
        # (BaseException: pyo3 PanicException from Rust decoders is not an Exception)
        raise ImageReadError(label, f"unexpected {type(exc).__name__} while reading: {exc}") from exc


def read_dicom_values(source: Any, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Modality-LUT output of a monochrome DICOM frame (HU for CT) as float32 (H, W)."""
    image = read_image(source, frame=frame, max_pixels=max_pixels)
    if image.values is None:
        raise ImageReadError(image.source, f"no modality values: {image.format} image "
                             f"(photometric {image.photometric}) is not monochrome DICOM")
    return image.values


def _read_pil(data: bytes, label: str, kind: str, convert_color: bool, max_pixels: int) -> Image:
    from PIL import Image as PILImage

    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            img = PILImage.open(io.BytesIO(data))
        except PILImage.DecompressionBombError as exc:
            raise ImageReadError(label, f"image too large (Pillow decompression-bomb limit): {exc}") from exc
        except PILImage.DecompressionBombWarning as exc:
            raise ImageReadError(label, f"image too large (Pillow decompression-bomb limit): {exc}") from exc
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(label, f"not a readable {kind.upper()} ({type(exc).__name__}: {exc})") from exc
        w, h = img.size
        if w <= 0 or h <= 0:
            raise ImageReadError(label, f"zero-size image ({w}x{h})")
        if w * h > max_pixels:
            raise ImageReadError(label, f"image too large: {w}x{h} = {w * h} pixels exceeds max_pixels={max_pixels} "
                                 "(decompression-bomb guard)")
        try:
            img.load()
        except Exception as exc:  # noqa: BLE001 - truncated/corrupt streams raise OSError, SyntaxError, ...
            raise ImageReadError(label, f"{kind.upper()} data is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    mode = img.mode
    bits = 8
    if mode == "L":
        pixels = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img)
        pixels = np.clip(arr.astype(np.float32) / np.float32(65535.0), 0.0, 1.0)
        bits = 16
    elif mode == "1":
        pixels = np.asarray(img, dtype=np.float32)
        bits = 1
    elif mode == "LA":
        pixels = np.asarray(img.getchannel("L"), dtype=np.float32) / np.float32(255.0)
    elif mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "La"):
        rgb = np.asarray(img.convert("RGB"))
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            pixels = rgb[..., 0].astype(np.float32) / np.float32(255.0)
        elif convert_color:
            pixels = np.asarray(img.convert("RGB").convert("L"), dtype=np.float32) / np.float32(255.0)
        else:
            raise ImageReadError(label, f"colour {kind.upper()} (mode {mode}) but the models expect grayscale; "
                                 "pass convert_color=True to convert it to luminance")
    else:
        raise ImageReadError(label, f"unsupported {kind.upper()} pixel mode {mode!r}")
    if pixels.ndim != 2:
        raise ImageReadError(label, f"decoded {kind.upper()} has unexpected shape {pixels.shape}")
    return Image(pixels=np.ascontiguousarray(pixels, dtype=np.float32), source=label, format=kind,
                 photometric=mode, bits_stored=bits, voi="png_jpeg_full_range")
