"""Affine registration of a subject lung mask to the atlas lung mask (SimpleITK).

Mirrors the original ANTs call (METHODS 5.3): fixed = atlas mask, moving = subject mask, both
labelled 0 / 50 / 100; centre-of-mass initialisation; affine; Mattes mutual information with 32
bins, regular sampling of 50 %; shrink factors 4/2/1 with smoothing sigmas 2/1/0 voxels and
500/250/100 iterations as per-level budgets (each level is a separate run, as ANTs counts them).

Deliberate differences, for speed and reproducibility: both masks are block-averaged onto a
``base_spacing`` grid (2 mm by default; the original worked at 1 mm) and cropped to the lungs
plus a margin; metric samples are capped at ``max_samples`` per level; and the optimiser is a
regular-step gradient descent with deterministic physical-shift scales (ITK's sampled scale and
learning-rate estimators draw random points, which made repeated runs differ by millimetres).
It stops when the step falls below ``min_step`` (~0.01 mm) instead of ANTs' windowed
convergence test.

The resulting transform maps atlas physical points to subject physical points, which is exactly
what landmark mapping needs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radzoo.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationSettings:
    """Defaults are the original's ANTs settings; ``base_spacing`` is ours (see module doc)."""

    base_spacing: float = 2.0  # mm grid both masks are averaged onto before registering
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)  # voxels, as ANTs without a unit
    iterations: tuple[int, ...] = (500, 250, 100)
    histogram_bins: int = 32
    sampling_percentage: float = 0.5
    crop_margin_mm: float = 30.0  # masks are cropped to their lungs plus this margin (ours: speed)
    max_samples: int = 100_000  # cap on metric samples per level (ours: keeps the 1x level cheap)
    learning_rate: float = 2.0  # initial step (~mm at shrink 1; scaled by the shrink factor)
    min_step: float = 0.01  # stop when the step falls below this (~mm)
    # threaded metric sums differ in the last bits run to run, and step halving can amplify that
    # into a different optimum; one thread makes the result bit-for-bit reproducible
    deterministic: bool = True
    seed: int = 1  # fixed metric sampling seed. ITK's scale/learning-rate estimation still samples
    # randomly, so repeated runs differ by ~0.01 mm in the transform (not bit-identical).
    min_dice: float = 0.7  # QA: overlap of the registered subject mask with the atlas mask

    def __post_init__(self) -> None:
        n = len(self.shrink_factors)
        if not (len(self.smoothing_sigmas) == n == len(self.iterations)) or n == 0:
            raise InputError("shrink_factors, smoothing_sigmas and iterations need the same, non-zero length")
        if self.base_spacing <= 0 or not 0 < self.sampling_percentage <= 1:
            raise InputError("base_spacing must be > 0 and sampling_percentage in (0, 1]")


@dataclass
class Registration:
    """An atlas -> subject affine and how well it fits."""

    transform: Any  # sitk.AffineTransform: atlas physical point -> subject physical point
    metric_value: float  # final Mattes MI (negative: lower is better)
    dice: float  # lungs (both labels) of the registered subject mask vs the atlas mask
    dice_right: float
    dice_left: float
    iterations: list[int] = field(default_factory=list)
    stop_conditions: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.transform.GetMatrix(), dtype=np.float64).reshape(3, 3)

    @property
    def converged(self) -> bool:
        """The finest level stopped on its step tolerance, not on the iteration budget."""
        return bool(self.stop_conditions) and "Maximum number of iterations" not in self.stop_conditions[-1]

    @property
    def determinant(self) -> float:
        return float(np.linalg.det(self.matrix))

    def summary(self) -> dict[str, Any]:
        return {
            "metric": "mattes_mutual_information",
            "metric_value": float(self.metric_value),
            "dice": float(self.dice),
            "dice_right": float(self.dice_right),
            "dice_left": float(self.dice_left),
            "determinant": self.determinant,
            "converged": self.converged,
            "iterations": list(self.iterations),
            "stop_conditions": list(self.stop_conditions),
            "seconds": float(self.seconds),
            "matrix": self.matrix.tolist(),
            "translation": list(self.transform.GetTranslation()),
            "center": list(self.transform.GetCenter()),
        }


def _on_grid(mask: Any, spacing: float) -> Any:
    """Float32 copy of a label image block-averaged (or linearly resampled) onto ``spacing`` mm."""
    import SimpleITK as sitk

    image = sitk.Cast(mask, sitk.sitkFloat32)
    current = np.asarray(image.GetSpacing())
    factors = [int(round(spacing / s)) for s in current]
    if all(f >= 1 and abs(f * s - spacing) < 1e-3 for f, s in zip(factors, current, strict=True)):
        return sitk.BinShrink(image, factors) if max(factors) > 1 else image
    size = [max(1, int(round(n * s / spacing))) for n, s in zip(image.GetSize(), current, strict=True)]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (spacing,) * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def _physical_shift_scales(image: Any, center: Any) -> list[float]:
    """Affine parameter scales: squared max physical shift of the domain corners per unit change."""
    size = np.asarray(image.GetSize())
    corners = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in np.array(b) * (size - 1)])
               for b in np.ndindex(2, 2, 2)]
    rel = np.abs(np.asarray(corners) - np.asarray(center)).max(axis=0)  # per axis j
    return [float(rel[j] ** 2) for _ in range(3) for j in range(3)] + [1.0, 1.0, 1.0]


