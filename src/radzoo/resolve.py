"""The one door to a model: ``radzoo.load`` (real weights) and ``radzoo.build`` (explicit random weights).

Every caller (Python API, CLI, serving, batch extraction, CT, evaluation, training init) opens
models here, so each decision is taken once, in this order, and cheap refusals come before any
weights are read:

1. **weights**: an artifact directory -> the local zoo (``$RADZOO_HOME/models/<name>``) -> the
   Hugging Face Hub (pinned revision) -> the original research release, downloaded and
   converted; or, only when asked (``random_weights=True`` / ``build``), a seeded random init.
   When every source fails, the error gives each source's reason.
2. **device**: ``zoo.devices.resolve_device`` (``None``/``"auto"``: CUDA when present).
3. **runtime and precision**: ``"auto"`` (onnxruntime with graphs exported once and kept, when
   they export with parity; torch otherwise), ``"torch"`` or ``"onnx"``, at ``precision``
   ``"fp32"``, ``"bf16"``, ``"fp16"`` (GPUs) or ``"int8"`` (see ``radzoo.runtimes``);
   ``model.runtime.name`` / ``.precision`` say what was picked and ``model.runtime.reason`` why.
4. **threads**: torch intra-op threads, or onnxruntime's ``intra_op_num_threads``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radzoo.errors import ArtifactError, InputError, ModelNotFoundError
from radzoo.runtimes import (
    PRECISIONS,
    RUNTIMES,
    apply_runtime,
    check_device_request,
    check_runtime_request,
)
from radzoo.zoo import hub
from radzoo.zoo.artifact import load_artifact, read_config
from radzoo.zoo.home import is_artifact, local_zoo_dir, offline
from radzoo.zoo.instantiate import build_random
from radzoo.zoo.model import ZooModel
from radzoo.zoo.registry import get_spec
from radzoo.zoo.spec import ModelSpec

log = logging.getLogger(__name__)

#: The image output that lives in the text's joint space (PRIOR's and LoVT's global projection).
JOINT_OUTPUT = "global"


class Model(ZooModel):
    """What ``radzoo.load`` and ``radzoo.build`` return: a ``ZooModel`` (``embed``, ``spec``,
    ``capabilities``, ``runtime`` ...) plus the image-text methods, which live above the zoo,
    and ``predict`` through an attached task head (``radzoo.load(HEAD_FOLDER)``)."""

    #: the attached task head (``radzoo.heads.TaskHead``), when loaded from a head folder
    head: Any = None

    def predict(self, images: Any, operating_point: str | None = None, *, batch_size: int = 16,
                head: Any = None) -> Any:
        """Calibrated per-label probabilities and decisions at a named operating point
        (``sens90``, ``sens95``, ``spec90``, ``youden``; default youden) of the attached head
        (or ``head``, a ``TaskHead`` or head folder, checked against this model first).
        Returns a ``radzoo.heads.HeadPrediction``."""
        from radzoo.heads import check_base, read_head
        from radzoo.heads.head_apply import predict_embeddings

        task_head = self.head if head is None else (head if hasattr(head, "tensors") else read_head(head))
        if task_head is None:
            raise InputError(f"{self.name} has no task head: open one with radzoo.load(HEAD_FOLDER) or pass head=")
        precision = check_base(task_head, self)
        x = self.embed(images, output=task_head.base["output"], batch_size=batch_size)
        return predict_embeddings(task_head, x, operating_point, precision=precision, runtime=self.runtime.name)

    def zero_shot(self, images: Any, labels: Sequence[str] | None = None, prompts: Any = None, **kwargs: Any) -> Any:
        """Per-image, per-label probabilities from prompts (``radzoo.zeroshot.zero_shot``)."""
        from radzoo.zeroshot.classify import zero_shot

        return zero_shot(self, images, labels, prompts, **kwargs)

    def ground(self, image: Any, text: str, method: str = "auto") -> Any:
        """Image-sized similarity map of ``text`` over ``image`` (``radzoo.zeroshot.ground``)."""
        from radzoo.zeroshot.grounding import ground

        return ground(self, image, text, method=method)

    def embed_text(self, texts: str | Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Text embeddings ``(N, D)`` float32 in the joint image-text space (PRIOR, LoVT).

        They compare by cosine with ``embed(images, output=JOINT_OUTPUT)``. The tokenizer (and
        its casing) is the artifact's; texts go through the method's own text encoder, the one
        zero-shot scoring uses (``radzoo.zeroshot``), without filling its prompt cache.
        """
        from radzoo.zeroshot.classify import encode_prompts

        self.spec.require("text", "text embeddings")
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise InputError("no texts given")
        for i, text in enumerate(items):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"texts[{i}]: expected a non-empty string, got {text!r}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        chunks = []
        for start in range(0, len(items), batch_size):
            emb, _ = encode_prompts(self, items[start : start + batch_size], "embed_text", cache=False)
            chunks.append(emb[JOINT_OUTPUT].float().cpu().numpy())
        out = np.concatenate(chunks).astype(np.float32)
        expected = self.spec.outputs[JOINT_OUTPUT]
        if out.shape != (len(items), expected):
            raise RuntimeError(f"{self.name}: text embeddings have shape {out.shape}, expected ({len(items)}, {expected})")
        return out

    def encode_text(self, texts: Sequence[str], prompt_set: str = "") -> dict[str, torch.Tensor]:
        """Text embeddings of prompts in the model's joint space (cached per prompt set + texts)."""
        from radzoo.zeroshot.classify import encode_prompts

        return encode_prompts(self, list(texts), prompt_set)[0]

    def embed_graphs(self, entries: Any, *, batch_size: int = 16, pad_to: int | None = None,
                     text_tower: Any = None) -> Any:
        """IGCL report-graph embeddings ``(N, 768)`` of RadGraph entries, in the joint space of
        the image embeddings (``radzoo.graphs.embed_graphs``; ``pad_to`` reproduces the
        original's batch-padding effect, ``text_tower`` overrides the artifact's node-feature BERT)."""
        self.spec.require("graph", "report-graph embeddings")
        from radzoo.graphs.graph_embedding import embed_graphs

        return embed_graphs(self, entries, batch_size=batch_size, pad_to=pad_to, text_tower=text_tower)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.startswith((".", "~")) or (os.altsep is not None and os.altsep in text)


