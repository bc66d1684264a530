"""The BentoML service: HTTP in, :class:`~radzoo.serving.endpoints.Endpoints` out.

Start it with ``radzoo serve`` or ``bentoml serve radzoo.serving.service:RadzooService``; settings
come from ``RADZOO_*`` environment variables (see :mod:`radzoo.serving.settings`); a bento built by
``radzoo bento build`` also brings its models (:mod:`radzoo.serving.bento_models`). Each route hands
what it received to one ``Endpoints`` method through ``answer``, the one place errors become
status codes; request validation and every other decision live in ``endpoints.py``. The GET
routes (``/models``, the browser page at ``/``, Swagger at ``/docs``) are in ``web_routes.py``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import bentoml
from pydantic import Field
from starlette.responses import Response

from radzoo.serving.bento_models import bento_arguments, model_paths, with_bento
from radzoo.serving.endpoints import Endpoints
from radzoo.serving.guard import RequestGuard
from radzoo.serving.http_errors import answer
from radzoo.serving.pool import ModelPool
from radzoo.serving.schemas import (
    ClassifyInput,
    ClassifyResponse,
    DisplayInput,
    EmbeddingsInput,
    EmbeddingsResponse,
    GroundInput,
    GroundMap,
    SearchInput,
    ZeroShotInput,
    ZeroShotResponse,
)
from radzoo.serving.settings import ServeSettings
from radzoo.serving.web_routes import web_app

log = logging.getLogger("radzoo.serving")

BENTO_ARGUMENTS = bento_arguments()  # set when BentoML serves a bento built by `radzoo bento build`
MODEL_PATHS = model_paths(BENTO_ARGUMENTS)  # the bento's own model folders, by served name
SETTINGS = with_bento(ServeSettings.from_env(), BENTO_ARGUMENTS, MODEL_PATHS, dict(os.environ))


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

        self.endpoints = Endpoints(SETTINGS, ModelPool(SETTINGS, MODEL_PATHS))
        self.endpoints.start()  # loads the configured models in the background; /readyz waits for them
        log.info(
            "radzoo service: models=%s runtime=%s max_loaded=%d random_weights=%s auth=%s",
            ",".join(SETTINGS.models) or "(all)", SETTINGS.runtime, SETTINGS.max_loaded_models,
            SETTINGS.random_weights, "api-key" if SETTINGS.api_key else "none",
        )

    def __is_ready__(self) -> bool:
        """/readyz: 503 until every configured model has loaded (a failed load keeps it 503)."""
        return self.endpoints.ready()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.endpoints.close()

    @bentoml.api(route="/v1/embeddings", input_spec=EmbeddingsInput, output_spec=EmbeddingsResponse)
    def embeddings(self, **fields: Any) -> Response:
        """Embed images (DICOM, PNG, JPEG) and texts (image-text models); OpenAI's shape, plus Infinity's and vLLM's."""
        return answer("embeddings", self.endpoints.embeddings, fields)

    @bentoml.api(route="/embed", output_spec=EmbeddingsResponse)
    def embed(
        self,
        files: list[Path] = Field(default_factory=list, description="image files (DICOM, PNG, JPEG); repeat the field"),
        model: str | None = Field(default=None, description="model name (GET /models)"),
        output: str | None = Field(default=None, description="named model output"),
    ) -> Response:
        """Embed uploaded image files (multipart field ``files``, repeatable)."""
        return answer("embed", self.endpoints.embed_uploads, files, model, output)

    @bentoml.api(route="/zero_shot", input_spec=ZeroShotInput, output_spec=ZeroShotResponse)
    def zero_shot(self, ctx: bentoml.Context, **fields: Any) -> Response:
        """Per-label probabilities for base64/data-URL images from an image-text model (PRIOR, LoVT);
        ``?format=dicom-sr``: one DICOM image's labels as a TID 1500 SR (``application/dicom``)."""
        fmt = ctx.request.query_params.get("format", "json")
        return answer("zero_shot", self.endpoints.zero_shot, fields, fmt, ctx=ctx, media_type="application/dicom")

    @bentoml.api(route="/classify", input_spec=ClassifyInput, output_spec=ClassifyResponse)
    def classify(self, ctx: bentoml.Context, **fields: Any) -> Response:
        """Calibrated probabilities and decisions of a task head (``radzoo serve --heads``) on its base
        model; ``?format=dicom-sr``: one DICOM image's result as a TID 1500 SR (``application/dicom``)."""
        fmt = ctx.request.query_params.get("format", "json")
        return answer("classify", self.endpoints.classify, fields, fmt, ctx=ctx, media_type="application/dicom")

    @bentoml.api(route="/ground", input_spec=GroundInput, output_spec=GroundMap)
    def ground(self, ctx: bentoml.Context, **fields: Any) -> Response:
        """Similarity map of a text over an image: PNG overlay, or the raw map as JSON;
        ``?format=dicom-pmap``: a DICOM image's map as a Parametric Map (``application/dicom``)."""
        fmt = ctx.request.query_params.get("format")
        media = "application/dicom" if fmt == "dicom-pmap" else "image/png"
        return answer("ground", self.endpoints.ground, fields, fmt, ctx=ctx, media_type=media)

    @bentoml.api(route="/display", input_spec=DisplayInput)
    def display(self, **fields: Any) -> bytes:
        """The image as the server decoded it (windowed DICOM, not the raw bytes), as a PNG."""
        return answer("display", self.endpoints.display, fields)

    @bentoml.api(route="/ct_features")
    def ct_features(
        self,
        file: Path = Field(description="one CT: NIfTI (.nii/.nii.gz), MHA/NRRD, or a .zip of a DICOM series"),
        model: str | None = Field(default=None, description="a graph-CT model (GET /models)"),
        nodes: bool = Field(default=True, description="include the per-node embeddings (581 x 128)"),
        require_qa: bool = Field(default=False, description="answer 400 instead of passed=false when QA fails"),
    ) -> dict:
        """Lung CT features (graph-CT): subject embedding, node embeddings and QA."""
        return answer("ct_features", self.endpoints.ct_features, file, model, nodes=nodes, require_qa=require_qa)

    @bentoml.api(route="/v1/search", input_spec=SearchInput)
    def search(self, **fields: Any) -> dict:
        """Similar cases from the server's index (``radzoo serve --index``): ranked neighbours of
        images, texts (joint image-text indexes) or indexed UIDs, with scores and stored keys."""
        return answer("search", self.endpoints.search, fields)


RadzooService.mount_asgi_app(web_app(), path="")
RadzooService.add_asgi_middleware(RequestGuard, settings=SETTINGS)
