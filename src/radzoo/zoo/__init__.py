"""The model zoo: specs and registry (pure data), artifacts on disk and on the Hub, ``ZooModel``.

The zoo sits below everything that opens models: ``radzoo.load`` / ``radzoo.build`` (the one
door, in ``radzoo.resolve``) decide where weights come from and which runtime runs them.
"""

from __future__ import annotations

from radzoo.zoo.artifact import save_artifact as save
from radzoo.zoo.home import local_models, local_zoo_dir, radzoo_home
from radzoo.zoo.model import ZooModel
from radzoo.zoo.registry import get_spec, list_models
from radzoo.zoo.spec import CAPABILITIES, SCHEMA_VERSION, ModelSpec, Preprocess, Source

__all__ = [
    "CAPABILITIES",
    "SCHEMA_VERSION",
    "ModelSpec",
    "Preprocess",
    "Source",
    "ZooModel",
    "get_spec",
    "list_models",
    "local_models",
    "local_zoo_dir",
    "radzoo_home",
    "save",
]
