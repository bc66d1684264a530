"""The models a bento carries: read at service start-up from the bento's own model store.

``radzoo bento build`` (:mod:`radzoo.serving.bento_build`) stores each model's artifact folder
(weights, config, card, tokenizer and its exported ONNX graphs, int8 included) as a BentoML model
and records ``name=tag`` pairs in the bento's arguments (``radzoo_models``). When BentoML serves
that bento (``bentoml serve``, a container), the service opens each model from its folder in the
bento, read-only: nothing is downloaded or exported at start-up. Without bento arguments (``radzoo
serve``, ``bentoml serve radzoo.serving.service:RadzooService``) nothing changes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from radzoo.errors import ArtifactError, InputError
from radzoo.serving.settings import ENV_NAMES, ServeSettings

log = logging.getLogger("radzoo.serving")

#: Bento arguments written by the build (``bentoml.use_arguments()`` at serve time).
MODELS_ARG = "radzoo_models"  # "name=tag,name=tag"
PRECISION_ARG = "radzoo_precision"


def parse_models_arg(text: str) -> dict[str, str]:
    """``"name=tag,name=tag"`` -> ``{name: tag}``."""
    pairs: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, tag = item.partition("=")
        if not sep or not name or not tag:
            raise InputError(f"bento argument {MODELS_ARG}: expected name=tag items, got {item!r}")
        pairs[name.strip()] = tag.strip()
    return pairs


def bento_arguments() -> dict[str, Any]:
    """The bento's arguments (empty when the service is not served from a bento)."""
    import bentoml

    return {k: v for k, v in vars(bentoml.use_arguments()).items() if k.startswith("radzoo_")}


def model_paths(arguments: dict[str, Any]) -> dict[str, Path]:
    """Served name -> the model's folder in the bento's model store."""
    import bentoml
    from bentoml.exceptions import NotFound

    paths: dict[str, Path] = {}
    for name, tag in parse_models_arg(str(arguments.get(MODELS_ARG, ""))).items():
        try:
            paths[name] = Path(bentoml.models.get(tag).path)
        except NotFound as exc:
            raise ArtifactError(f"the bento lists model {name!r} as {tag}, but its model store has no such "
                                f"model: rebuild it with `radzoo bento build`") from exc
    return paths


def with_bento(settings: ServeSettings, arguments: dict[str, Any], paths: dict[str, Path],
               environ: dict[str, str]) -> ServeSettings:
    """``settings`` serving the bento's models at the bento's precision, unless the environment says otherwise."""
    changes: dict[str, Any] = {}
    if paths and not environ.get(ENV_NAMES["models"]):
        changes["models"] = tuple(paths)
    precision = arguments.get(PRECISION_ARG)
    if precision and not environ.get(ENV_NAMES["precision"]):
        changes["precision"] = str(precision)
    return settings.with_(**changes) if changes else settings
