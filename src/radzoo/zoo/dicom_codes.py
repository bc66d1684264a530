"""The coded concepts of radzoo's DICOM results, as pure data: one table that the SR writer
(``radzoo.dicom_out``) uses and the model card prints.

Finding types come from the DICOM content mapping resource (PS3.16, as shipped in pydicom's
concept dictionary) where a concept exists for the label; every other label gets a code in
radzoo's local coding scheme ``99RADZOO`` whose meaning is the label itself. A label is never
mapped to a concept that is not in this table.
"""

from __future__ import annotations

#: radzoo's private coding scheme (PS3.3 8.2: local schemes start with "99").
LOCAL_SCHEME = "99RADZOO"
LOCAL_SCHEME_NAME = "radzoo zero-shot labels"

#: normalised label (lower case, no spaces/underscores/hyphens) -> (scheme, code value, code meaning)
FINDING_CODES: dict[str, tuple[str, str, str]] = {
    "pleuraleffusion": ("SCT", "60046008", "Pleural effusion"),
    "effusion": ("SCT", "60046008", "Pleural effusion"),  # NIH ChestX-ray14's "Effusion" is pleural
    "cardiomegaly": ("SCT", "287272002", "Cardiomegaly"),
    "pneumothorax": ("SCT", "36118008", "Pneumothorax"),
    "edema": ("SCT", "19242006", "Pulmonary edema"),  # CheXpert / NIH "Edema" on a chest X-ray
    "pulmonaryedema": ("SCT", "19242006", "Pulmonary edema"),
    "nodule": ("SCT", "27925004", "Nodule"),
    "mass": ("SCT", "4147007", "Mass"),
    "fibrosis": ("SCT", "112674009", "Fibrosis"),
    "infiltration": ("DCM", "112121", "Infiltrate"),
    "infiltrate": ("DCM", "112121", "Infiltrate"),
}

#: The fixed concepts of the zero-shot SR (TID 1500 / 1501 / 300 / 1001 / 4019).
REPORT_CODES: dict[str, tuple[str, str, str]] = {
    "document title (TID 1500)": ("DCM", "126000", "Imaging Measurement Report"),
    "procedure reported": ("SCT", "363679005", "Imaging procedure"),
    "observer type (TID 1002)": ("DCM", "121007", "Device"),
    "measurement concept (TID 300)": ("DCM", "122157", "Probability"),
    "measurement unit": ("UCUM", "1", "no units"),
    "finding type of any other label": (LOCAL_SCHEME, "<label slug, <= 16 chars>", "<the label>"),
}


def card_markdown() -> list[str]:
    """Model-card lines: what the DICOM results hold and every code the SR uses."""
    lines = [
        "## DICOM results",
        "",
        "`radzoo zero-shot --dicom-sr` writes a Comprehensive 3D SR following TID 1500 (Measurement Report):",
        "one TID 1501 measurement group per label with the label's probability as a TID 300 numeric",
        "measurement, the source image referenced, the algorithm identified (TID 4019: name = model,",
        "version = weights revision as in the Parquet rows, parameters = radzoo version and prompt set).",
        "`radzoo ground --dicom-pmap` writes a Parametric Map (float32, real-world value mapping, unit",
        "UCUM `1`) on the source image's frame of reference (its own, pixel-grid aligned, when the source",
        "has none). Codes used:",
        "",
        "| use | scheme | code | meaning |",
        "|---|---|---|---|",
    ]
    for use, (scheme, value, meaning) in REPORT_CODES.items():
        lines.append(f"| {use} | {scheme} | {value} | {meaning} |")
    seen: set[tuple[str, str]] = set()
    for scheme, value, meaning in FINDING_CODES.values():
        if (scheme, value) not in seen:
            seen.add((scheme, value))
            lines.append(f"| finding type | {scheme} | {value} | {meaning} |")
    return [*lines, ""]
