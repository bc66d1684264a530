"""radzoo's results as standard DICOM objects (highdicom), for the hospital's PACS and viewers.

Public API::

    zero_shot_sr(result, source, model, index=0) -> highdicom.sr.Comprehensive3DSR   # TID 1500
    head_sr(prediction, source, model, index=0)   # a task head's calibrated probabilities, TID 1500
    grounding_pmap(result, source, model) -> highdicom.pm.ParametricMap              # float32 + RWVM
    measurement_report_sr(labels, probabilities, source, provenance)                 # lower level
    parametric_map(heatmap, source, provenance, text=..., method=...)
    provenance_of(model, prompt_set="") -> Provenance     # model, weights revision, radzoo version
    write_dicom(ds, out_dir) -> Path; to_bytes(ds) -> bytes
    radzoo.zoo.dicom_codes.card_markdown()                # every code the SRs use (model card)

``source`` is the image the result was computed on: a DICOM path, its bytes or a
``pydicom.Dataset``. Results copy only the patient/study attributes their IODs require (see
``source_header``) and keep the source's real UIDs: they go back into the same PACS.
Embeddings stay in Parquet (``radzoo extract``); the SR's algorithm version is the Parquet
rows' ``revision``.
"""

from __future__ import annotations

from radzoo.dicom_out.dicom_files import DicomOutputError, SeriesPlan, to_bytes, write_dicom
from radzoo.dicom_out.finding_codes import finding_code
from radzoo.dicom_out.measurement_report import (
    SR_SERIES_NUMBER,
    head_sr,
    measurement_report_sr,
    zero_shot_sr,
)
from radzoo.dicom_out.parametric_map import PMAP_SERIES_NUMBER, grounding_pmap, parametric_map
from radzoo.dicom_out.provenance import Provenance, provenance_of
from radzoo.dicom_out.source_header import minimal_source, read_source

__all__ = [
    "PMAP_SERIES_NUMBER",
    "SR_SERIES_NUMBER",
    "DicomOutputError",
    "Provenance",
    "SeriesPlan",
    "finding_code",
    "grounding_pmap",
    "head_sr",
    "measurement_report_sr",
    "minimal_source",
    "parametric_map",
    "provenance_of",
    "read_source",
    "to_bytes",
    "write_dicom",
    "zero_shot_sr",
]
