"""Batch feature extraction: image archives -> resumable Parquet tables of embeddings.

``extract_features(model, inputs, out, ...)`` is the API; ``radzoo extract`` the command line. The core is
two plain functions (``work.prepare_item``, ``work.embed_prepared``) that the local engine runs
in worker processes and the Ray engine runs as tasks and actors. CT (graph-CT) models take
volumes and DICOM series (``volumes.discover_volumes``) through ``ct_work``, one at a time.

Its names are imported on first use (PEP 562), so ``radzoo.extract.state`` (the weights revision
DICOM results carry) works on an install without the ``extract`` extra (pyarrow).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ENGINES": "api", "ExtractResult": "api", "extract_features": "api",
    "Discovery": "discovery", "InputItem": "discovery", "Problem": "discovery", "discover": "discovery",
    "Pseudonymizer": "pseudonym", "OutputError": "sink", "read_table": "sink", "discover_volumes": "volumes",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'radzoo.extract' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"radzoo.extract.{_WHERE[name]}"), name)
    globals()[name] = value
    return value

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
