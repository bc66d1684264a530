"""The source image's header, cut down to what radzoo's DICOM results may copy.

highdicom copies every attribute of the source's Patient, General Study, Patient Study and
Clinical Trial modules into a derived object (age, weight, medical history, institution and
station names of the acquisition equipment ...). radzoo's results go back into the hospital's
PACS and must carry only what their IODs require, so highdicom gets a copy of the source that
holds only:

* identity: SOP Class/Instance, Study/Series Instance UIDs, Modality, character set;
* the Patient module's Type 1/2 attributes (name, ID, birth date, sex) and the General Study
  module's (date, time, referring physician, study ID, accession number), so the PACS files the
  result under the same patient and study;
* for Parametric Maps, the geometry (size, frame of reference, position, orientation, spacing,
  functional groups of enhanced images) and the anatomy the IOD's conditions need (body part,
  laterality).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radzoo.errors import InputError

# highdicom logs SOP Instance UIDs at INFO and pydicom/highdicom warnings quote attribute values
# (a malformed Patient's Name is printed in full): neither may reach radzoo's logs.
logging.getLogger("highdicom").setLevel(logging.WARNING)
log = logging.getLogger(__name__)

IDENTITY = ("SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality")
#: Patient module, Type 1/2 only (PS3.3 C.7.1.1).
PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
#: General Study module, Type 1/2 only (PS3.3 C.7.2.1).
STUDY = ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
GEOMETRY = (
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "FrameOfReferenceUID", "PositionReferenceIndicator", "ImagePositionPatient", "ImageOrientationPatient",
    "PixelSpacing", "ImagerPixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "BodyPartExamined", "Laterality", "ImageLaterality",
)
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@contextlib.contextmanager
def private_warnings() -> Iterator[None]:
    """Swallow the warnings pydicom/highdicom raise while reading or building a result (they quote
    patient attribute values); only their count is logged, at DEBUG."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if caught:
        log.debug("%d pydicom/highdicom warning(s) not shown (they may quote patient data)", len(caught))


def read_source(source: Any, label: str | None = None) -> Any:
    """The header of a DICOM source (path, bytes, file object or ``pydicom.Dataset``), pixels not read.

    Raises ``InputError`` naming ``label`` when the source is not a DICOM image with its UIDs:
    a DICOM result needs a DICOM source to reference and to be filed with.
    """
    import pydicom

    if isinstance(source, pydicom.Dataset):
        ds, label = source, label or "dataset"
    else:
        if isinstance(source, (str, os.PathLike)):
            label = label or str(source)
            try:
                data = Path(source).read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read {label}: {exc.strerror or exc}") from exc
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data, label = bytes(source), label or f"<{len(source)} bytes>"
        else:
            raise InputError(f"a DICOM result needs a DICOM source (path, bytes or pydicom.Dataset), got {type(source).__name__}")
        try:
            with private_warnings():
                ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on non-DICOM input
            raise InputError(f"{label}: not a readable DICOM file ({type(exc).__name__}); DICOM results need a DICOM source") from exc
    missing = [k for k in REQUIRED if not ds.get(k)]
    if missing:
        raise InputError(f"{label}: not a DICOM image with its UIDs (missing {', '.join(missing)}); "
                         "DICOM results reference their source and need a DICOM source")
    return ds


def minimal_source(ds: Any, *, geometry: bool = False) -> Any:
    """A new data set with only the attributes listed above (``geometry`` for Parametric Maps)."""
    from pydicom import Dataset

    keep = IDENTITY + PATIENT + STUDY + (GEOMETRY if geometry else ())
    out = Dataset()
    for keyword in keep:
        if keyword in ds:
            out.add(ds.data_element(keyword))
    for keyword in PATIENT + STUDY:  # Type 2: present (empty when the source lacks them)
        if keyword not in out:
            setattr(out, keyword, None)
    return out
