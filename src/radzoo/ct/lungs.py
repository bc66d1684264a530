"""Lung segmentation: labels each voxel 0 (background), 50 (right lung) or 100 (left lung).

The original pipeline ran the ``lungmask`` U-net and re-valued its labels 1/2 to 50/100 (METHODS
5.3). Its weights are a download, so the default here is a classical, model-free segmenter
(HU threshold + connected components + morphology); :class:`LungmaskSegmenter` plugs the
original in when the ``lungmask`` package and its cached weights are present.

A segmenter is any callable ``(Volume) -> uint8 (z, y, x) labels`` on the volume's grid.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from radzoo.errors import InputError
from radzoo.io.volume import Volume

log = logging.getLogger(__name__)

RIGHT_LABEL = 50
LEFT_LABEL = 100


@runtime_checkable
class LungSegmenter(Protocol):
    """``(Volume in HU) -> uint8 (z, y, x)`` labels 0 / 50 (right) / 100 (left) on the same grid."""

    def __call__(self, volume: Volume) -> np.ndarray: ...


@dataclass
class ThresholdLungSegmenter:
    """Model-free lung segmentation, designed for 1 mm inspiration chest CT.

    1. Work on a coarse grid (``work_spacing`` mm, block average) for speed.
    2. Air = HU < ``threshold``; drop air touching the in-plane borders (outside the body).
    3. Keep large components that are not pure air (median HU > ``pure_air_hu``): this rejects
       bowel gas and airways, whose median is about -1000 HU.
    4. Separate the lungs: erode until two large components appear on opposite sides, then give
       each mask voxel to the nearest one (the trachea, a separate small component, is dropped).
       If erosion never separates them, split at the midline and say so in ``warnings``.
    5. Close small holes (vessels) per lung; right = the lung with the smaller LPS x (patient right).
    """

    threshold: float = -400.0
    work_spacing: float = 2.0
    min_component_ml: float = 30.0
    pure_air_hu: float = -975.0
    max_erosions: int = 6
    closing_mm: float = 4.0
    warnings: list[str] = field(default_factory=list)

    def __call__(self, volume: Volume) -> np.ndarray:
        import SimpleITK as sitk

        self.warnings = []
        image = volume.to_sitk()
        factors = [max(1, int(round(self.work_spacing / s))) for s in volume.spacing]
        coarse = sitk.BinShrink(image, factors) if max(factors) > 1 else image
        hu = sitk.GetArrayViewFromImage(coarse)
        voxel_ml = float(np.prod(coarse.GetSpacing())) / 1000.0

        air = hu < self.threshold
        cc, n = _components(air)
        border = np.unique(np.concatenate([cc[:, 0, :].ravel(), cc[:, -1, :].ravel(),
                                           cc[:, :, 0].ravel(), cc[:, :, -1].ravel()]))
        sizes = np.bincount(cc.ravel(), minlength=n + 1)
        medians = _label_medians(hu, cc, n)
        keep = np.zeros(n + 1, dtype=bool)
        for lab in range(1, n + 1):
            if lab in border or sizes[lab] * voxel_ml < self.min_component_ml:
                continue
            if medians[lab] <= self.pure_air_hu:
                continue
            keep[lab] = True
        candidate = keep[cc]
        if not candidate.any():
            return np.zeros(volume.shape, dtype=np.uint8)

        labels = self._split(candidate, coarse, voxel_ml)
        labels = self._close(labels, coarse)
        out = sitk.GetImageFromArray(labels)
        out.CopyInformation(coarse)
        if out.GetSize() != image.GetSize():
            out = sitk.Resample(out, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        return sitk.GetArrayFromImage(out).astype(np.uint8, copy=False)

    # -- helpers ----------------------------------------------------------------------------
    def _split(self, mask: np.ndarray, grid, voxel_ml: float) -> np.ndarray:  # noqa: ANN001
        from scipy import ndimage

        seeds = None
        structure = ndimage.generate_binary_structure(3, 1)
        eroded = mask
        for step in range(self.max_erosions + 1):
            if step:
                eroded = ndimage.binary_erosion(eroded, structure)
            cc, n = _components(eroded)
            if n == 0:
                break
            sizes = np.bincount(cc.ravel(), minlength=n + 1)[1:]
            order = np.argsort(sizes)[::-1]
            if n == 1 and step == 0 and sizes[0] * voxel_ml < 2 * self.min_component_ml:
                break
            if n >= 2 and sizes[order[1]] >= 0.2 * sizes[order[0]]:
                a, b = order[0] + 1, order[1] + 1
                xa = _centroid_x(cc == a, grid)
                xb = _centroid_x(cc == b, grid)
                mid = _centroid_x(mask, grid)
                if (xa - mid) * (xb - mid) < 0:  # opposite sides of the body midline
                    seeds = np.zeros(mask.shape, dtype=np.uint8)
                    seeds[cc == a] = 1
                    seeds[cc == b] = 2
                    reach = step + 2
                    break
        if seeds is None:
            cc, n = _components(mask)
            sizes = np.bincount(cc.ravel(), minlength=n + 1)
            biggest = int(np.argmax(sizes[1:]) + 1)
            region = cc == biggest
            # one connected air region: a single lung, or lungs that erosion could not separate
            xs = _voxel_x(grid, mask.shape)
            mid = _centroid_x(region, grid)
            left_side = region & (xs > mid)
            right_side = region & (xs <= mid)
            labels = np.zeros(mask.shape, dtype=np.uint8)
            balance = min(left_side.sum(), right_side.sum()) / max(region.sum(), 1)
            if balance < 0.2:
                self.warnings.append("only one lung found (or lungs could not be told apart)")
                side = RIGHT_LABEL if mid < _centroid_x(np.ones_like(mask), grid) else LEFT_LABEL
                labels[region] = side
                return labels
            self.warnings.append("lungs could not be separated morphologically; split at the midline")
            labels[right_side] = RIGHT_LABEL
            labels[left_side] = LEFT_LABEL
            return labels

        dist, (iz, iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        owner = seeds[iz, iy, ix]
        owner[(~mask) | (dist > reach)] = 0
        xa = _centroid_x(owner == 1, grid)
        xb = _centroid_x(owner == 2, grid)
        right, left = (1, 2) if xa < xb else (2, 1)  # LPS: patient right has the smaller x
        labels = np.zeros(mask.shape, dtype=np.uint8)
        labels[owner == right] = RIGHT_LABEL
        labels[owner == left] = LEFT_LABEL
        return labels

    def _close(self, labels: np.ndarray, grid) -> np.ndarray:  # noqa: ANN001
        from scipy import ndimage

        radius = max(1, int(round(self.closing_mm / min(grid.GetSpacing()))))
        ball = _ball(radius)
        out = np.zeros_like(labels)
        for lab in (RIGHT_LABEL, LEFT_LABEL):
            m = labels == lab
            if not m.any():
                continue
            padded = np.pad(m, radius)
            closed = ndimage.binary_closing(padded, ball)[radius:-radius, radius:-radius, radius:-radius]
            closed = _fill_holes_axial(closed)
            out[closed & (out == 0)] = lab
        return out


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    cc, n = ndimage.label(mask)
    return cc, int(n)


def _label_medians(values: np.ndarray, cc: np.ndarray, n: int) -> np.ndarray:
    from scipy import ndimage

    if n == 0:
        return np.zeros(1)
    med = ndimage.median(values, cc, index=np.arange(1, n + 1))
    return np.concatenate([[0.0], np.asarray(med, dtype=np.float64)])


def _voxel_x(grid, shape: tuple[int, ...]) -> np.ndarray:  # noqa: ANN001
    """LPS x (mm) of every voxel of ``grid`` (broadcastable array)."""
    d = np.asarray(grid.GetDirection()).reshape(3, 3)
    sp = np.asarray(grid.GetSpacing())
    o = np.asarray(grid.GetOrigin())
    nz, ny, nx = shape
    k = np.arange(nz)[:, None, None]
    j = np.arange(ny)[None, :, None]
    i = np.arange(nx)[None, None, :]
    return o[0] + d[0, 0] * sp[0] * i + d[0, 1] * sp[1] * j + d[0, 2] * sp[2] * k


def _centroid_x(mask: np.ndarray, grid) -> float:  # noqa: ANN001
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return 0.0
    k, j, i = idx.mean(axis=0)
    d = np.asarray(grid.GetDirection()).reshape(3, 3)
    sp = np.asarray(grid.GetSpacing())
    return float(grid.GetOrigin()[0] + d[0] @ (sp * np.array([i, j, k])))


def _ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= radius * radius


def _fill_holes_axial(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    out = mask.copy()
    for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
        out[k] = ndimage.binary_fill_holes(mask[k])
    return out


# --------------------------------------------------------------------------------- lungmask


LUNGMASK_WEIGHTS = "unet_r231-d5d2fc3d.pth"


def lungmask_available() -> bool:
    """True when the ``lungmask`` package is importable and its R231 weights are already cached."""
    if importlib.util.find_spec("lungmask") is None:
        return False
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / LUNGMASK_WEIGHTS).is_file()


@dataclass
class LungmaskSegmenter:
    """The original's segmenter: ``lungmask`` R231 (labels 1 = right, 2 = left -> 50 / 100)."""

    modelname: str = "R231"
    warnings: list[str] = field(default_factory=list)

    def __call__(self, volume: Volume) -> np.ndarray:
        if not lungmask_available():
            raise InputError(
                "the lungmask segmenter needs `pip install lungmask` and its R231 weights in the torch hub "
                f"cache ({LUNGMASK_WEIGHTS}); use segmenter='threshold' otherwise"
            )
        from lungmask import LMInferer  # type: ignore[import-not-found]

        seg = np.asarray(LMInferer(modelname=self.modelname).apply(volume.to_sitk()))
        out = np.zeros(seg.shape, dtype=np.uint8)
        out[seg == 1] = RIGHT_LABEL
        out[seg == 2] = LEFT_LABEL
        return out


