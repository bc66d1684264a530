"""Streaming patch extraction: bounded batches of 32^3 patches, never the full 581 x 32^3 stack.

A patch is the ``size``^3 block of the 1 mm isotropic grid whose corner is the mapped landmark
(``RegionOfInterest`` with that index, METHODS 5.3), in (z, y, x) array order; voxels outside
the grid read -1024 (the original's 60-voxel padding, extended as far as needed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from radzoo.ct.resample import Grid, IsotropicSampler
from radzoo.io.volume import Volume


def iter_patch_batches(
    sampler: IsotropicSampler,
    corners: np.ndarray,
    batch_size: int = 64,
    size: int = 32,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, float32 [b, 1, size, size, size])``; one buffer is reused between batches.

    ``transform`` (the spec's HU transform) is applied in place of the raw HU when given.
    Consumers must use each batch before asking for the next one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    buffer = np.empty((min(batch_size, len(corners)), 1, size, size, size), dtype=np.float32)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        batch = buffer[: len(chunk)]
        for b, corner in enumerate(chunk):
            sampler.block(corner, size, out=batch[b, 0])
        if transform is not None:
            batch[...] = transform(batch)
        yield start, batch


def patch_mask_fraction(mask: Volume, grid: Grid, corners: np.ndarray, size: int = 32, step: int = 4) -> np.ndarray:
    """Fraction of each patch inside the lung mask (nearest lookup on a ``step``-voxel sub-grid)."""
    offsets = np.arange(step // 2, size, step)
    sub = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3)  # (x, y, z)
    points = grid.index_to_physical((corners[:, None, :] + sub[None, :, :]).reshape(-1, 3))
    inv = np.linalg.inv(np.asarray(mask.direction) @ np.diag(mask.spacing))
    ijk = np.floor((points - np.asarray(mask.origin)) @ inv.T + 0.5).astype(np.int64)
    nz, ny, nx = mask.shape
    inside = (ijk >= 0).all(axis=1) & (ijk[:, 0] < nx) & (ijk[:, 1] < ny) & (ijk[:, 2] < nz)
    values = np.zeros(len(ijk), dtype=bool)
    i = ijk[inside]
    values[inside] = mask.array[i[:, 2], i[:, 1], i[:, 0]] > 0
    return values.reshape(len(corners), -1).mean(axis=1)
