"""Row-id views over an index's vectors that never build one big in-memory copy.

An index grows by segments (one ``vectors-*.npy`` per build that added rows); opening it maps each
segment and reads rows through ``SegmentVectors``, so an index of N float32 vectors costs page
cache, not N x dim x 4 bytes of private memory on top of the search structure's own copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

#: rows per block of a streamed pass over every vector (exact truth, graph adds)
BLOCK_ROWS = 100_000


class SegmentVectors:
    """Rows ``0..n-1`` of several 2-D arrays (memory maps) laid end to end."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        sizes = [len(p) for p in self.parts]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.dim = int(self.parts[0].shape[1]) if self.parts else 0
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.starts[-1]), self.dim)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, slice):
            lo, hi, step = rows.indices(len(self))
            if step != 1:
                return self.take(np.arange(lo, hi, step))
            return self._range(lo, hi)
        if np.isscalar(rows):
            return self.take(np.array([int(rows)]))[0]
        return self.take(np.asarray(rows))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self._range(0, len(self))
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Float32 rows in the order given."""
        rows = np.asarray(rows, np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row ids must be in 0..{len(self) - 1}")
        out = np.empty((len(rows), self.dim), np.float32)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for p in np.unique(part):
            sel = np.flatnonzero(part == p)
            out[sel] = self.parts[p][rows[sel] - self.starts[p]]
        return out

    def _range(self, lo: int, hi: int) -> np.ndarray:
        pieces = []
        for p, arr in enumerate(self.parts):
            a, b = max(lo, int(self.starts[p])), min(hi, int(self.starts[p + 1]))
            if a < b:
                pieces.append(arr[a - self.starts[p]: b - self.starts[p]])
        if not pieces:
            return np.zeros((0, self.dim), np.float32)
        return np.ascontiguousarray(pieces[0] if len(pieces) == 1 else np.concatenate(pieces), np.float32)

    def blocks(self, start: int = 0, size: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        for lo in range(start, len(self), size):
            yield lo, self._range(lo, min(lo + size, len(self)))


def row_blocks(vectors: Any, start: int = 0, size: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, contiguous float32 block)`` over rows ``start..`` of any vector store
    (an array or memory map, ``SegmentVectors``, ``ParquetVectors``)."""
    if hasattr(vectors, "blocks"):
        yield from vectors.blocks(start, size)
        return
    for lo in range(start, len(vectors), size):
        yield lo, np.ascontiguousarray(vectors[lo: lo + size], np.float32)
