"""Float32 embeddings read on demand from the extraction's Parquet shards, by index row id.

The low-memory index keeps no float32 copy: each row remembers its shard and its position there
(``shard``, ``shard_row`` key columns), and exact re-ranking reads just the row groups holding the
candidates (memory-mapped files; a small LRU of decoded row groups, bounded in bytes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from radzoo.search.extract_source import normalise

#: decoded row groups kept for the next queries (bytes); the rest is read again when needed
CACHE_BYTES = 64 << 20


def _open_files_limit() -> int:
    """Shards kept open: a quarter of the process's file-descriptor limit (often 1024), 64..4096.
    Reopening a shard (footer parse) costs about as much as decoding a row group."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return 256
    return 4096 if soft == resource.RLIM_INFINITY else max(64, min(4096, soft // 4))


OPEN_FILES = _open_files_limit()


class ParquetVectors:
    """Unit vectors of index rows ``0..n-1``, read from ``files[shard[row]]`` at ``local[row]``."""

    def __init__(self, files: list[Path], shard: np.ndarray, local: np.ndarray, dim: int,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.files = files
        self._shard = np.asarray(shard, np.int32)
        self._local = np.asarray(local, np.int64)
        self.dim = int(dim)
        self._open: OrderedDict[int, tuple[pq.ParquetFile, np.ndarray]] = OrderedDict()
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached = 0
        self.cache_bytes = cache_bytes

    @classmethod
    def from_keys(cls, keys: pa.Table, dim: int) -> ParquetVectors:
        """From an index's keys (``source``, ``shard``, ``shard_row`` columns)."""
        if not len(keys):
            return cls([], np.zeros(0), np.zeros(0), dim)
        where = pc.binary_join_element_wise(keys.column("source"), keys.column("shard"), "/embeddings/")
        encoded = where.combine_chunks().dictionary_encode()
        files = [Path(p) for p in encoded.dictionary.to_pylist()]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"low-memory index: embeddings shard {f} is gone (the index re-ranks "
                                        f"from the extraction's Parquet shards; keep them, or rebuild)")
        local = keys.column("shard_row").to_numpy(zero_copy_only=False)
        return cls(files, encoded.indices.to_numpy(zero_copy_only=False), local, dim)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self._shard), self.dim)

    def __len__(self) -> int:
        return len(self._shard)

    def __getitem__(self, rows: int | np.ndarray) -> np.ndarray:
        if np.isscalar(rows):
            return self.take(np.array([int(rows)]))[0]
        return self.take(np.asarray(rows))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Unit float32 vectors of ``rows`` (in that order)."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        shard, local = self._shard[rows], self._local[rows]
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            pf, starts = self._file(int(s))
            groups = np.searchsorted(starts, local[sel], side="right") - 1
            for g in np.unique(groups):
                part = sel[groups == g]
                out[part] = self._group(int(s), int(g), pf)[local[part] - starts[g]]
        return normalise(out)

    def blocks(self, start: int = 0, size: int = 50_000) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, vectors)`` in row order from ``start``: a streamed pass over every row."""
        for lo in range(start, len(self), size):
            yield lo, self.take(np.arange(lo, min(lo + size, len(self))))

    def _file(self, s: int) -> tuple[pq.ParquetFile, np.ndarray]:
        if s in self._open:
            self._open.move_to_end(s)
            return self._open[s]
        pf = pq.ParquetFile(self.files[s], memory_map=True)
        sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        self._open[s] = (pf, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64))
        while len(self._open) > OPEN_FILES:
            self._open.popitem(last=False)[1][0].close()
        return self._open[s]

    def _group(self, s: int, g: int, pf: pq.ParquetFile) -> np.ndarray:
        hit = self._cache.get((s, g))
        if hit is not None:
            self._cache.move_to_end((s, g))
            return hit
        # one thread: a row group is small, and thread hand-offs cost more than they save here
        emb = pf.read_row_group(g, columns=["embedding"], use_threads=False).column("embedding").combine_chunks()
        if not isinstance(emb, (pa.ListArray, pa.FixedSizeListArray)):
            raise ValueError(f"{self.files[s]}: the 'embedding' column is {emb.type}, not a list of floats")
        start = emb.offsets[0].as_py() if isinstance(emb, pa.ListArray) else emb.offset * self.dim
        flat = emb.values.to_numpy(zero_copy_only=False)[start: start + len(emb) * self.dim]  # no flatten() copy
        mat = np.asarray(flat, np.float32).reshape(len(emb), self.dim)
        self._cache[(s, g)] = mat
        self._cached += mat.nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes
        return mat
