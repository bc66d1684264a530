"""The zero-shot SR's coded concepts as pydicom/highdicom objects. The table itself is data in
``radzoo.zoo.dicom_codes`` (the model card prints it); ``99RADZOO`` is declared in each SR's
Coding Scheme Identification Sequence."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from radzoo.zoo.dicom_codes import FINDING_CODES, LOCAL_SCHEME, LOCAL_SCHEME_NAME, REPORT_CODES


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


def report_code(use: str) -> Any:
    """One of the SR's fixed concepts (``REPORT_CODES``) as a ``pydicom.sr.coding.Code``."""
    from pydicom.sr.coding import Code

    scheme, value, meaning = REPORT_CODES[use]
    return Code(value, scheme, meaning)


def measurement_codes() -> tuple[Any, Any]:
    """(concept name, unit) of each label's probability measurement."""
    return report_code("measurement concept (TID 300)"), report_code("measurement unit")


def coding_scheme_items() -> list[Any]:
    """The Coding Scheme Identification item declaring ``99RADZOO``."""
    from radzoo.extras import require_extra

    schemes = require_extra("dicom", "highdicom.coding_schemes", feature="DICOM results")
    CodingSchemeIdentificationItem = schemes.CodingSchemeIdentificationItem

    return [CodingSchemeIdentificationItem(designator=LOCAL_SCHEME, name=LOCAL_SCHEME_NAME,
                                           responsible_organization="radzoo")]
