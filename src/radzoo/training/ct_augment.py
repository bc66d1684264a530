"""graph-CT's patch augmentations, with MONAI, in the original's order and parameters (METHODS 5.4).

batmanlab/Context_Aware_SSL: train.py composes, on HU + 1024 (values 0..1264), before the
``/ 632 - 1`` normalisation:

1. ``RandAdjustContrast(prob=0.25)`` (gamma 0.5-4.5, MONAI's default);
2. ``RandGaussianNoise(prob=0.25, mean=0.0, std=50)`` (MONAI draws the spread from 0..std);
3. ``Rand3DElastic(mode='bilinear', prob=1.0, sigma_range=(8, 12), magnitude_range=(0, 1264),
   spatial_size=(32, 32, 32), translate_range=(12, 12, 12), rotate_range=(pi/18,)*3,
   scale_range=(0.1,)*3, padding_mode='border')``. The magnitude range was written as the HU
   span (its comment says so); it is kept as is.

MONAI treats the first axis as channels: the patch phase augments one patch ``[1, 32, 32, 32]``
at a time, the graph phase a subject's whole stack ``[581, 32, 32, 32]`` at once (one contrast
curve and one deformation for all its patches, independent noise per voxel), exactly as the
original's two datasets do. ``TwoCropsTransform``: the two views are two independent draws.
Each draw is seeded, so a run (and a resumed run) sees the same augmentations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

HU_OFFSET = 1024.0
SCALE = 632.0  # (1024 + 240) / 2


def graphct_augmentation(device: str | torch.device | None = None) -> Any:
    """The original's MONAI ``Compose`` (see module doc); ``device`` runs the elastic warp there."""
    from radzoo.extras import require_extra

    transforms = require_extra("training", "monai.transforms", feature="graph-CT training augmentation (MONAI)")
    Compose, Rand3DElastic = transforms.Compose, transforms.Rand3DElastic
    RandAdjustContrast, RandGaussianNoise = transforms.RandAdjustContrast, transforms.RandGaussianNoise

    elastic = Rand3DElastic(
        mode="bilinear",
        prob=1.0,
        sigma_range=(8, 12),
        magnitude_range=(0, 1024 + 240),
        spatial_size=(32, 32, 32),
        translate_range=(12, 12, 12),
        rotate_range=(math.pi / 18, math.pi / 18, math.pi / 18),
        scale_range=(0.1, 0.1, 0.1),
        padding_mode="border",
        device=torch.device(device) if device is not None else None,
    )
    return Compose([RandAdjustContrast(prob=0.25), RandGaussianNoise(prob=0.25, mean=0.0, std=50), elastic])


def two_views(transform: Any, hu: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented, normalised float32 views of int16/float HU patches ``[C, 32, 32, 32]``.

    The input is shifted to HU + 1024 (as the original), augmented twice by ``transform`` seeded
    from ``seed``, then mapped by ``x / 632 - 1``.
    """
    x = np.asarray(hu, dtype=np.float32) + HU_OFFSET
    views = []
    for i in range(2):
        transform.set_random_state(seed=(int(seed) * 2 + i) % (2**32))
        out = transform(x)
        out = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
        views.append(out.to(torch.float32) / SCALE - 1.0)
    return views[0], views[1]


def normalise(hu: np.ndarray) -> torch.Tensor:
    """No augmentation: ``(HU + 1024) / 632 - 1`` (the spec's transform on already-clipped HU)."""
    return torch.from_numpy((np.asarray(hu, dtype=np.float32) + HU_OFFSET) / SCALE - 1.0)
