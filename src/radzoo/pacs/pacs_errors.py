"""What can go wrong when talking to a PACS, as ``RadzooError`` subclasses the callers already catch.

Messages name the DICOMweb endpoint and the resource (a WADO-RS path made of UIDs), never patient
data, response bodies of image requests, or credentials.
"""

from __future__ import annotations

from typing import Any

from radzoo.errors import RadzooError


class PacsError(RadzooError, RuntimeError):
    """A DICOMweb request failed (after retries where retrying makes sense)."""

    def __init__(self, message: str, *, status: int | None = None, response: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.response = response  # the HTTP response, when there was one (STOW reads its body)


class PacsUnreachable(PacsError):
    """No HTTP answer at all: connection refused, DNS failure or timeouts on every attempt."""


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401) or the permission (HTTP 403)."""


class PacsNotFound(PacsError):
    """The PACS answered 404 for the resource."""


class StowRejected(PacsError):
    """STOW-RS: the PACS refused to store one or more instances; the message relays its reasons."""

    def __init__(self, message: str, *, status: int | None = None, failed: list[tuple[str, int | None]] | None = None) -> None:
        super().__init__(message, status=status)
        self.failed = failed or []  # (SOP Instance UID, Failure Reason) per refused instance
