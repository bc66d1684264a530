"""Synthetic chest CT phantoms for graph-CT training tests (no real lung CT is available here).

Each phantom is ``radzoo.ct.chest_phantom`` with its own anatomy scale, noise level and vessel
tree, plus a few spherical "lesions" (soft-tissue nodules) placed inside the lungs, written as
NIfTI. They are synthetic: nothing here is a real patient. Small grids (about 2.6 x 2.6 x 4.5 mm
voxels over the usual chest field of view) keep the CT pipeline fast on two CPU cores; the
registration settings in ``FAST_REGISTRATION`` do the same for the mask-to-atlas fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: config overrides for a cheap mask-to-atlas registration (the cache key records them)
FAST_REGISTRATION = {
    "registration_base_spacing": "4",
    "registration_shrink": "2,1,1",
    "registration_iterations": "60,30,15",
    "segmenter": "threshold",
}


def add_lesions(volume, rng: np.random.Generator, count: int, radius_mm: tuple[float, float] = (4.0, 12.0)) -> int:
    """Paint ``count`` +30 HU spheres at random lung voxels (HU < -700); returns how many were placed."""
    arr = volume.array
    lung = np.argwhere(arr < -700)
    if not len(lung):
        return 0
    sx, sy, sz = volume.spacing
    zz, yy, xx = np.ogrid[: arr.shape[0], : arr.shape[1], : arr.shape[2]]
    for _ in range(count):
        cz, cy, cx = lung[rng.integers(len(lung))]
        r = rng.uniform(*radius_mm)
        ball = ((zz - cz) * sz) ** 2 + ((yy - cy) * sy) ** 2 + ((xx - cx) * sx) ** 2 <= r * r
        arr[ball & (arr < -500)] = 30.0 + rng.normal(0.0, 10.0)
    return count


def write_phantoms(out: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` varied phantoms as ``out/phantom<i>.nii.gz``."""
    import SimpleITK as sitk

    from radzoo import ct

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        scale = float(rng.uniform(0.9, 1.05))
        noise = float(rng.uniform(10.0, 30.0))
        volume = ct.chest_phantom(shape=(64, 128, 128), spacing=(2.6, 2.6, 4.5), seed=seed * 100 + i,
                                  scale=scale, noise_hu=noise, vessels_per_lung=int(rng.integers(3, 8)))
        add_lesions(volume, rng, int(rng.integers(0, 4)))
        path = out / f"phantom{i}.nii.gz"
        sitk.WriteImage(volume.to_sitk(), str(path))
        paths.append(path)
    return paths
