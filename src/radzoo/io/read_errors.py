"""Errors raised by :mod:`radzoo.io`.

Every reader error names the source (file path, ``<bytes>`` or the file object's name) and the
cause; when a decoder plugin is missing the message says what to install. Both reader errors
derive from :class:`ReadError`, itself an :class:`radzoo.errors.InputError` (a ``RadzooError``
and a ``ValueError``), so services can map any of them to a 4xx answer.
"""

from __future__ import annotations

from radzoo.errors import InputError, RadzooError


class ReadError(InputError):
    """An image or volume could not be read; ``source`` names the input, ``cause`` says why."""

    def __init__(self, source: str, cause: str) -> None:
        self.source = source
        self.cause = cause
        super().__init__(f"cannot read {source}: {cause}")


class ImageReadError(ReadError):
    """A 2D image (DICOM, PNG, JPEG) could not be read or is unusable."""


class VolumeReadError(ReadError):
    """A 3D volume (NIfTI, MHA/NRRD, DICOM series) could not be read or is unusable."""


class TransformError(RadzooError, ValueError):
    """A preprocessing spec names an unknown op or bad parameters, or the input has the wrong shape."""