def _crop_to_mask(image: Any, margin_mm: float) -> Any:
    """The bounding box of the non-zero voxels plus ``margin_mm``: fewer voxels, same geometry."""
    arr = np.asarray(__import__("SimpleITK").GetArrayViewFromImage(image))
    nz = np.argwhere(arr > 0)
    if len(nz) == 0:
        return image
    margin = np.ceil(margin_mm / np.asarray(image.GetSpacing())[::-1]).astype(int)
    lo = np.maximum(nz.min(axis=0) - margin, 0)
    hi = np.minimum(nz.max(axis=0) + margin + 1, arr.shape)
    return image[int(lo[2]):int(hi[2]), int(lo[1]):int(hi[1]), int(lo[0]):int(hi[0])]


def label_dice(fixed: Any, moving: Any, transform: Any) -> tuple[float, float, float]:
    """Dice (all lung, right, left) of ``moving`` warped into ``fixed`` space by ``transform``."""
    import SimpleITK as sitk

    warped = sitk.Resample(moving, fixed, transform, sitk.sitkNearestNeighbor, 0.0, moving.GetPixelID())
    a = np.rint(sitk.GetArrayViewFromImage(fixed))
    b = np.rint(sitk.GetArrayViewFromImage(warped))

    def dice(x: np.ndarray, y: np.ndarray) -> float:
        s = x.sum() + y.sum()
        return float(2.0 * np.logical_and(x, y).sum() / s) if s else 0.0

    return dice(a > 25, b > 25), dice(np.abs(a - 50) < 13, np.abs(b - 50) < 13), dice(a > 87, b > 87)


def _run_levels(fixed: Any, moving: Any, transform: Any, scales: list[float],
                settings: RegistrationSettings) -> tuple[list[int], list[str], float]:
    """One registration run per pyramid level, updating ``transform`` in place."""
    import SimpleITK as sitk

    iterations: list[int] = []
    stops: list[str] = []
    metric = float("nan")
    for shrink, sigma, n_iter in zip(settings.shrink_factors, settings.smoothing_sigmas, settings.iterations, strict=True):
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
        reg.SetMetricSamplingStrategy(reg.REGULAR)
        n_level = float(np.prod([max(1, n // int(shrink)) for n in fixed.GetSize()]))
        fraction = min(settings.sampling_percentage, settings.max_samples / n_level)
        reg.SetMetricSamplingPercentage(fraction, settings.seed)
        reg.SetInterpolator(sitk.sitkLinear)
        # Deterministic stand-ins for ITK's sampled scale / learning-rate estimators (which draw
        # random points and made repeated runs differ by millimetres): physical-shift scales from
        # the fixed domain's corners, and a regular-step descent whose step is in ~mm.
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=settings.learning_rate * shrink,
            minStep=settings.min_step,
            numberOfIterations=int(n_iter),
            relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8,
        )
        reg.SetOptimizerScales(scales)
        reg.SetShrinkFactorsPerLevel([int(shrink)])
        reg.SetSmoothingSigmasPerLevel([float(sigma)])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        reg.SetInitialTransform(transform, inPlace=True)
        try:
            reg.Execute(fixed, moving)
        except RuntimeError as exc:
            raise InputError(f"lung mask registration failed at shrink {shrink}: {str(exc).splitlines()[-1]}") from exc
        iterations.append(int(reg.GetOptimizerIteration()))
        stops.append(reg.GetOptimizerStopConditionDescription())
        metric = float(reg.GetMetricValue())
    return iterations, stops, metric


def register_mask_to_atlas(subject_mask: Any, atlas_mask: Any,
                           settings: RegistrationSettings | None = None) -> Registration:
    """Affine registration, atlas mask fixed and subject mask moving (both sitk label images)."""
    import SimpleITK as sitk

    settings = settings or RegistrationSettings()
    t0 = time.perf_counter()
    fixed = _crop_to_mask(_on_grid(atlas_mask, settings.base_spacing), settings.crop_margin_mm)
    moving = _crop_to_mask(_on_grid(subject_mask, settings.base_spacing), settings.crop_margin_mm)
    if not np.any(sitk.GetArrayViewFromImage(moving) > 0):
        raise InputError("the subject lung mask is empty: nothing to register")
    transform = sitk.AffineTransform(
        sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                          sitk.CenteredTransformInitializerFilter.MOMENTS)
    )
    scales = _physical_shift_scales(fixed, transform.GetCenter())
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if settings.deterministic:  # ITK metrics take their thread count from the global default
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        iterations, stops, metric = _run_levels(fixed, moving, transform, scales, settings)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    dice, dice_r, dice_l = label_dice(fixed, moving, transform)
    return Registration(transform=transform, metric_value=metric, dice=dice, dice_right=dice_r, dice_left=dice_l,
                        iterations=iterations, stop_conditions=stops, seconds=time.perf_counter() - t0)
