"""The GET routes (BentoML APIs are POST-only): a small Starlette app mounted beside the APIs.

* ``/``: the browser page (``page/index.html`` + ``/ui/app.js`` + ``/ui/style.css``, package
  data, no build step, nothing from the internet) calling the same JSON endpoints as any client;
* ``/docs``: Swagger UI (BentoML's own copy under ``/static_content``; BentoML would put it at ``/``);
* ``/models``: the served models.

Handlers reach the running service instance through ``bentoml.get_current_service()`` (set by
BentoML once the instance exists) and answer through the same ``http_errors.answer`` as the APIs.
"""

from __future__ import annotations

from importlib import resources
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


#: Page files by URL path -> (file in ``radzoo/serving/page``, media type).
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/docs": ("docs.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/style.css": ("style.css", "text/css; charset=utf-8"),
}


async def _page_file(request: Request) -> Response:
    name, media_type = PAGE_FILES[request.url.path]
    body = resources.files("radzoo.serving").joinpath("page", name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})


def web_app() -> Starlette:
    """The Starlette app holding every GET route of the service."""
    pages = [Route(path, _page_file, methods=["GET"]) for path in PAGE_FILES]
    return Starlette(routes=[Route("/models", _models, methods=["GET"]), *pages])