SEGMENTERS: dict[str, Callable[[], LungSegmenter]] = {
    "threshold": ThresholdLungSegmenter,
    "lungmask": LungmaskSegmenter,
}


def get_segmenter(segmenter: str | LungSegmenter = "auto") -> LungSegmenter:
    """``"auto"`` (lungmask when installed with weights, else threshold), a name, or a callable."""
    if callable(segmenter) and not isinstance(segmenter, str):
        return segmenter
    if segmenter == "auto":
        return LungmaskSegmenter() if lungmask_available() else ThresholdLungSegmenter()
    if segmenter not in SEGMENTERS:
        raise InputError(f"unknown lung segmenter {segmenter!r}; choose 'auto', {', '.join(map(repr, SEGMENTERS))} "
                         "or pass a callable (Volume) -> labels")
    return SEGMENTERS[segmenter]()


def segment_lungs(volume: Volume, segmenter: str | LungSegmenter = "auto") -> np.ndarray:
    """uint8 ``(z, y, x)`` lung labels (0 / 50 right / 100 left) on ``volume``'s grid, checked."""
    seg = get_segmenter(segmenter)
    labels = np.asarray(seg(volume))
    if labels.shape != volume.shape:
        raise InputError(f"lung segmenter {seg!r} returned shape {labels.shape}, expected {volume.shape}")
    bad = np.setdiff1d(np.unique(labels), [0, RIGHT_LABEL, LEFT_LABEL])
    if bad.size:
        raise InputError(f"lung segmenter returned labels {bad.tolist()}; expected 0, 50 (right), 100 (left)")
    return labels.astype(np.uint8, copy=False)
