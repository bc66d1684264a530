"""The GET routes (BentoML APIs are POST-only): a small Starlette app mounted beside the APIs.

Handlers reach the running service instance through ``bentoml.get_current_service()`` (set by
BentoML once the instance exists) and answer through the same ``http_errors.answer`` as the APIs.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from radzoo.serving.http_errors import answer


def _endpoints() -> Any:
    """The running service's ``Endpoints``, or None while the instance is being created."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        return bentoml.get_current_service().endpoints
    except BentoMLException:
        return None


def _starting() -> JSONResponse:
    return JSONResponse({"error": {"type": "NotReady", "message": "service is starting", "status": 503}},
                        status_code=503, headers={"Retry-After": "1"})


async def _models(request: Request) -> Response:
    """GET /models: the models this server can serve, loaded or not, with dims, capabilities and licences."""
    endpoints = _endpoints()
    if endpoints is None:
        return _starting()
    return await run_in_threadpool(answer, "models", endpoints.models)


def web_app() -> Starlette:
    """The Starlette app holding every GET route of the service."""
    return Starlette(routes=[Route("/models", _models, methods=["GET"])])
