"""Resolution and construction: ``load`` (real weights, strictly), ``build`` (explicit random init), ``save``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from radzoo.errors import ArtifactError, InputError, ModelNotFoundError
from radzoo.nets import build_net
from radzoo.zoo import hub
from radzoo.zoo.artifact import is_artifact, load_artifact, save_artifact, spec_assets
from radzoo.zoo.model import ZooModel
from radzoo.zoo.registry import get_spec, list_models
from radzoo.zoo.spec import ModelSpec
from radzoo.zoo.torch_runtime import RUNTIMES

log = logging.getLogger(__name__)


def radzoo_home() -> Path:
    """``$RADZOO_HOME``, default ``~/.cache/radzoo`` (``$XDG_CACHE_HOME`` honoured)."""
    env = os.environ.get("RADZOO_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "radzoo"


def local_zoo_dir() -> Path:
    return radzoo_home() / "models"


def local_models() -> list[str]:
    """Names of artifacts in the local zoo directory."""
    root = local_zoo_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_artifact(p))


def _looks_like_path(name: str) -> bool:
    return os.sep in name or name.startswith((".", "~")) or (os.altsep is not None and os.altsep in name)


def load(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    device: str | torch.device | None = None,
    runtime: str = "torch",
    **runtime_options: Any,
) -> ZooModel:
    """A model with real weights, loaded strictly, in eval mode, preprocessing attached.

    Resolution: an artifact directory path -> the local zoo (``$RADZOO_HOME/models/<name>``) ->
    the Hugging Face Hub (pinned revision, HF cache, HF_ENDPOINT/HF_HUB_OFFLINE honoured) ->
    the original research release, downloaded and converted -> a ``ModelNotFoundError`` that says
    how to obtain the weights. Never returns random weights: that is ``build``.
    """
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    model = _resolve(name_or_path, revision, device)
    if runtime == "onnx":
        from radzoo.onnx.ort_runtime import onnx_runtime_for

        model.use_runtime(onnx_runtime_for(model, **runtime_options))
    elif runtime_options:
        raise InputError(f"options {sorted(runtime_options)} apply to runtime='onnx' only")
    return model


def _resolve(name_or_path: str | os.PathLike[str], revision: str | None, device: Any) -> ZooModel:
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_artifact(path, device=device)
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        raise ArtifactError(f"no artifact directory at {path}")

    reasons: list[str] = []
    local = local_zoo_dir() / text
    if is_artifact(local):
        log.info("loading %s from the local zoo %s", text, local)
        return load_artifact(local, device=device)
    reasons.append(f"not in the local zoo ({local})")

    spec = get_spec(text)  # unknown names raise with close-name suggestions

    if spec.hub_repo:
        rev = revision or spec.hub_revision
        try:
            snapshot = hub.download(spec.hub_repo, rev)
            log.info("loading %s from the Hub (%s@%s)", text, spec.hub_repo, rev)
            return load_artifact(snapshot, device=device)
        except hub.HubMiss as exc:
            reasons.append(str(exc))

    if spec.sources and _offline():
        reasons.append("offline mode (HF_HUB_OFFLINE/RADZOO_OFFLINE): original release not downloaded")
    elif spec.sources:
        from radzoo.converters.original import fetch_and_convert

        converted = fetch_and_convert(spec, local)
        if converted is not None:
            return load_artifact(converted, device=device)
        reasons.append("original release not obtainable (see the log for why)")

    how = [
        f"zoo.build({text!r}) for explicitly random weights (tests, offline smoke runs)",
    ]
    for src in spec.sources:
        how.insert(0, f"download {src.url} and run `radzoo convert {src.format} FILE --out {local}`")
    if not spec.sources:
        how.insert(0, f"train it with radzoo.training (no original weights were published for {spec.method})")
    raise ModelNotFoundError(
        f"no weights found for {text!r}: " + "; ".join(reasons) + ". To obtain them: " + "; or ".join(how)
    )


def _offline() -> bool:
    """True when the user asked for no network (HF_HUB_OFFLINE or RADZOO_OFFLINE set truthy)."""
    from huggingface_hub import constants

    env = os.environ.get("RADZOO_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or env in ("1", "true", "yes", "on")


def build(
    name_or_spec: str | ModelSpec,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
) -> ZooModel:
    """The explicit random initialisation of a spec (seeded, reproducible). Marked ``random_init``."""
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_net(spec.arch, spec.arch_args)
    assets = spec_assets(spec)
    if tokenizer is not None:
        tok = Path(tokenizer)
        if not tok.is_dir():
            raise ArtifactError(f"tokenizer directory {tok} does not exist")
        assets["tokenizer"] = tok
    config: dict[str, Any] = {"provenance": {"built_by": "radzoo.zoo.build", "seed": seed, "random_init": True}}
    if net.has_text:
        from radzoo.zeroshot.prompts import zero_shot_section

        config["zero_shot"] = zero_shot_section(spec)  # default prompt set + deviation note for the card
    return ZooModel(spec.with_(random_init=True), net, device=device, assets=assets, config=config)


def save(model: ZooModel, directory: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write ``model`` as an artifact directory (see ``radzoo.zoo.artifact``)."""
    return save_artifact(model, Path(directory), **kwargs)


__all__ = ["build", "get_spec", "list_models", "load", "local_models", "local_zoo_dir", "radzoo_home", "save"]