def spec_of(name_or_path: str | os.PathLike[str]) -> tuple[ModelSpec, str]:
    """``(spec, source)`` of a name or artifact directory without reading weights.

    ``source`` is ``"path"``, ``"local"`` (the local zoo) or ``"registry"``. Unknown names raise
    ``ModelNotFoundError`` with close-name suggestions.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir() and _is_head(path):  # a task head: its base model's spec
        from radzoo.heads import read_head

        base = read_head(path).base
        source = base.get("source")
        return spec_of(source if source and Path(source).is_dir() else base["model"])
    if path.is_dir():
        return _config_spec(path), "path"
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        raise ArtifactError(f"no artifact directory at {path}")
    local = local_zoo_dir() / text
    if is_artifact(local):
        return _config_spec(local), "local"
    return get_spec(text), "registry"


def _config_spec(directory: Path) -> ModelSpec:
    config = read_config(directory)
    try:
        return ModelSpec.from_dict(config["spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory / 'config.json'}: invalid spec: {exc}") from exc


def load(
    name_or_path: str | os.PathLike[str] | ModelSpec,
    *,
    revision: str | None = None,
    device: str | torch.device | None = None,
    runtime: str = "auto",
    threads: int | None = None,
    random_weights: bool = False,
    seed: int = 0,
    tokenizer: str | os.PathLike[str] | None = None,
    runtime_options: dict[str, Any] | None = None,
    precision: str = "fp32",
) -> Model:
    """A ready model: weights, device, runtime, precision and threads decided here, once.

    ``random_weights=True`` builds the registry architecture with seeded random weights (the
    model, its config and card say so); it never happens implicitly. ``tokenizer`` (a directory)
    attaches a tokenizer to such a build. ``runtime_options`` go to onnxruntime (providers,
    graph_optimization_level, trt_engine_cache_dir ...). ``precision``: ``"fp32"``, ``"bf16"``,
    ``"fp16"`` (GPUs) or ``"int8"`` (calibrated on the packaged example images of the model's
    modality unless the artifact holds an int8 export; refused with the measured cosine when it
    strays from fp32, see ``radzoo.onnx.precision_graphs``).
    """
    check_runtime_request(runtime, threads, runtime_options, precision)
    check_device_request(device, runtime, precision)
    if not isinstance(name_or_path, ModelSpec) and _is_head(name_or_path):
        return _load_head(Path(os.fspath(name_or_path)).expanduser(), revision=revision, device=device,
                          runtime=runtime, threads=threads, runtime_options=runtime_options, precision=precision,
                          random_weights=random_weights)
    if random_weights:
        model = _build(name_or_path, seed=seed, device=device, tokenizer=tokenizer, revision=revision)
        into_artifact = False
    else:
        if isinstance(name_or_path, ModelSpec):
            raise InputError("a ModelSpec has no weights: pass random_weights=True (radzoo.build) or a name/path")
        if tokenizer is not None:
            raise InputError("tokenizer= applies to random-weight builds; real artifacts carry their own tokenizer")
        model, into_artifact = _open_weights(name_or_path, revision, device)
    return apply_runtime(model, runtime, precision=precision, threads=threads, options=runtime_options or {},
                         into_artifact=into_artifact)


def build(
    name_or_spec: str | ModelSpec,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    runtime: str = "auto",
    threads: int | None = None,
    runtime_options: dict[str, Any] | None = None,
    precision: str = "fp32",
) -> Model:
    """The explicit random initialisation of a registry model (seeded, reproducible, marked ``random_init``).

    Random weights run on every runtime: their ONNX graphs go to the cache, keyed by the weights."""
    return load(name_or_spec, random_weights=True, seed=seed, device=device, tokenizer=tokenizer,
                runtime=runtime, threads=threads, runtime_options=runtime_options, precision=precision)


def _build(name_or_spec: Any, *, seed: int, device: Any, tokenizer: Any, revision: str | None) -> Model:
    if revision is not None:
        raise InputError("revision= names real weights; a random-weight build has none")
    if isinstance(name_or_spec, ModelSpec):
        spec = name_or_spec
    else:
        text = os.fspath(name_or_spec)
        if Path(text).expanduser().is_dir() or _looks_like_path(text):
            raise InputError(
                f"random_weights=True builds a model by name; {text} is an artifact folder "
                "(its own weights are used without random weights)"
            )
        spec, _ = spec_of(text)  # the registry's, or a local-zoo artifact's architecture
    config: dict[str, Any] = {}
    if "zero_shot" in spec.capabilities:
        from radzoo.zeroshot.prompts import zero_shot_section

        config["zero_shot"] = zero_shot_section(spec)  # default prompt set + deviation note for the card
    if "text" in spec.capabilities and tokenizer is None:
        from radzoo.zoo.generated_tokenizer import generated_tokenizer

        # random weights have no tokenizer of their own: a generated one lets every text path run offline
        tokenizer, config["tokenizer"] = generated_tokenizer(spec, _prompt_texts(config.get("zero_shot", {})))
    model = build_random(spec, seed=seed, device=device, tokenizer=tokenizer, config=config, cls=Model)
    assert isinstance(model, Model)
    return model


def _prompt_texts(section: dict[str, Any]) -> list[str]:
    """Every prompt of a ``zero_shot`` config section, templates filled with each class label."""
    texts: list[str] = []
    for prompt_set in section.get("prompt_sets", {}).values():
        labels = list(prompt_set.get("classes", {}))
        for table in ("classes", "negatives"):
            for prompts in prompt_set.get(table, {}).values():
                texts += [prompts] if isinstance(prompts, str) else list(prompts)
        for templates in prompt_set.get("templates", {}).values():
            texts += [t.replace("{label}", label) for t in templates for label in labels]
    return texts


def _open_weights(name_or_path: str | os.PathLike[str], revision: str | None, device: Any) -> tuple[Model, bool]:
    """Real weights, strictly: path -> local zoo -> Hub -> original release, with every miss's reason.

    Also says whether ONNX exports may go into the artifact folder (not into a Hub cache snapshot)."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_dir(path, device), True
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        raise ArtifactError(f"no artifact directory at {path}")

    reasons: list[str] = []
    local = local_zoo_dir() / text
    if is_artifact(local):
        log.info("loading %s from the local zoo %s", text, local)
        return _load_dir(local, device), True
    reasons.append(f"local zoo: not in {local}")

    spec = get_spec(text)  # unknown names raise with close-name suggestions

    if spec.hub_repo:
        rev = revision or spec.hub_revision
        try:
            snapshot = hub.download(spec.hub_repo, rev)
        except hub.HubMiss as exc:
            reasons.append(f"Hub: {exc}")
        else:
            log.info("loading %s from the Hub (%s@%s)", text, spec.hub_repo, rev)
            return _load_dir(snapshot, device), False
    else:
        reasons.append("Hub: no Hub repo is recorded for this model")

    if not spec.sources:
        reasons.append(f"original release: none was published for {spec.method}")
    elif offline():
        reasons.append("original release: not downloaded in offline mode (HF_HUB_OFFLINE / RADZOO_OFFLINE)")
    else:
        from radzoo.converters.original import OriginalUnavailable, fetch_and_convert

        try:
            return _load_dir(fetch_and_convert(spec, local), device), True
        except OriginalUnavailable as exc:
            reasons += [f"original release: {r}" for r in exc.reasons]

    how = [f"radzoo.build({text!r}) (CLI: --random-weights) for explicitly random weights (tests, offline smoke runs)"]
    for src in spec.sources:
        how.insert(0, f"download {src.url} and run `radzoo convert {src.format} FILE --out {local}`")
    if not spec.sources:
        how.insert(0, f"train it with `radzoo train {spec.method}` (no original weights were published)")
    raise ModelNotFoundError(
        f"no weights found for {text!r}: " + "; ".join(reasons) + ". To obtain them: " + "; or ".join(how)
    )


