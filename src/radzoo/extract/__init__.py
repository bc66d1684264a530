"""Batch feature extraction: image archives -> resumable Parquet tables of embeddings.

``extract_features(model, inputs, out, ...)`` is the API; ``radzoo extract`` the command line. The core is
two plain functions (``work.prepare_item``, ``work.embed_prepared``) that the local engine runs
in worker processes and the Ray engine runs as tasks and actors. CT (graph-CT) models take
volumes and DICOM series (``volumes.discover_volumes``) through ``ct_work``, one at a time.
"""

from __future__ import annotations

from radzoo.extract.api import ENGINES, ExtractResult, extract_features
from radzoo.extract.discovery import Discovery, InputItem, Problem, discover
from radzoo.extract.pseudonym import Pseudonymizer
from radzoo.extract.sink import OutputError, read_table
from radzoo.extract.volumes import discover_volumes

__all__ = [
    "ENGINES",
    "Discovery",
    "ExtractResult",
    "InputItem",
    "OutputError",
    "Problem",
    "Pseudonymizer",
    "discover",
    "discover_volumes",
    "extract_features",
    "read_table",
]
