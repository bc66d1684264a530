"""Grounding heatmaps as DICOM Parametric Maps (float32 pixels, real-world value mapping), via highdicom.

The map has the source image's rows and columns (``radzoo.zeroshot.ground`` maps the model's
grid back through the preprocessing) and references it pixel for pixel (Derivation Image
Sequence, spatial locations preserved). Its geometry:

* **Source with a Frame of Reference** (CT, MR, most DX): the map lives in the source's frame of
  reference with the source's plane position, orientation and pixel spacing, which is what
  viewers such as OHIF need to lay it over the image.
* **Source without one** (every CR, many DX and secondary captures): the Parametric Map IOD still
  requires a Frame of Reference module, so the map gets a new frame of reference of its own whose
  axes are the source's pixel grid (origin at the first pixel, rows along x, columns along y,
  the source's pixel spacing). It claims no patient position; Image Comments say so, and the
  derivation reference (spatial locations preserved) ties it to the source. A source without a
  usable pixel spacing cannot be placed at all and is refused with a clear error.

Only what the IOD needs is copied from the source (``source_header``); body part and laterality
are carried over because General Series' Laterality (Type 2C) depends on them: the source's
Laterality as it is (empty included), else its Image Laterality when that is R or L.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from radzoo.dicom_out.finding_codes import measurement_codes
from radzoo.dicom_out.provenance import MANUFACTURER, Provenance
from radzoo.dicom_out.source_header import minimal_source, private_warnings, read_source
from radzoo.errors import InputError

#: Series Number of radzoo's Parametric Map series (a new series per run and study).
PMAP_SERIES_NUMBER = 9902
OWN_FRAME_NOTE = ("radzoo: the source image has no Frame of Reference; this map defines its own, "
                  "aligned with the source's pixel grid (no patient position)")


def _spacing(ds: Any) -> list[float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            floats = [float(v) for v in value] if value is not None else []
        except (TypeError, ValueError):
            continue
        if len(floats) == 2 and all(np.isfinite(f) and f > 0 for f in floats):
            return floats
    return None


def parametric_map(
    heatmap: Any,
    source: Any,
    provenance: Provenance,
    *,
    text: str,
    method: str,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
    label: str | None = None,
) -> Any:
    """A ``highdicom.pm.ParametricMap`` of ``heatmap`` (H, W float) over ``source`` (path, bytes or
    ``pydicom.Dataset``) for the grounding ``text`` computed with ``method``."""
    from radzoo.extras import require_extra

    hd = require_extra("dicom", "highdicom", feature="a DICOM Parametric Map")

    header = read_source(source, label)
    where = label or "source image"
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise InputError(f"a grounding heatmap is 2D, got shape {heat.shape}")
    if not np.isfinite(heat).all():
        raise InputError("the grounding heatmap contains NaN or infinite values")
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputError(f"{where}: a Parametric Map over a multi-frame image ({frames} frames) is not supported; "
                         "the heatmap covers frame 0 only")
    rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    if heat.shape != (rows, cols):
        raise InputError(f"{where}: heatmap {heat.shape[0]}x{heat.shape[1]} does not match the image's "
                         f"{rows}x{cols} pixels")
    spacing = _spacing(header)
    if spacing is None:
        raise InputError(f"{where}: no usable pixel spacing (PixelSpacing {header.get('PixelSpacing')}, ImagerPixelSpacing "
                         f"{header.get('ImagerPixelSpacing')}): a Parametric Map cannot be placed without one")
    src = minimal_source(header, geometry=True)
    own_frame = "FrameOfReferenceUID" not in src or "ImagePositionPatient" not in src
    if own_frame:
        src.FrameOfReferenceUID = hd.UID()
        src.PositionReferenceIndicator = None
        src.ImagePositionPatient = [0.0, 0.0, 0.0]
        src.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if "SliceThickness" not in src:
        src.SliceThickness = None  # a projection image has none; highdicom reads the attribute
    src.PixelSpacing = spacing
    thickness = src.get("SliceThickness")
    measures = hd.PixelMeasuresSequence(pixel_spacing=spacing, slice_thickness=float(thickness) if thickness else None,
                                        spacing_between_slices=src.get("SpacingBetweenSlices") or None)
    lo, hi = float(heat.min()), float(heat.max())
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6  # a constant map still needs a non-empty value range
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="similarity",
        lut_explanation=f"{method} image-text similarity"[:64],
        unit=measurement_codes()[1],  # UCUM "1": similarities have no unit
        value_range=(lo, hi),
        slope=1.0,
        intercept=0.0,
    )
    with private_warnings():
        pm = hd.pm.ParametricMap(
            source_images=[src],
            pixel_array=heat,
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=PMAP_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=provenance.model[:64],
            software_versions=f"radzoo {provenance.radzoo_version}",
            device_serial_number=provenance.revision[:64],
            contains_recognizable_visual_features=False,
            real_world_value_mappings=[mapping],
            # LINEAR_EXACT: similarity ranges are often narrower than 1, which plain LINEAR forbids
            voi_lut_transformations=[hd.VOILUTTransformation(window_center=(lo + hi) / 2, window_width=hi - lo,
                                                             voi_lut_function="LINEAR_EXACT")],
            content_label="GROUNDING",
            content_description=text[:64],
            pixel_measures=measures,
            image_flavor="VOLUME" if not own_frame else "STATIC",
            series_description=f"radzoo grounding {provenance.model}"[:64],
        )
    if "BodyPartExamined" in header and header.BodyPartExamined:
        pm.BodyPartExamined = header.BodyPartExamined
    if "Laterality" in header:  # the source's own statement, an empty one ("unknown") included
        pm.Laterality = header.Laterality if header.Laterality in ("R", "L") else None
    elif header.get("ImageLaterality") in ("R", "L"):
        pm.Laterality = header.ImageLaterality
    if own_frame:
        pm.ImageComments = OWN_FRAME_NOTE
    return pm


def grounding_pmap(result: Any, source: Any, model: Any, *, series_instance_uid: str | None = None,
                   instance_number: int = 1, label: str | None = None) -> Any:
    """The Parametric Map of a ``GroundingResult`` computed by ``model`` on ``source``."""
    from radzoo.dicom_out.provenance import provenance_of

    prov = provenance_of(model, prompt_set="ground", details=(f"method={result.method}", f"text={result.text[:48]}"))
    return parametric_map(result.heatmap, source, prov, text=result.text, method=result.method,
                          series_instance_uid=series_instance_uid, instance_number=instance_number, label=label)
