"""The BentoML service: HTTP in, :class:`~radzoo.serving.endpoints.Endpoints` out.

Start it with ``radzoo serve`` or ``bentoml serve radzoo.serving.service:RadzooService``; settings
come from ``RADZOO_*`` environment variables (see :mod:`radzoo.serving.settings`). This module is
deliberately thin: parsing, status codes and nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import bentoml
from pydantic import BaseModel, Field, ValidationError, create_model
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from radzoo.errors import InputError, RadzooError
from radzoo.serving import metrics
from radzoo.serving.endpoints import Endpoints, Item
from radzoo.serving.guard import RequestGuard
from radzoo.serving.http_errors import error_body, status_for
from radzoo.serving.payloads import decode_image_string
from radzoo.serving.schemas import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    GroundMap,
    GroundRequest,
    ZeroShotRequest,
    ZeroShotResponse,
)
from radzoo.serving.settings import ServeSettings

log = logging.getLogger("radzoo.serving")

SETTINGS = ServeSettings.from_env()


def _respond(endpoint: str, call: Any, raw: bool = False) -> Any:
    try:
        result = call()
        return result if raw and isinstance(result, bytes) else JSONResponse(result)
    except RadzooError as exc:
        status = status_for(exc)
        metrics.error(endpoint, type(exc).__name__)
        log.info("%s: %d %s", endpoint, status, type(exc).__name__)
        return JSONResponse(error_body(exc, status), status_code=status)
    except Exception as exc:  # noqa: BLE001 - a bug: log it, answer a generic 500, keep serving
        metrics.error(endpoint, "InternalError")
        log.exception("%s: unexpected error", endpoint)
        return JSONResponse(error_body(exc, 500), status_code=500)


def _with_status(ctx: Any, result: Any, media_type: str) -> Any:
    """Bytes as ``media_type``; an error response keeps its status (a route taking ``ctx`` answers
    with ``ctx.response.status_code``, whatever the returned response says)."""
    if isinstance(result, bytes):
        return Response(result, media_type=media_type)
    ctx.response.status_code = result.status_code
    return result


def _validated(schema: type[BaseModel], fields: dict[str, Any]) -> Any:
    try:
        return schema.model_validate(fields)
    except ValidationError as exc:
        raise InputError(_validation_message(exc)) from None


def _decode_all(raw: list[Any]) -> list[Item]:
    items: list[Item] = []
    for index, value in enumerate(raw):
        try:
            items.append(decode_image_string(value, index))
        except RadzooError as exc:
            items.append(exc)
    return items


def _loose(schema: type[BaseModel], name: str) -> type[BaseModel]:
    """Wire model with the schema's fields typed ``Any``: validation happens inside, in radzoo's error shape."""
    fields = {k: (Any, Field(default=f.default if not f.is_required() else None, description=f.description))
              for k, f in schema.model_fields.items()}
    return create_model(name, **fields)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


# wire models: the request schemas with every field typed Any (schemas stay the documentation)
EmbeddingsInput = _loose(EmbeddingsRequest, "EmbeddingsInput")
ZeroShotInput = _loose(ZeroShotRequest, "ZeroShotInput")
GroundInput = _loose(GroundRequest, "GroundInput")


@bentoml.service(
    name="radzoo",
    workers=1,
    threads=SETTINGS.threads,
    traffic={"timeout": 300},
    http={"host": SETTINGS.bind_host},
)
class RadzooService:
    """Medical image embeddings, zero-shot labels, grounding maps and lung CT features over HTTP."""

    def __init__(self) -> None:
        # import the heavy stack now, so /readyz means "ready" and the first request is not slow
        import radzoo.io  # noqa: F401
        import radzoo.zoo  # noqa: F401

        self.endpoints = Endpoints(SETTINGS)
        _STATE["endpoints"] = self.endpoints
        log.info(
            "radzoo service: models=%s runtime=%s max_loaded=%d random_weights=%s auth=%s",
            ",".join(SETTINGS.models) or "(all)", SETTINGS.runtime, SETTINGS.max_loaded_models,
            SETTINGS.random_weights, "api-key" if SETTINGS.api_key else "none",
        )

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.endpoints.pool.close()

    @bentoml.api(route="/v1/embeddings", input_spec=EmbeddingsInput, output_spec=EmbeddingsResponse)
    def embeddings(self, **fields: Any) -> JSONResponse:
        """Embed base64/data-URL images (DICOM, PNG, JPEG); OpenAI embeddings request/response shape."""

        def run() -> dict[str, Any]:
            try:
                req = EmbeddingsRequest.model_validate(fields)
            except ValidationError as exc:
                raise InputError(_validation_message(exc)) from None
            raw = [req.input] if isinstance(req.input, str) else list(req.input)
            items: list[Item] = []
            for index, value in enumerate(raw):
                try:
                    items.append(decode_image_string(value, index))
                except RadzooError as exc:
                    items.append(exc)
            return self.endpoints.embed(req.model, items, output=req.output,
                                        encoding_format=req.encoding_format, endpoint="embeddings")

        return _respond("embeddings", run)

    @bentoml.api(route="/embed", output_spec=EmbeddingsResponse)
    def embed(
        self,
        files: list[Path] = Field(default_factory=list, description="image files (DICOM, PNG, JPEG); repeat the field"),
        model: str | None = Field(default=None, description="model name (GET /models)"),
        output: str | None = Field(default=None, description="named model output"),
    ) -> JSONResponse:
        """Embed uploaded image files (multipart field ``files``, repeatable)."""

        def run() -> dict[str, Any]:
            if not files:
                raise InputError("no files uploaded: send one or more images in the multipart field 'files'")
            items: list[Item] = []
            for index, path in enumerate(files):
                try:
                    items.append(Path(path).read_bytes())
                except OSError as exc:
                    items.append(InputError(f"files[{index}]: upload could not be read ({exc.strerror})"))
            # results are by upload order (index); file names are neither echoed nor logged
            return self.endpoints.embed(model if model else None, items, output=output, endpoint="embed")

        return _respond("embed", run)


    @bentoml.api(route="/zero_shot", input_spec=ZeroShotInput, output_spec=ZeroShotResponse)
    def zero_shot(self, ctx: bentoml.Context, **fields: Any) -> Response:
        """Per-label probabilities for base64/data-URL images from an image-text model (PRIOR, LoVT);
        ``?format=dicom-sr``: one DICOM image's labels as a TID 1500 SR (``application/dicom``)."""
        fmt = ctx.request.query_params.get("format", "json")

        def run() -> Any:
            if fmt not in ("json", "dicom-sr"):
                raise InputError(f"format must be 'json' or 'dicom-sr', got {fmt!r}")
            req = _validated(ZeroShotRequest, fields)
            raw = [req.input] if isinstance(req.input, str) else list(req.input)
            call = self.endpoints.zero_shot_dicom_sr if fmt == "dicom-sr" else self.endpoints.zero_shot
            return call(req.model, _decode_all(raw), labels=req.labels, prompts=req.prompts, mode=req.mode)

        return _with_status(ctx, _respond("zero_shot", run, raw=True), "application/dicom")

    @bentoml.api(route="/ground", input_spec=GroundInput, output_spec=GroundMap)
    def ground(self, ctx: bentoml.Context, **fields: Any) -> Response:
        """Similarity map of a text over an image: PNG overlay, or the raw map as JSON;
        ``?format=dicom-pmap``: a DICOM image's map as a Parametric Map (``application/dicom``)."""
        fmt = ctx.request.query_params.get("format")

        def run() -> Any:
            if fmt not in (None, "dicom-pmap"):
                raise InputError(f"format must be 'dicom-pmap' (or absent: response_format png/json), got {fmt!r}")
            req = _validated(GroundRequest, fields)
            item = _decode_all([req.image])[0]
            if fmt == "dicom-pmap":
                return self.endpoints.ground_dicom_pmap(req.model, item, req.text)
            return self.endpoints.ground(req.model, item, req.text, response_format=req.response_format)

        return _with_status(ctx, _respond("ground", run, raw=True),
                            "application/dicom" if fmt == "dicom-pmap" else "image/png")

    @bentoml.api(route="/ct_features")
    def ct_features(
        self,
        file: Path = Field(description="one CT: NIfTI (.nii/.nii.gz), MHA/NRRD, or a .zip of a DICOM series"),
        model: str | None = Field(default=None, description="a graph-CT model (GET /models)"),
        nodes: bool = Field(default=True, description="include the per-node embeddings (581 x 128)"),
        require_qa: bool = Field(default=False, description="answer 400 instead of passed=false when QA fails"),
    ) -> dict:
        """Lung CT features (graph-CT): subject embedding, node embeddings and QA."""

        def run() -> dict[str, Any]:
            try:
                data: Item = Path(file).read_bytes()
            except OSError as exc:
                data = InputError(f"upload could not be read ({exc.strerror})")
            return self.endpoints.ct_features(model if model else None, data, nodes=nodes, require_qa=require_qa)

        return _respond("ct_features", run)


# ---- GET routes (BentoML APIs are POST-only): a small Starlette app mounted beside them -------
_STATE: dict[str, Endpoints] = {}


async def _get_models(request: Request) -> JSONResponse:
    """GET /models: the models this server can serve, loaded or not, with dims and licences."""
    endpoints = _STATE.get("endpoints")
    if endpoints is None:
        return JSONResponse({"error": {"type": "NotReady", "message": "service is starting", "status": 503}},
                            status_code=503, headers={"Retry-After": "1"})
    return await run_in_threadpool(_respond, "models", endpoints.models)


RadzooService.mount_asgi_app(Starlette(routes=[Route("/models", _get_models, methods=["GET"])]), path="")
RadzooService.add_asgi_middleware(RequestGuard, settings=SETTINGS)
