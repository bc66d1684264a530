"""Turning a ``source`` (path, bytes, binary file object) into bytes plus a label, and sniffing formats."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICM_OFFSET = 128

#: Explicit-VR value representations, used to recognise a DICOM data set without preamble.
_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}


def source_label(source: Any) -> str:
    """A short human label for error messages: the path, the file object's name, or ``<bytes>``."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes: {len(source)} bytes>"
    name = getattr(source, "name", None)
    if isinstance(name, (str, os.PathLike)):
        return str(name)
    return f"<{type(source).__name__}>"


def load_bytes(source: Any, error_cls: type[Exception]) -> tuple[bytes, str]:
    """Read ``source`` fully; raise ``error_cls(label, cause)`` on any failure."""
    label = source_label(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), label
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise error_cls(label, "file not found")
        if path.is_dir():
            raise error_cls(label, "is a directory, not an image file")
        try:
            return path.read_bytes(), label
        except OSError as exc:
            raise error_cls(label, f"could not read the file ({exc.strerror or exc})") from exc
    read = getattr(source, "read", None)
    if callable(read):
        try:
            data = read()
        except Exception as exc:  # noqa: BLE001 - any file object failure becomes a read error
            raise error_cls(label, f"reading the file object failed ({type(exc).__name__}: {exc})") from exc
        if isinstance(data, str):
            raise error_cls(label, "file object is in text mode; open it with 'rb'")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise error_cls(label, f"file object returned {type(data).__name__}, expected bytes")
        return bytes(data), label
    raise error_cls(label, f"unsupported source type {type(source).__name__} (expected a path, bytes or a binary file object)")


def dicom_offsets(data: bytes) -> list[int]:
    """Offsets at which a DICOM data set may start.

    ``[128 + 4]``-style Part 10 files (``DICM`` at 128) return ``[0]``. Files without preamble or
    file meta are recognised when a group 0x0002/0x0008 tag (little endian) or 0x0008 (big endian)
    followed by a plausible explicit VR or implicit length appears within the first bytes.
    """
    if data[DICM_OFFSET : DICM_OFFSET + 4] == b"DICM":
        return [0]
    if data.startswith(b"DICM"):  # preamble missing but prefix present
        return [0]
    found: list[int] = []
    for off in range(0, min(len(data) - 8, 132)):
        head = data[off : off + 2]
        if head not in (b"\x02\x00", b"\x08\x00", b"\x00\x08"):
            continue
        vr = data[off + 4 : off + 6]
        if vr in _VRS:
            found.append(off)
        elif head != b"\x00\x08":
            length = int.from_bytes(data[off + 4 : off + 8], "little")
            if 0 < length < min(len(data), 1 << 16) and data[off + 3] == 0:
                found.append(off)
        if len(found) >= 3:
            break
    return found


def sniff(data: bytes) -> str:
    """``"png"``, ``"jpeg"``, ``"dicom"`` or ``"unknown"`` from the content (never the extension)."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if dicom_offsets(data):
        return "dicom"
    return "unknown"


def describe_unknown(data: bytes) -> str:
    """A hint about what a non-image file is, for error messages."""
    if not data:
        return "the file is empty (0 bytes)"
    head = data[:8]
    hints = {
        b"\x1f\x8b": "gzip data (a .nii.gz volume? use read_volume)",
        b"PK\x03\x04": "a zip archive (a zipped DICOM series? use read_volume)",
        b"%PDF": "a PDF document",
        b"GIF8": "a GIF image (not supported)",
        b"BM": "a BMP image (not supported)",
        b"II*\x00": "a TIFF image (not supported)",
        b"MM\x00*": "a TIFF image (not supported)",
        b"NRRD": "an NRRD volume (use read_volume)",
        b"\x00\x00\x00\x0cjP": "a JPEG 2000 file (not supported outside DICOM)",
    }
    for magic, what in hints.items():
        if head.startswith(magic):
            return f"not a DICOM, PNG or JPEG image: it looks like {what}"
    if len(data) > 348 and data[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "not a DICOM, PNG or JPEG image: it looks like a NIfTI volume (use read_volume)"
    return "not a DICOM, PNG or JPEG image (no DICM prefix, DICOM tag, PNG or JPEG signature found)"
