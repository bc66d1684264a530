"""Which SOP classes hold pixel images a 2D encoder can read, decided from QIDO metadata alone.

A DICOMweb study also holds structured reports, presentation states, key-object selections,
segmentations, parametric maps (radzoo's own results among them), RT objects, waveforms and
encapsulated documents. Those are skipped before any pixel data is transferred.
"""

from __future__ import annotations

#: SOP Class UID prefixes of storage classes without a readable image (PS3.4 B.5): name for messages.
NON_IMAGE_PREFIXES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report / key object selection",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.9.": "waveform",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
    "1.2.840.10008.5.1.4.1.1.481.": "radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.66": "raw data / spatial registration / segmentation / fiducials / surface",
    "1.2.840.10008.5.1.4.1.1.67": "real world value mapping",
    "1.2.840.10008.5.1.4.1.1.68.": "surface / point cloud",
    "1.2.840.10008.5.1.4.1.1.4.2": "MR spectroscopy",
    "1.2.840.10008.5.1.4.1.1.30": "parametric map",
    "1.2.840.10008.5.1.4.1.1.90.": "content assessment",
    "1.2.840.10008.5.1.4.1.1.91.": "microscopy bulk annotations",
}


def non_image_kind(sop_class_uid: str | None) -> str | None:
    """What a non-image instance is (for the skip message), or None for (possibly) an image."""
    if not sop_class_uid:
        return None
    for prefix, kind in NON_IMAGE_PREFIXES.items():
        if sop_class_uid.startswith(prefix) or sop_class_uid == prefix.rstrip("."):
            return kind
    return None


def sop_class_name(sop_class_uid: str | None) -> str:
    """The registered name (``Comprehensive 3D SR Storage``) or the UID itself."""
    if not sop_class_uid:
        return "unknown SOP class"
    from pydicom.uid import UID

    name = UID(sop_class_uid).name
    return name if name and name != sop_class_uid else sop_class_uid
