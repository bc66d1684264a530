"""Similar cases: a vector index over ``radzoo extract`` embeddings, searched by image, text or UID.

Public API::

    build_index(extract_dirs, out, *, rebuild=False, exact_below=20000, low_memory=None) -> manifest
    remove_uids(index, uids) -> {"removed", "unknown"}
    index_info(index) -> dict
    open(INDEX_OR_URI).query(images=..., texts=..., uids=..., k=10, filters=..., exclude_same_patient=False)

The embedded backend is FAISS (``faiss_backend``); ``milvus://`` / ``milvus-lite://`` URIs open the
same interface on Milvus (``milvus_backend``). The index folder format is in ``index_folder``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_index": "index_open",
    "remove_uids": "index_open",
    "index_info": "index_open",
    "open_index": "index_open",
    "SearchIndex": "similar",
    "QueryResult": "similar",
    "ModelMismatchError": "model_check",
    "IndexFolderError": "index_folder",
}


def open(location: Any) -> Any:  # noqa: A001 - the issue's public name: radzoo.search.open(INDEX)
    """Open an index folder or a ``milvus://`` URI for querying."""
    return importlib.import_module("radzoo.search.index_open").open_index(location)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"radzoo.search.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'radzoo.search' has no attribute {name!r}")


__all__ = ["IndexFolderError", "ModelMismatchError", "QueryResult", "SearchIndex", "build_index", "index_info",
           "open", "open_index", "remove_uids"]