def _is_head(name_or_path: str | os.PathLike[str]) -> bool:
    from radzoo.heads import is_head_dir

    return is_head_dir(Path(os.fspath(name_or_path)).expanduser())


def _load_head(directory: Path, *, revision: str | None, random_weights: bool, **opts: Any) -> Model:
    """A head folder: its base model opened as recorded (an artifact folder, a zoo name, or the
    exact seeded random build it was trained on), checked against the head, head attached."""
    from radzoo.heads import attach_head, read_head

    head = read_head(directory)
    if random_weights or revision is not None:
        raise InputError(f"{directory} is a task head: its base model is recorded in it; drop random_weights/revision")
    base = head.base
    if base.get("random_weights"):
        if base.get("seed") is None:
            raise InputError(f"{directory}: the head was trained on random weights without a recorded seed")
        model = load(base["model"], random_weights=True, seed=int(base["seed"]), **opts)
    else:
        source = base.get("source") or base["model"]
        if base.get("source") and not Path(source).is_dir():
            source = base["model"]  # the artifact folder moved: find the model by name (identity still checked)
        model = load(source, **opts)
    return attach_head(model, head)


def _load_dir(directory: Path, device: Any) -> Model:
    model = load_artifact(directory, device=device, cls=Model)
    assert isinstance(model, Model)
    return model


__all__ = ["JOINT_OUTPUT", "PRECISIONS", "RUNTIMES", "Model", "build", "load", "spec_of"]
