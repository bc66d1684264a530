"""What each HTTP endpoint does, free of BentoML: request fields in, JSON-ready dicts (or PNG bytes) out.

One public method per route takes what the HTTP layer received (the JSON body's fields, or the
multipart uploads' paths) and returns the answer or raises a ``RadzooError``;
``http_errors.answer`` turns either into a response. So every behaviour is testable in-process
and ``service.py`` stays a list of routes. Decoding is ``radzoo.io.read_image``; preprocessing and
inference are ``Model.prepare`` and ``embed_batch`` (via the pool's batcher). Nothing here
re-implements either.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError, RadzooError
from radzoo.serving import metrics
from radzoo.serving.http_errors import NoUsableItemsError, PayloadTooLargeError, item_error
from radzoo.serving.payloads import content_tag
from radzoo.serving.pool import ModelPool
from radzoo.serving.request_items import Item, TextItem, image_bytes, parse_items, request_kind
from radzoo.serving.schemas import (
    ClassifyRequest,
    DisplayRequest,
    EmbeddingsRequest,
    GroundRequest,
    ZeroShotRequest,
    parse_request,
)
from radzoo.serving.served_heads import ServedHeads
from radzoo.serving.settings import ServeSettings
from radzoo.serving.similar_cases import SimilarCases
from radzoo.serving.url_fetch import UrlFetcher

log = logging.getLogger(__name__)


class Endpoints:
    """The server's operations over one :class:`ModelPool`."""

    #: Routes the service exposes (listed by GET /models so clients can discover them).
    ROUTES = ("/v1/embeddings", "/embed", "/zero_shot", "/ground", "/display", "/ct_features", "/models",
              "/classify", "/v1/search")

    def __init__(self, settings: ServeSettings, pool: ModelPool | None = None) -> None:
        self.settings = settings
        self.pool = pool or ModelPool(settings)
        self.fetcher = UrlFetcher(settings)
        self.heads = ServedHeads(settings.heads)
        missing = [m for m in self.heads.base_models() if settings.models and m not in settings.models]
        if missing:
            raise InputError(f"served heads need base model(s) {missing}, which are not among the served models "
                             f"{list(settings.models)}: add them to --models")
        self.similar = SimilarCases(self)
        for name in _TEXT_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _NoRequestText) for f in logger.filters):
                logger.addFilter(_NoRequestText())

    # ---- start-up, readiness, shutdown ---------------------------------------------------------
    def start(self) -> None:
        """Load the configured models in the background; ``ready()`` answers once they are checked."""
        threading.Thread(target=self.pool.preload, name="radzoo-preload", daemon=True).start()

    def ready(self) -> bool:
        return self.pool.ready()

    def close(self) -> None:
        self.pool.close()

    # ---- GET /models -------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "ready": self.ready(),
            "startup_checked": self.pool.preloaded.is_set(),
            "data": self.pool.describe(),
            "default_model": self.settings.resolved_default_model(),
            "max_loaded_models": self.settings.max_loaded_models,
            "runtime": self.settings.runtime,
            "precision": self.settings.precision,
            "endpoints": list(self.ROUTES),
            "heads": self.heads.describe(),
            "index": self.similar.describe(),
        }

    # ---- POST /v1/search -------------------------------------------------------------------------
    def search(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Similar cases by image, text or indexed UID (``radzoo.serving.similar_cases``)."""
        return self.similar.search(fields)

    # ---- POST /v1/embeddings and /embed ---------------------------------------------------------
    def embeddings(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/embeddings: images and/or texts in any accepted shape (see ``request_items``)."""
        req = parse_request(EmbeddingsRequest, fields)
        raw = [req.input] if isinstance(req.input, (str, dict)) else list(req.input)
        kind = request_kind(req.input_type, req.modality)
        return self.embed(req.model, parse_items(raw, kind, self.fetcher), output=req.output,
                          encoding_format=req.encoding_format, endpoint="embeddings")

    def embed_uploads(self, files: list[Path], model: str | None = None, output: str | None = None) -> dict[str, Any]:
        """POST /embed: multipart uploads; results by upload order (file names are neither echoed nor logged)."""
        if not files:
            raise InputError("no files uploaded: send one or more images in the multipart field 'files'")
        items: list[Item] = []
        for index, path in enumerate(files):
            try:
                items.append(Path(path).read_bytes())
            except OSError as exc:
                items.append(InputError(f"files[{index}]: upload could not be read ({exc.strerror})"))
        return self.embed(model or None, items, output=output, endpoint="embed")

    def embed(
        self,
        model_name: str | None,
        items: list[Item],
        *,
        output: str | None = None,
        encoding_format: str = "float",
        endpoint: str = "embeddings",
    ) -> dict[str, Any]:
        """Embeddings of every usable item, images and texts; failed items are reported by index, not fatal.

        With text items an image-text model answers in its joint space (output ``global``) for
        images too, so every vector of the answer is comparable; a model without a text tower
        reports each text item as an error naming what it can do.
        """
        from radzoo.resolve import JOINT_OUTPUT

        self._check_count(items)
        if encoding_format not in ("float", "base64"):
            raise InputError(f"encoding_format must be 'float' or 'base64', got {encoding_format!r}")
        entry = self.pool.get(self.pool.check_served(model_name))
        model = entry.model
        texts = [(i, item.text) for i, item in enumerate(items) if isinstance(item, TextItem)]
        others = [(i, item) for i, item in enumerate(items) if not isinstance(item, TextItem)]
        if others:
            model.spec.require("embed", "2D image embeddings (CT volumes go to /ct_features)")
        joint = bool(texts) and "text" in model.capabilities
        if joint and output not in (None, JOINT_OUTPUT):
            raise InputError(f"text embeddings live in the joint space (output {JOINT_OUTPUT!r}); "
                             f"requests with text items cannot ask for output {output!r}")
        out_name = model.resolve_output(JOINT_OUTPUT if joint else output)

        images, indices, errors = self._decode(others, model, endpoint)
        vectors: dict[int, np.ndarray] = {}
        if images:
            rows = entry.embed_batch(model.prepare(images).numpy(), out_name)
            vectors.update(zip(indices, rows, strict=True))
        if texts:
            vectors.update(self._embed_texts(model, texts, errors, endpoint))
        if not vectors:
            first = errors[0]["message"] if errors else "no usable input"
            more = f" (and {len(errors) - 1} more, see 'errors')" if len(errors) > 1 else ""
            raise NoUsableItemsError(f"none of the {len(items)} inputs could be used: {first}{more}", errors)
        metrics.items_processed(model.name, endpoint, len(vectors))
        data = [{"object": "embedding", "index": i, "embedding": _vector(vectors[i], encoding_format)}
                for i in sorted(vectors)]
        n_texts = sum(1 for i, _ in texts if i in vectors)
        return {
            "object": "list",
            "data": data,
            "model": model.name,
            "output": out_name,
            "dim": int(model.outputs[out_name]),
            "usage": {"prompt_tokens": 0, "total_tokens": 0, "images": len(vectors) - n_texts, "texts": n_texts},
            "errors": sorted(errors, key=lambda e: e["index"]),
            "random_weights": bool(model.random_init),
            "runtime": entry.runtime,
            "precision": entry.precision,
        }

    def _embed_texts(self, model: Any, texts: list[tuple[int, str]], errors: list[dict[str, Any]],
                     endpoint: str) -> dict[int, np.ndarray]:
        """Joint-space vectors of the text items (appending their errors); texts are never logged."""
        from radzoo.serving.batching import INFERENCE_LOCK

        try:
            model.spec.require("text", "text embeddings")
            with INFERENCE_LOCK:
                rows = model.embed_text([t for _, t in texts])
        except RadzooError as exc:
            errors += [item_error(i, exc) for i, _ in texts]
            metrics.error(endpoint, type(exc).__name__, len(texts))
            return {}
        return {i: row for (i, _), row in zip(texts, rows, strict=True)}

    # ---- POST /display -------------------------------------------------------------------------
    def display(self, fields: Mapping[str, Any]) -> bytes:
        """The image as the server decoded it (DICOM: modality/VOI LUT applied), as an 8-bit PNG."""
        req = parse_request(DisplayRequest, fields)
        return self.display_png(image_bytes(req.image, 0, self.fetcher), req.max_side)

    def display_png(self, data: bytes, max_side: int) -> bytes:
        """``data`` decoded as the server decodes it, as an 8-bit PNG of at most ``max_side`` pixels."""
        import io

        from PIL import Image as PILImage

        from radzoo.io import read_image

        image = read_image(data, max_pixels=self.settings.max_pixels)
        pixels = np.clip(np.nan_to_num(np.asarray(image.pixels, dtype=np.float32)), 0.0, 1.0)
        picture = PILImage.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L")
        picture.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
        out = io.BytesIO()
        picture.save(out, format="PNG")
        return out.getvalue()

    # ---- shared: decode items, keep per-item errors ----------------------------------------------
    def _check_count(self, items: list[Any]) -> None:
        if not items:
            raise InputError("no images in the request: send at least one")
        if len(items) > self.settings.max_items:
            raise PayloadTooLargeError(
                f"{len(items)} images in one request exceeds the server limit of {self.settings.max_items} "
                "(RADZOO_MAX_ITEMS); split the request"
            )

    def _read_items(self, items: list[Item], model: Any, endpoint: str) -> tuple[list[Any], list[int], list[dict[str, Any]]]:
        """Decoded images of a request (at least one, else a 422 listing each item's error)."""
        self._check_count(items)
        images, indices, errors = self._decode(list(enumerate(items)), model, endpoint)
        if not images:
            first = errors[0]["message"] if errors else "no usable input"
            more = f" (and {len(errors) - 1} more, see 'errors')" if len(errors) > 1 else ""
            raise NoUsableItemsError(f"none of the {len(items)} images could be used: {first}{more}", errors)
        return images, indices, errors

    def _decode(self, items: list[tuple[int, Item]], model: Any, endpoint: str) -> tuple[list[Any], list[int], list[dict[str, Any]]]:
        """Decoded images (checked against the model's modality and the size floor) plus per-item errors."""
        from radzoo.io import read_image
        from radzoo.zoo.pixels import check_modality

        images, indices, errors = [], [], []
        floor = self.settings.min_image_side
        for index, item in items:
            try:
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, TextItem):
                    raise InputError(f"input[{index}]: a text where this endpoint takes images")
                image = read_image(item, max_pixels=self.settings.max_pixels)
                check_modality(image, model.spec.modality, f"input[{index}]")
                height, width = image.shape
                if min(height, width) < floor:
                    raise InputError(f"input[{index}]: image is {width}x{height} pixels, below this server's minimum "
                                     f"of {floor} pixels per side (RADZOO_MIN_IMAGE_SIDE)")
                images.append(image)
                indices.append(index)
            except RadzooError as exc:
                errors.append(item_error(index, exc))
                log.info("%s: item %d (sha256:%s) rejected: %s", endpoint, index,
                         content_tag(item) if isinstance(item, bytes) else "-", type(exc).__name__)
        for err in errors:
            metrics.error(endpoint, err["type"])
        return images, indices, errors

    def _capable(self, model_name: str | None, capability: str, what: str) -> Any:
        """The pool entry of a served model that has ``capability`` (else a 422 naming what it offers)."""
        entry = self.pool.get(self.pool.check_served(model_name))
        entry.model.spec.require(capability, what)
        return entry

    # ---- POST /zero_shot -----------------------------------------------------------------------
    def zero_shot(self, fields: Mapping[str, Any], fmt: str = "json") -> dict[str, Any] | bytes:
        """Per-image label probabilities (``Model.zero_shot``); the scoring rule is named.
        ``fmt="dicom-sr"``: one DICOM image's labels as a TID 1500 SR (Part-10 bytes)."""
        from radzoo.serving.batching import INFERENCE_LOCK

        if fmt not in ("json", "dicom-sr"):
            raise InputError(f"format must be 'json' or 'dicom-sr', got {fmt!r}")
        req = parse_request(ZeroShotRequest, fields)
        raw = [req.input] if isinstance(req.input, str) else list(req.input)
        if fmt == "dicom-sr":
            return self.zero_shot_dicom_sr(req.model, parse_items(raw, "image", self.fetcher), labels=req.labels,
                                           prompts=req.prompts, mode=req.mode)
        entry = self._capable(req.model, "zero_shot", "zero-shot classification")
        images, indices, errors = self._read_items(parse_items(raw, "image", self.fetcher), entry.model, "zero_shot")
        with INFERENCE_LOCK:
            result = entry.model.zero_shot(images, labels=req.labels, prompts=req.prompts, mode=req.mode)
        metrics.items_processed(entry.model.name, "zero_shot", len(images))
        predictions = result.predictions()
        data = [
            {"index": index, "probabilities": dict(zip(result.labels, (float(p) for p in row), strict=True)),
             "prediction": pred}
            for index, row, pred in zip(indices, result.probabilities, predictions, strict=True)
        ]
        return {
            "object": "list", "model": entry.model.name, "labels": list(result.labels), "rule": result.rule,
            "mode": result.mode, "prompt_set": result.prompt_set, "data": data, "errors": errors,
            "truncated_prompts": list(result.truncated), "random_weights": bool(entry.model.random_init),
        }

    # ---- POST /classify (task heads) ------------------------------------------------------------
    def classify(self, fields: Mapping[str, Any], fmt: str = "json") -> dict[str, Any] | bytes:
        """A served task head's calibrated probabilities and decisions (``radzoo serve --heads``):
        the base model embeds (batched with every other request), the head runs after it.
        ``fmt="dicom-sr"``: one DICOM image's result as a TID 1500 SR (Part-10 bytes)."""
        from radzoo.heads.head_apply import predict_embeddings

        if fmt not in ("json", "dicom-sr"):
            raise InputError(f"format must be 'json' or 'dicom-sr', got {fmt!r}")
        req = parse_request(ClassifyRequest, fields)
        head = self.heads.get(req.head)
        entry = self.pool.get(self.pool.check_served(head.base["model"]))
        self.heads.precision_on(head, entry.model)  # 4xx when the served model is not the head's base
        raw = [req.input] if isinstance(req.input, str) else list(req.input)
        items = parse_items(raw, "image", self.fetcher)
        if fmt == "dicom-sr":
            source, image = self._one_dicom(items, entry.model, "classify", "dicom-sr")
            images, indices, errors = [image], [0], []
        else:
            images, indices, errors = self._read_items(items, entry.model, "classify")
        rows = entry.embed_batch(entry.model.prepare(images).numpy(), head.base["output"])
        pred = predict_embeddings(head, rows, req.operating_point, precision=entry.precision, runtime=entry.runtime)
        metrics.items_processed(entry.model.name, "classify", len(images))
        if fmt == "dicom-sr":
            from radzoo.dicom_out import head_sr, to_bytes

            return to_bytes(head_sr(pred, source, entry.model, label="input[0]"))
        return {
            "object": "list", "head": pred.head, "model": entry.model.name, "labels": pred.labels,
            "operating_point": pred.operating_point, "thresholds": pred.thresholds,
            "data": [{"index": i, "predictions": r} for i, r in zip(indices, pred.records(), strict=True)],
            "errors": errors, "random_weights": bool(entry.model.random_init), "runtime": entry.runtime,
            "precision": entry.precision,
        }

    # ---- POST /ground --------------------------------------------------------------------------
    def ground(self, fields: Mapping[str, Any], fmt: str | None = None) -> dict[str, Any] | bytes:
        """A PNG overlay of ``text``'s similarity map over the image, or the raw map as JSON.
        ``fmt="dicom-pmap"``: a DICOM image's map as a Parametric Map (Part-10 bytes)."""
        import tempfile

        from radzoo.serving.batching import INFERENCE_LOCK
        from radzoo.zeroshot.overlay import render_overlay

        if fmt not in (None, "dicom-pmap"):
            raise InputError(f"format must be 'dicom-pmap' (or absent: response_format png/json), got {fmt!r}")
        req = parse_request(GroundRequest, fields)
        text, response_format = req.text, req.response_format
        if fmt == "dicom-pmap":
            return self.ground_dicom_pmap(req.model, parse_items([req.image], "image", self.fetcher)[0], text)
        if not text.strip():
            raise InputError("text must be a non-empty string")
        entry = self._capable(req.model, "ground", "grounding")
        images, _, _ = self._read_items(parse_items([req.image], "image", self.fetcher), entry.model, "ground")
        with INFERENCE_LOCK:
            result = entry.model.ground(images[0], text)
        metrics.items_processed(entry.model.name, "ground", 1)
        if response_format == "json":
            return {
                "model": entry.model.name, "text": result.text, "method": result.method,
                "grid": np.asarray(result.grid, dtype=np.float32).tolist(),
                "heatmap_shape": list(result.heatmap.shape), "truncated": list(result.truncated),
                "random_weights": bool(entry.model.random_init),
            }
        with tempfile.TemporaryDirectory(prefix="radzoo-ground-") as tmp:
            out = render_overlay(result.pixels, result.heatmap, f"{entry.model.name}: {text[:60]}",
                                 Path(tmp) / "overlay.png")
            return out.read_bytes()

    # ---- POST /zero_shot?format=dicom-sr, /ground?format=dicom-pmap (radzoo.dicom_out) -------------
    def zero_shot_dicom_sr(self, model_name: str | None, items: list[Item], *, labels: list[str] | None = None,
                           prompts: Any = None, mode: str | None = None) -> bytes:
        """One DICOM image -> its zero-shot labels as a TID 1500 Comprehensive 3D SR (Part-10 bytes)."""
        from radzoo.dicom_out import to_bytes, zero_shot_sr
        from radzoo.serving.batching import INFERENCE_LOCK

        entry = self._capable(model_name, "zero_shot", "zero-shot classification")
        source = self._one_dicom(items, entry.model, "zero_shot", "dicom-sr")
        with INFERENCE_LOCK:
            result = entry.model.zero_shot([source[1]], labels=labels, prompts=prompts, mode=mode)
        metrics.items_processed(entry.model.name, "zero_shot", 1)
        return to_bytes(zero_shot_sr(result, source[0], entry.model, label="input[0]"))

    def ground_dicom_pmap(self, model_name: str | None, item: Item, text: str) -> bytes:
        """One DICOM image -> the grounding map of ``text`` as a Parametric Map (Part-10 bytes)."""
        from radzoo.dicom_out import grounding_pmap, to_bytes
        from radzoo.serving.batching import INFERENCE_LOCK

        if not isinstance(text, str) or not text.strip():
            raise InputError("text must be a non-empty string")
        entry = self._capable(model_name, "ground", "grounding")
        source = self._one_dicom([item], entry.model, "ground", "dicom-pmap")
        with INFERENCE_LOCK:
            result = entry.model.ground(source[1], text)
        metrics.items_processed(entry.model.name, "ground", 1)
        return to_bytes(grounding_pmap(result, source[0], entry.model, label="input[0]"))

    def _one_dicom(self, items: list[Item], model: Any, endpoint: str, fmt: str) -> tuple[bytes, Any]:
        """(bytes, decoded image) of the one DICOM image a DICOM result is made from."""
        if len(items) != 1:
            raise InputError(f"format={fmt} makes one DICOM object from one image; got {len(items)} images")
        images, _, _ = self._read_items(items, model, endpoint)
        if images[0].format != "dicom":
            raise InputError(f"input[0]: format={fmt} needs a DICOM image (its header is referenced and copied), "
                             f"got {images[0].format.upper()}")
        return items[0], images[0]  # type: ignore[return-value]

    # ---- POST /ct_features -----------------------------------------------------------------------
    def ct_features(self, file: Path, model: str | None = None, *, nodes: bool = True,
                    require_qa: bool = False) -> dict[str, Any]:
        """Graph-CT subject and node embeddings plus QA for one uploaded CT (NIfTI/MHA/NRRD or zipped DICOM series)."""
        from radzoo.ct import features as ct_features
        from radzoo.ct import read_ct
        from radzoo.serving.batching import INFERENCE_LOCK

        try:
            item = Path(file).read_bytes()
        except OSError as exc:
            raise InputError(f"upload could not be read ({exc.strerror})") from None
        entry = self._capable(model or None, "ct", "lung CT features")
        try:
            volume = read_ct(item)
            with INFERENCE_LOCK:
                features = ct_features(volume, entry.model, require_qa=require_qa)
        except RadzooError as exc:
            metrics.error("ct_features", type(exc).__name__)
            log.info("ct_features: volume (sha256:%s) rejected: %s", content_tag(item), type(exc).__name__)
            raise
        metrics.items_processed(entry.model.name, "ct_features", 1)
        out: dict[str, Any] = {
            "model": entry.model.name,
            "subject_embedding": np.asarray(features.subject_embedding, dtype=np.float32).tolist(),
            "qa": features.qa,
            "passed": features.passed,
            "n_nodes": int(len(features.node_embeddings)),
            "random_weights": bool(entry.model.random_init),
        }
        if nodes:
            out["node_embeddings"] = np.asarray(features.node_embeddings, dtype=np.float32).tolist()
        return out


def _vector(row: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")
    return np.asarray(row, dtype=np.float32).tolist()


#: Loggers that quote texts (truncation notes); a server's log must not hold request texts.
_TEXT_LOGGERS = ("radzoo.zoo.text_tokenizer", "radzoo.zeroshot.lovt_scoring")


class _NoRequestText(logging.Filter):
    """Rewords records that quote a request's text (reports may identify patients)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = "a text was truncated to the model's maximum length (text not logged)", ()
        return True
