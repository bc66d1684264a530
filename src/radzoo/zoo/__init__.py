"""The model zoo: ``list_models``, ``get_spec``, ``load`` (real weights), ``build`` (random), ``save``."""

from __future__ import annotations

from radzoo.zoo.load import build, load, local_models, local_zoo_dir, radzoo_home, save
from radzoo.zoo.model import ZooModel
from radzoo.zoo.registry import get_spec, list_models
from radzoo.zoo.spec import SCHEMA_VERSION, ModelSpec, Preprocess, Source

__all__ = [
    "SCHEMA_VERSION",
    "ModelSpec",
    "Preprocess",
    "Source",
    "ZooModel",
    "build",
    "get_spec",
    "list_models",
    "load",
    "local_models",
    "local_zoo_dir",
    "radzoo_home",
    "save",
]
