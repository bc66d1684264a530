"""The patch graph: overlap of the 32^3 patches in subject space, thresholded (METHODS 5.1)."""

from __future__ import annotations

import numpy as np

EDGE_THRESHOLD = 0.13


def overlap_adjacency(corners: np.ndarray, size: int = 32) -> np.ndarray:
    """float32 [N, N]: overlap volume of two ``size``^3 boxes at integer ``corners`` / ``size``^3."""
    c = np.asarray(corners, dtype=np.int64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"corners must be [N, 3], got {c.shape}")
    overlap = np.ones((len(c), len(c)), dtype=np.float64)
    for axis in range(3):
        d = np.abs(c[:, None, axis] - c[None, :, axis])
        overlap *= np.clip(size - d, 0, None)
    return (overlap / float(size) ** 3).astype(np.float32)


def edge_index(adjacency: np.ndarray, threshold: float = EDGE_THRESHOLD) -> np.ndarray:
    """int64 [2, E] (row-major, like ``torch_geometric.utils.dense_to_sparse``) of ``adjacency > threshold``.

    Self-loops are kept (a patch overlaps itself fully), as in the original.
    """
    rows, cols = np.nonzero(np.asarray(adjacency) > threshold)
    return np.stack([rows, cols]).astype(np.int64)
