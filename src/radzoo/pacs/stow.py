"""STOW-RS: send DICOM objects (radzoo's SRs and Parametric Maps) back to a PACS.

When the PACS refuses an instance, its own reason travels back to the user: the Failure Reason
of each refused instance in the STOW response (PS3.18 10.5.3), with the HTTP status.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radzoo.errors import InputError
from radzoo.pacs.connection import PacsConnection, parse_dicomweb_url
from radzoo.pacs.credentials import PacsAuth
from radzoo.pacs.pacs_errors import (
    PacsAuthError,
    PacsError,
    PacsNotFound,
    PacsUnreachable,
    StowRejected,
)

#: STOW-RS Failure Reason values (PS3.18 Table 10.5.3-1 / PS3.4 Annex GG) -> meaning.
FAILURE_REASONS = {
    0x0110: "Processing failure",
    0x0111: "Duplicate SOP Instance",
    0x0117: "Invalid SOP Instance",
    0x0122: "Referenced SOP Class not supported",
    0x0124: "Refused: not authorized",
    0xA700: "Refused: out of resources",
    0xA770: "Refused: out of resources (not enough storage)",
    0xA900: "Error: data set does not match SOP Class",
    0xC000: "Error: cannot understand",
    0xC122: "Referenced Transfer Syntax not supported",
    0xC123: "Study Instance UID does not match the target study",
}


@dataclass
class StowResult:
    url: str
    stored: list[str] = field(default_factory=list)  # SOP Instance UIDs the PACS accepted


def _load(item: Any) -> Any:
    import pydicom

    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        try:
            return pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the file's fault
            raise InputError(f"cannot read {path} as DICOM for STOW-RS: {exc}") from exc
    return item


def stow(datasets: Sequence[Any], url: str, *, auth: PacsAuth | None = None, timeout: float = 60.0,
         retries: int = 2, connection: PacsConnection | None = None) -> StowResult:
    """Store ``datasets`` (pydicom data sets or DICOM file paths) at ``url``.

    ``url`` is the DICOMweb root, or ``ROOT/studies/UID`` to store into one study (the PACS refuses
    instances of other studies). Raises :class:`StowRejected` with the PACS's reasons when any
    instance is refused; the others stay stored (the result lists what was).
    """
    target = parse_dicomweb_url(url)
    if target.series or target.instance:
        raise InputError(f"STOW-RS URL {url!r}: store into the DICOMweb root or one study (ROOT/studies/UID)")
    conn = connection or PacsConnection(target.root, auth=auth, timeout=timeout, retries=retries)
    items = [_load(d) for d in datasets]
    if not items:
        return StowResult(url)
    where = f"STOW-RS to {conn.url}" + (f"/studies/{target.study}" if target.study else "")
    try:
        response = conn.request(where, lambda c: c.store_instances(items, study_instance_uid=target.study))
    except (PacsAuthError, PacsNotFound, PacsUnreachable):
        raise
    except PacsError as exc:
        body = _response_dataset(exc.response)
        if body is None and exc.status is not None and exc.status >= 500:
            raise  # a server error without a STOW answer: not a refusal of the data
        raise _rejected(where, exc.status, body, items, _reason_phrase(exc.response)) from None
    stored = [str(x.ReferencedSOPInstanceUID) for x in response.get("ReferencedSOPSequence", [])]
    failed = list(response.get("FailedSOPSequence", []))
    if failed:
        raise _rejected(where, 200, response, items)
    return StowResult(url, stored)


def _response_dataset(response: Any) -> Any:
    """The STOW response body of a failed request as a data set (DICOM JSON), if there is one."""
    if response is None:
        return None
    try:
        from pydicom import Dataset

        data = json.loads(response.text)
        return Dataset.from_json(data) if isinstance(data, dict) else None
    except Exception:  # noqa: BLE001 - not DICOM JSON: no reasons to relay
        return None


def _reason_phrase(response: Any) -> str:
    return (getattr(response, "reason", "") or "").strip()


def _rejected(where: str, status: int | None, body: Any, items: list[Any], phrase: str = "") -> StowRejected:
    failed: list[tuple[str, int | None]] = []
    for entry in (body.get("FailedSOPSequence", []) if body is not None else []):
        reason = entry.get("FailureReason")
        failed.append((str(entry.get("ReferencedSOPInstanceUID", "?")), int(reason) if reason is not None else None))
    if failed:
        reasons = "; ".join(
            f"instance {i + 1} of {len(items)} ({uid}): Failure Reason "
            + (f"0x{code:04X} {FAILURE_REASONS.get(code, 'unlisted reason')}" if code is not None else "not given")
            for i, (uid, code) in enumerate(failed)
        )
    else:
        reasons = "the PACS gave no Failure Reason (the data sets may be malformed or not DICOM)"
    http = f"HTTP {status} {phrase}".strip() if status is not None else "no HTTP status"
    return StowRejected(f"{where}: the PACS refused {len(failed) or len(items)} of {len(items)} instance(s) "
                        f"({http}): {reasons}", status=status, failed=failed)
