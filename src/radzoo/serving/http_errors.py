"""Mapping radzoo's error family to HTTP statuses and one JSON error shape.

Every error body is ``{"error": {"type": ..., "message": ..., "status": ...}}`` (plus
``"errors"`` for per-item failures), so clients can branch on ``type`` and show ``message``.
User mistakes are 4xx and name the problem; a model that cannot be loaded is a 5xx that still
says why (it is the operator's problem, not the client's); a feature whose optional package is not
installed answers 501 with the ``pip install 'radzoo[extra]'`` command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from radzoo.errors import (
    ArtifactError,
    CapabilityError,
    DeviceError,
    InputError,
    MissingExtra,
    ModelNotFoundError,
    RadzooError,
    WeightsError,
)

log = logging.getLogger("radzoo.serving")


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

    if isinstance(exc, MissingExtra):  # this install lacks an optional package: the message names the extra
        return 501
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


def answer(endpoint: str, call: Callable[..., Any], *args: Any, ctx: Any = None, media_type: str = "image/png",
           **kwargs: Any) -> Any:
    """Run one endpoint and turn its result into an HTTP response: the one place errors are mapped.

    A dict becomes JSON, bytes a ``media_type`` body; a ``RadzooError`` becomes its 4xx/5xx JSON
    error, anything else a logged generic 500 (the server keeps serving). ``ctx``: the route's
    ``bentoml.Context`` when it takes one (BentoML then answers with ``ctx.response.status_code``,
    so the status is copied there).
    """
    response = _respond(endpoint, call, args, kwargs, media_type)
    if ctx is not None:
        ctx.response.status_code = response.status_code
    return response


def _respond(endpoint: str, call: Callable[..., Any], args: tuple, kwargs: dict, media_type: str) -> Any:
    from starlette.responses import JSONResponse, Response

    from radzoo.serving import metrics

    try:
        result = call(*args, **kwargs)
    except RadzooError as exc:
        status = status_for(exc)
        metrics.error(endpoint, type(exc).__name__)
        log.info("%s: %d %s", endpoint, status, type(exc).__name__)
        return JSONResponse(error_body(exc, status), status_code=status)
    except Exception as exc:  # noqa: BLE001 - a bug: log it, answer a generic 500, keep serving
        metrics.error(endpoint, "InternalError")
        log.exception("%s: unexpected error", endpoint)
        return JSONResponse(error_body(exc, 500), status_code=500)
    if isinstance(result, bytes):
        return Response(result, media_type=media_type)
    return JSONResponse(result)
