"""Mapping radzoo's error family to HTTP statuses and one JSON error shape.

Every error body is ``{"error": {"type": ..., "message": ..., "status": ...}}`` (plus
``"errors"`` for per-item failures), so clients can branch on ``type`` and show ``message``.
User mistakes are 4xx and name the problem; a model that cannot be loaded is a 5xx that still
says why (it is the operator's problem, not the client's).
"""

from __future__ import annotations

from typing import Any

from radzoo.errors import (
    ArtifactError,
    CapabilityError,
    DeviceError,
    InputError,
    ModelNotFoundError,
    RadzooError,
    WeightsError,
)


class PayloadTooLargeError(InputError):
    """The request body or the number of items exceeds the server's limit."""


class NoUsableItemsError(InputError):
    """Every item of a request failed; the per-item errors say why."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


def status_for(exc: BaseException) -> int:
    """HTTP status for an exception raised while handling a request."""
    from radzoo.io.read_errors import ReadError

    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, ModelNotFoundError):
        return 404
    if isinstance(exc, (NoUsableItemsError, ReadError)):
        return 422
    if isinstance(exc, (InputError, CapabilityError)):
        return 400
    if isinstance(exc, (ArtifactError, WeightsError, DeviceError)):
        return 500
    if isinstance(exc, RadzooError):
        return 400
    return 500


def error_body(exc: BaseException, status: int | None = None) -> dict[str, Any]:
    """JSON body for ``exc``; unexpected exceptions get a generic message (details stay in the log)."""
    status = status if status is not None else status_for(exc)
    if isinstance(exc, RadzooError):
        message = str(exc)
        kind = type(exc).__name__
    else:
        message = "internal server error; see the server log"
        kind = "InternalError"
    body: dict[str, Any] = {"error": {"type": kind, "message": message, "status": status}}
    if isinstance(exc, NoUsableItemsError):
        body["errors"] = exc.errors
    return body


def item_error(index: int, exc: BaseException) -> dict[str, Any]:
    """One per-item failure: index, type and message (never the patient's identifiers)."""
    if isinstance(exc, RadzooError):
        return {"index": index, "type": type(exc).__name__, "message": str(exc)}
    return {"index": index, "type": "InternalError", "message": "internal error while processing this item"}
