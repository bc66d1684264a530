"""Imaging I/O: 2D images (DICOM/PNG/JPEG), CT volumes (NIfTI, MHA/NRRD, DICOM series) and
the spec-driven preprocessing that turns them into model inputs.

Public API::

    read_image(source, *, frame=0, convert_color=False, max_pixels=DEFAULT_MAX_PIXELS, window=None) -> Image
    read_dicom_values(source, *, frame=0, max_pixels=...) -> np.ndarray   # HU for CT
    read_volume(source, *, modality="CT", series_uid=None, irregular="resample", ...) -> Volume
    resample(volume, spacing=(1, 1, 1), interpolator="bspline", default_value=-1024, size=None) -> Volume
    sniff_format(data) -> "png" | "jpeg" | "dicom" | "unknown"   # by content, never the extension
    describe_unknown(data) -> str                                  # what a non-image file looks like
    transforms.make_transform(preprocess) -> callable
    preprocess_image(image_or_array, preprocess) -> torch.Tensor
    preprocess_batch(images, preprocess) -> torch.Tensor

Heavy dependencies (pydicom, Pillow, SimpleITK, torch) are imported lazily, inside the calls.
"""

from __future__ import annotations

from radzoo.io._source import describe_unknown
from radzoo.io._source import sniff as sniff_format
from radzoo.io.image import DEFAULT_MAX_PIXELS, Image, read_dicom_values, read_image
from radzoo.io.read_errors import ImageReadError, ReadError, TransformError, VolumeReadError
from radzoo.io.transforms import make_transform, preprocess_batch, preprocess_image
from radzoo.io.volume import Volume, read_volume, resample

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Image",
    "ImageReadError",
    "ReadError",
    "TransformError",
    "Volume",
    "VolumeReadError",
    "describe_unknown",
    "make_transform",
    "preprocess_batch",
    "preprocess_image",
    "read_dicom_values",
    "read_image",
    "read_volume",
    "resample",
    "sniff_format",
]
