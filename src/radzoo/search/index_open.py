"""One door to an index: a local folder (FAISS) or a vector database by URI (Milvus)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from radzoo.search.index_folder import is_uri


def open_index(location: str | os.PathLike[str]) -> Any:
    """A local index folder, or ``milvus://host:port/collection`` / ``milvus-lite:///path/file.db/collection``."""
    if is_uri(location):
        from radzoo.search.milvus_backend import MilvusIndex

        return MilvusIndex.open(str(location))
    from radzoo.search.similar import SearchIndex

    return SearchIndex(location)


def build_index(extract_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """``radzoo index build``: into a local folder (``index_build.build_index``, all options) or a
    Milvus collection by URI (``rebuild`` only)."""
    if is_uri(out):
        from radzoo.search.milvus_backend import MilvusIndex

        return MilvusIndex.build(str(out), extract_dirs, rebuild=bool(options.get("rebuild", False)))
    from radzoo.search import index_build

    return index_build.build_index(extract_dirs, out, **options)


def remove_uids(index: str | os.PathLike[str], uids: Iterable[str], **options: Any) -> dict[str, Any]:
    """``radzoo index remove``: tombstones (local) or deletes (Milvus), effective at once."""
    if is_uri(index):
        from radzoo.search.milvus_backend import MilvusIndex

        return MilvusIndex.open(str(index)).remove(list(uids))
    from radzoo.search import index_build

    return index_build.remove_uids(index, uids, **options)


def index_info(index: str | os.PathLike[str]) -> dict[str, Any]:
    """``radzoo index info``: model identity, rows, backend (and its measured recall)."""
    if is_uri(index):
        from radzoo.search.milvus_backend import MilvusIndex

        opened = MilvusIndex.open(str(index))
        m = opened.manifest
        return {"index": str(index).split("?")[0], "model": m["model"], "dim": m["dim"], "rows": m["rows"],
                "live_rows": len(opened), "removed": m.get("removed", 0), "backend": "milvus",
                "sources": {k: len(v["shards"]) for k, v in m["sources"].items()},
                "pseudonymized": opened.pseudonymized}
    from radzoo.search import index_build

    return index_build.index_info(index)
