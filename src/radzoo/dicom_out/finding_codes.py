"""The coded concepts of radzoo's zero-shot SRs (TID 1500), in one table the model card prints.

Finding types come from pydicom's copy of the DICOM content mapping resource (PS3.16) where a
concept exists for the label; every other label gets a code in radzoo's local coding scheme
``99RADZOO`` (declared in the SR's Coding Scheme Identification Sequence), whose meaning is the
label itself. Nothing is guessed: a label is never mapped to a concept that is not in the table.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

#: radzoo's private coding scheme (PS3.3 8.2: local schemes start with "99").
LOCAL_SCHEME = "99RADZOO"
LOCAL_SCHEME_NAME = "radzoo zero-shot labels"

#: label (case-insensitive, spaces/underscores ignored) -> (scheme, code value, code meaning)
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

#: The SR's fixed concepts (TID 1500 / TID 1501 / TID 300 / TID 1001), for the model card.
REPORT_CODES: dict[str, tuple[str, str, str]] = {
    "document title (TID 1500)": ("DCM", "126000", "Imaging Measurement Report"),
    "procedure reported": ("SCT", "363679005", "Imaging procedure"),
    "observer type (TID 1002)": ("DCM", "121007", "Device"),
    "measurement concept (TID 300)": ("DCM", "122157", "Probability"),
    "measurement unit (UCUM)": ("UCUM", "1", "no units"),
    "finding type, unlisted label": (LOCAL_SCHEME, "<label slug>", "<the label>"),
}


def _norm(label: str) -> str:
    return re.sub(r"[\s_\-]+", "", label).lower()


def finding_code(label: str) -> Any:
    """The ``pydicom.sr.coding.Code`` of a zero-shot label's finding type."""
    from pydicom.sr.coding import Code

    hit = FINDING_CODES.get(_norm(label))
    if hit is not None:
        scheme, value, meaning = hit
        return Code(value, scheme, meaning)
    return Code(local_code_value(label), LOCAL_SCHEME, label[:64])


def local_code_value(label: str) -> str:
    """A Short String (<= 16 chars) code value: the label's slug, or its prefix plus a hash."""
    slug = re.sub(r"[^A-Z0-9]+", "_", label.upper()).strip("_") or "LABEL"
    if len(slug) <= 16:
        return slug
    return slug[:9] + "_" + hashlib.sha256(label.encode()).hexdigest()[:6].upper()


def measurement_codes() -> tuple[Any, Any]:
    """(concept name, unit) of each label's probability measurement."""
    from pydicom.sr.codedict import codes

    return codes.DCM.Probability, codes.UCUM.NoUnits


def coding_scheme_items() -> list[Any]:
    """The Coding Scheme Identification item declaring ``99RADZOO``."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    return [CodingSchemeIdentificationItem(designator=LOCAL_SCHEME, name=LOCAL_SCHEME_NAME,
                                           responsible_organization="radzoo")]


def card_table() -> str:
    """Markdown table of every code radzoo's SRs use (for the model card)."""
    rows = ["| use | scheme | code | meaning |", "|---|---|---|---|"]
    for use, (scheme, value, meaning) in REPORT_CODES.items():
        rows.append(f"| {use} | {scheme} | {value} | {meaning} |")
    seen = set()
    for scheme, value, meaning in FINDING_CODES.values():
        if (scheme, value) in seen:
            continue
        seen.add((scheme, value))
        rows.append(f"| finding type ({meaning}) | {scheme} | {value} | {meaning} |")
    return "\n".join(rows)
