"""The atlas (lung mask + 581 patch landmarks) and mapping its landmarks into a subject.

``atlas_patch_loc.npy`` holds ITK voxel indices (x, y, z) of patch **corners** on the atlas mask
(METHODS 5.3 step 4.5: the landmark is the ``RegionOfInterest`` corner; the asset README calls
them centres, but 575 of 581 corner-anchored windows overlap the atlas lungs by > 10 % against
463 centre-anchored ones, which supports METHODS). The atlas mask is 387 x 387 x 319 at 1 mm,
NIfTI LAS, which SimpleITK reports as LPS direction ``diag(1, -1, 1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import ArtifactError

ATLAS_MASK = "atlas_lung_mask.nii.gz"
ATLAS_LANDMARKS = "atlas_patch_loc.npy"


@dataclass
class Atlas:
    """The atlas lung mask (sitk image, labels 0/50/100) and landmark corners (int64 [N, 3], x y z)."""

    mask: Any
    landmarks: np.ndarray

    @property
    def landmarks_physical(self) -> np.ndarray:
        """Atlas landmark corners in LPS mm."""
        return np.array([self.mask.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in self.landmarks])

    @property
    def locations(self) -> np.ndarray:
        """The patch encoder's location input: landmarks divided column-wise by their maximum."""
        return (self.landmarks / self.landmarks.max(axis=0)).astype(np.float32)


_CACHE: dict[tuple[str, str], Atlas] = {}


def load_atlas(assets: Mapping[str, Path]) -> Atlas:
    """Read the atlas from a model's assets (``model.assets``); cached per file pair."""
    import SimpleITK as sitk

    missing = [n for n in (ATLAS_MASK, ATLAS_LANDMARKS) if n not in assets]
    if missing:
        raise ArtifactError(f"the model lacks the graph-CT atlas asset(s) {missing}; use a graph-CT model artifact")
    key = (str(assets[ATLAS_MASK]), str(assets[ATLAS_LANDMARKS]))
    if key in _CACHE:
        return _CACHE[key]
    try:
        mask = sitk.ReadImage(key[0])
        landmarks = np.load(key[1], allow_pickle=False)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read the graph-CT atlas ({key}): {exc}") from exc
    if landmarks.ndim != 2 or landmarks.shape[1] != 3 or not np.issubdtype(landmarks.dtype, np.integer):
        raise ArtifactError(f"{key[1]}: expected integer landmarks [N, 3], got {landmarks.dtype} {landmarks.shape}")
    atlas = Atlas(mask=mask, landmarks=landmarks.astype(np.int64))
    _CACHE[key] = atlas
    return atlas


def map_landmarks(atlas: Atlas, transform: Any) -> np.ndarray:
    """Atlas landmark corners -> subject LPS mm: atlas index -> atlas physical -> ``transform``."""
    return np.array([transform.TransformPoint(p.tolist()) for p in atlas.landmarks_physical], dtype=np.float64)
