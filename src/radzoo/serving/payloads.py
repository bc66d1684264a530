"""Request payload decoding: base64 strings and data URLs -> bytes, with errors that name the item."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from radzoo.errors import InputError

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)
_WHITESPACE = re.compile(r"\s+")

#: Media types accepted in data URLs (the reader sniffs the content anyway).
IMAGE_MEDIA_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "application/dicom", "image/dicom", "application/octet-stream"}
)


def decode_image_string(value: str, index: int) -> bytes:
    """A base64 string or a ``data:<type>;base64,...`` URL -> the file's bytes.

    URLs of other schemes are refused on purpose: the server never fetches remote content.
    """
    if not isinstance(value, str):
        raise InputError(f"input[{index}]: expected a base64 string or data URL, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InputError(f"input[{index}]: empty string")
    if text[:8].lower().startswith(("http://", "https://", "file:/")):
        raise InputError(f"input[{index}]: URLs are not fetched; send the image itself as base64 or a data URL")
    if text[:5].lower() == "data:":
        match = _DATA_URL.match(text)
        if not match:
            raise InputError(f"input[{index}]: malformed data URL (expected data:<type>;base64,<data>)")
        mime = (match.group("mime") or "").lower()
        if mime and mime not in IMAGE_MEDIA_TYPES:
            raise InputError(
                f"input[{index}]: data URL media type {mime!r} is not an image this server reads "
                f"(DICOM, PNG or JPEG)"
            )
        if not match.group("b64"):
            raise InputError(f"input[{index}]: data URL must be base64-encoded (';base64,')")
        text = text[match.end():]
    text = _WHITESPACE.sub("", text)
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"input[{index}]: not valid base64 ({exc})") from exc
    if not data:
        raise InputError(f"input[{index}]: decodes to 0 bytes")
    return data


def content_tag(data: bytes) -> str:
    """A short content hash to correlate log lines with requests without logging identifiers."""
    return hashlib.sha256(data).hexdigest()[:12]
