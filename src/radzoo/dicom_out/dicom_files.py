"""Writing radzoo's DICOM results: whole files only (temporary name, then an atomic rename),
named after what they are and their SOP Instance UID; one new series per run, study and kind."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

from radzoo.errors import RadzooError

_PREFIX = {"1.2.840.10008.5.1.4.1.1.88.34": "sr", "1.2.840.10008.5.1.4.1.1.30": "pm"}


class DicomOutputError(RadzooError, OSError):
    """A result could not be written (permissions, full disk); nothing partial is left behind."""


def to_bytes(ds: Any) -> bytes:
    """A result as a Part-10 byte stream (``application/dicom``)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom(ds: Any, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``ds`` into ``out_dir`` as ``<sr|pm>-<SOPInstanceUID>.dcm``, atomically."""
    folder = Path(out_dir)
    name = f"{_PREFIX.get(str(ds.SOPClassUID), 'dicom')}-{ds.SOPInstanceUID}.dcm"
    final = folder / name
    tmp = folder / f".tmp-{uuid.uuid4().hex}-{name}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = to_bytes(ds)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DicomOutputError(f"cannot write {final}: {exc.strerror or exc}") from exc
    return final


class SeriesPlan:
    """One new Series Instance UID per (study, kind) for a run, and instance numbers within it."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], str] = {}
        self._count: dict[tuple[str, str], int] = {}

    def next(self, study_uid: str, kind: str) -> tuple[str, int]:
        """(series UID, instance number) for the next ``kind`` result of ``study_uid``."""
        from pydicom.uid import generate_uid

        key = (study_uid, kind)
        if key not in self._series:
            self._series[key] = generate_uid()
        self._count[key] = self._count.get(key, 0) + 1
        return self._series[key], self._count[key]
