"""Zero-shot labels as a Comprehensive 3D SR following TID 1500 (Measurement Report), via highdicom.

One TID 1501 measurement group per label: its finding type is the label's coded concept
(``finding_codes``), it holds the label's probability as a numeric TID 300 measurement
(DCM 122157 "Probability", UCUM "1"), names the algorithm (TID 4019: model, weights revision,
radzoo version, prompt set) and references the source image. The observer is the algorithm
(a device, TID 1004). The SR is marked complete, unverified and preliminary: machine output that
no one has signed. Patient and study attributes are those ``source_header`` lets through.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from radzoo.dicom_out.finding_codes import (
    coding_scheme_items,
    finding_code,
    measurement_codes,
    report_code,
)
from radzoo.dicom_out.provenance import MANUFACTURER, Provenance
from radzoo.dicom_out.source_header import minimal_source, private_warnings, read_source
from radzoo.errors import InputError

#: Series Number of radzoo's SR series (a new series per run and study).
SR_SERIES_NUMBER = 9901


def measurement_report_sr(
    labels: list[str],
    probabilities: Any,
    source: Any,
    provenance: Provenance,
    *,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
    label: str | None = None,
    description: str | None = None,
) -> Any:
    """A ``highdicom.sr.Comprehensive3DSR`` with one finding (and its probability) per label.

    ``source``: the image the labels were computed on (path, bytes or ``pydicom.Dataset``);
    ``label`` names it in error messages.
    """
    from radzoo.extras import require_extra

    hd = require_extra("dicom", "highdicom", feature="a DICOM SR")

    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if len(labels) != len(probs) or not labels:
        raise InputError(f"{len(labels)} labels but {len(probs)} probabilities")
    if not np.isfinite(probs).all():
        raise InputError("zero-shot probabilities contain NaN or infinite values")
    header = read_source(source, label)
    src = minimal_source(header)
    frames = [1] if int(header.get("NumberOfFrames", 1) or 1) > 1 else None  # scored frame 0
    image_ref = hd.sr.SourceImageForMeasurementGroup(src.SOPClassUID, src.SOPInstanceUID, referenced_frame_numbers=frames)
    algorithm = provenance.algorithm_id()
    name, unit = measurement_codes()
    groups = []
    for lab, p in zip(labels, probs, strict=True):
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=lab[:64]),
                finding_type=finding_code(lab),
                algorithm_id=algorithm,
                measurements=[hd.sr.Measurement(name=name, value=float(p), unit=unit, algorithm_id=algorithm)],
                source_images=[image_ref],
            )
        )
    observer = hd.sr.ObserverContext(
        observer_type=report_code("observer type (TID 1002)"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=provenance.device_uid(), name=f"radzoo {provenance.model}"[:64], manufacturer_name=MANUFACTURER,
            model_name=provenance.model[:64]),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=report_code("procedure reported"),
        imaging_measurements=groups,
    )
    with private_warnings():
        return hd.sr.Comprehensive3DSR(
            evidence=[src],
            content=report,
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=False,
            series_description=(description or f"radzoo zero-shot {provenance.model}")[:64],
            coding_schemes=coding_scheme_items(),
        )


def zero_shot_sr(result: Any, source: Any, model: Any, *, index: int = 0, series_instance_uid: str | None = None,
                 instance_number: int = 1, label: str | None = None) -> Any:
    """The SR of image ``index`` of a ``ZeroShotResult`` computed by ``model`` on ``source``."""
    from radzoo.dicom_out.provenance import provenance_of

    if not 0 <= index < len(result.probabilities):
        raise InputError(f"image index {index} out of range for {len(result.probabilities)} results")
    prov = provenance_of(model, prompt_set=result.prompt_set, details=(f"rule={result.rule}", f"mode={result.mode}"))
    return measurement_report_sr(list(result.labels), result.probabilities[index], source, prov,
                                 series_instance_uid=series_instance_uid, instance_number=instance_number, label=label)


def head_sr(prediction: Any, source: Any, model: Any, *, index: int = 0, series_instance_uid: str | None = None,
            instance_number: int = 1, label: str | None = None) -> Any:
    """The SR of image ``index`` of a task head's ``HeadPrediction`` (``model.predict``): one
    finding per label with its calibrated probability; the algorithm is the head (name, digest),
    its parameters the operating point, thresholds, base model, revision, precision and runtime."""
    from radzoo import __version__
    from radzoo.dicom_out.provenance import Provenance
    from radzoo.extract.state import model_revision

    if not 0 <= index < len(prediction.probabilities):
        raise InputError(f"image index {index} out of range for {len(prediction.probabilities)} predictions")
    head = prediction.head
    details = (f"head={head['name']}", f"head_digest={head['digest']}", f"operating_point={prediction.operating_point}",
               *[f"threshold[{lab}]={t:.6g}" for lab, t in prediction.thresholds.items()],
               *[f"decision[{lab}]={'positive' if d else 'negative'}"
                 for lab, d in zip(prediction.labels, prediction.decisions[index], strict=True)],
               f"base_model={model.name}", f"base_revision={model_revision(model)}",
               f"base_preprocess={model.spec.preprocess.digest()}", f"base_output={head['base']['output']}",
               f"precision={prediction.precision}", f"runtime={prediction.runtime}")
    prov = Provenance(model=model.name, revision=model_revision(model), radzoo_version=__version__,
                      random_weights=bool(model.random_init), details=details,
                      algorithm_name=f"radzoo head {head['name']}"[:64], algorithm_version=head["digest"][:16])
    return measurement_report_sr(list(prediction.labels), prediction.probabilities[index], source, prov,
                                 series_instance_uid=series_instance_uid, instance_number=instance_number, label=label,
                                 description=f"radzoo head {head['name']} on {model.name}")
