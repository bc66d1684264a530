"""What each HTTP endpoint does, free of BentoML: plain inputs in, JSON-ready dicts out.

The service layer only parses HTTP and turns these results (or raised ``RadzooError``s) into
responses, so the logic is testable in-process and the BentoML layer stays thin. Decoding is
``radzoo.io.read_image``; preprocessing and inference are ``ZooModel.prepare`` and
``embed_batch`` (via the pool's batcher). Nothing here re-implements either.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np

from radzoo.errors import InputError, RadzooError
from radzoo.serving import metrics
from radzoo.serving.http_errors import NoUsableItemsError, PayloadTooLargeError, item_error
from radzoo.serving.payloads import content_tag
from radzoo.serving.pool import ModelPool
from radzoo.serving.settings import ServeSettings

log = logging.getLogger(__name__)

#: An item handed to ``embed``: the file's bytes, or the error met while extracting them.
Item = bytes | RadzooError


class Endpoints:
    """The server's operations over one :class:`ModelPool`."""

    #: Routes the service exposes (listed by GET /models so clients can discover them).
    ROUTES = ("/v1/embeddings", "/embed", "/zero_shot", "/ground", "/ct_features", "/models")

    def __init__(self, settings: ServeSettings, pool: ModelPool | None = None) -> None:
        self.settings = settings
        self.pool = pool or ModelPool(settings)

    # ---- GET /models -------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": self.pool.describe(),
            "default_model": self.settings.resolved_default_model(),
            "max_loaded_models": self.settings.max_loaded_models,
            "runtime": self.settings.runtime,
            "precision": self.settings.precision,
            "endpoints": list(self.ROUTES),
        }

    # ---- POST /v1/embeddings and /embed ---------------------------------------------------------
    def embed(
        self,
        model_name: str | None,
        items: list[Item],
        *,
        output: str | None = None,
        encoding_format: str = "float",
        endpoint: str = "embeddings",
    ) -> dict[str, Any]:
        """Embeddings of every usable item; failed items are reported by index, not fatal."""

        if not items:
            raise InputError("no images in the request: send at least one")
        if len(items) > self.settings.max_items:
            raise PayloadTooLargeError(
                f"{len(items)} images in one request exceeds the server limit of {self.settings.max_items} "
                "(RADZOO_MAX_ITEMS); split the request"
            )
        if encoding_format not in ("float", "base64"):
            raise InputError(f"encoding_format must be 'float' or 'base64', got {encoding_format!r}")
        entry = self.pool.get(self.pool.check_served(model_name))
        model = entry.model
        model.spec.require("embed", "2D image embeddings (CT volumes go to /ct_features)")
        out_name = model.resolve_output(output)

        images, indices, errors = self._read_items(items, model, endpoint)
        batch = model.prepare(images).numpy()
        embeddings = entry.embed_batch(batch, out_name)
        metrics.items_processed(model.name, endpoint, len(indices))
        data = []
        for row, index in zip(embeddings, indices, strict=True):
            vector: list[float] | str
            if encoding_format == "base64":
                vector = base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")
            else:
                vector = row.tolist()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return {
            "object": "list",
            "data": data,
            "model": model.name,
            "output": out_name,
            "dim": int(embeddings.shape[1]),
            "usage": {"prompt_tokens": 0, "total_tokens": 0, "images": len(indices)},
            "errors": errors,
            "random_weights": bool(model.random_init),
            "runtime": entry.runtime,
            "precision": entry.precision,
        }

    # ---- shared: decode items, keep per-item errors ----------------------------------------------
    def _read_items(self, items: list[Item], model: Any, endpoint: str) -> tuple[list[Any], list[int], list[dict[str, Any]]]:
        """Decoded images (checked against the model's modality) plus per-item errors."""
        from radzoo.io import read_image
        from radzoo.zoo.pixels import check_modality

        if not items:
            raise InputError("no images in the request: send at least one")
        if len(items) > self.settings.max_items:
            raise PayloadTooLargeError(
                f"{len(items)} images in one request exceeds the server limit of {self.settings.max_items}"
            )
        images, indices, errors = [], [], []
        for index, item in enumerate(items):
            try:
                if isinstance(item, BaseException):
                    raise item
                image = read_image(item, max_pixels=self.settings.max_pixels)
                check_modality(image, model.spec.modality, f"input[{index}]")
                images.append(image)
                indices.append(index)
            except RadzooError as exc:
                errors.append(item_error(index, exc))
                log.info("%s: item %d (sha256:%s) rejected: %s", endpoint, index,
                         content_tag(item) if isinstance(item, bytes) else "-", type(exc).__name__)
        for err in errors:
            metrics.error(endpoint, err["type"])
        if not images:
            first = errors[0]["message"] if errors else "no usable input"
            more = f" (and {len(errors) - 1} more, see 'errors')" if len(errors) > 1 else ""
            raise NoUsableItemsError(f"none of the {len(items)} images could be used: {first}{more}", errors)
        return images, indices, errors

    def _capable(self, model_name: str | None, capability: str, what: str) -> Any:
        """The pool entry of a served model that has ``capability`` (else a 422 naming what it offers)."""
        entry = self.pool.get(self.pool.check_served(model_name))
        entry.model.spec.require(capability, what)
        return entry

    # ---- POST /zero_shot -----------------------------------------------------------------------
    def zero_shot(self, model_name: str | None, items: list[Item], *, labels: list[str] | None = None,
                  prompts: Any = None, mode: str | None = None) -> dict[str, Any]:
        """Per-image label probabilities (``ZooModel.zero_shot``); the scoring rule is named."""
        from radzoo.serving.batching import INFERENCE_LOCK

        entry = self._capable(model_name, "zero_shot", "zero-shot classification")
        images, indices, errors = self._read_items(items, entry.model, "zero_shot")
        with INFERENCE_LOCK:
            result = entry.model.zero_shot(images, labels=labels, prompts=prompts, mode=mode)
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

    # ---- POST /ground --------------------------------------------------------------------------
    def ground(self, model_name: str | None, item: Item, text: str, *, response_format: str = "png") -> dict[str, Any] | bytes:
        """A PNG overlay of ``text``'s similarity map over the image, or the raw map as JSON."""
        import tempfile
        from pathlib import Path

        from radzoo.serving.batching import INFERENCE_LOCK
        from radzoo.zeroshot.overlay import render_overlay

        if response_format not in ("png", "json"):
            raise InputError(f"response_format must be 'png' or 'json', got {response_format!r}")
        if not isinstance(text, str) or not text.strip():
            raise InputError("text must be a non-empty string")
        entry = self._capable(model_name, "ground", "grounding")
        images, _, _ = self._read_items([item], entry.model, "ground")
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
    def ct_features(self, model_name: str | None, item: Item, *, nodes: bool = True,
                    require_qa: bool = False) -> dict[str, Any]:
        """Graph-CT subject and node embeddings plus QA for one CT (NIfTI/MHA/NRRD or zipped DICOM series)."""
        from radzoo.ct import features as ct_features
        from radzoo.ct import read_ct
        from radzoo.serving.batching import INFERENCE_LOCK

        if isinstance(item, BaseException):
            raise item
        entry = self._capable(model_name, "ct", "lung CT features")
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
