"""On-demand cubic B-spline sampling of the 1 mm isotropic grid (no full resampled volume).

The original resamples the whole CT to 1 mm with ``sitk.BSpline`` (default -1024), pads 60
voxels of -1024 and then cuts 581 patches (METHODS 5.3). Only the patches are ever used, so
:class:`IsotropicSampler` computes the B-spline coefficients once and evaluates just the
requested 32^3 blocks of that 1 mm grid. Values equal ``sitk.Resample(..., sitkBSpline, -1024)``
(same grid: origin and direction kept, size ``int(n_x s_x)``, ``int(n_y s_y)``,
``int((n_z - 1) s_z)``; mirror boundary; outside the input buffer -> -1024) to float32
rounding, and anything outside the 1 mm grid is -1024, which is what padding gives.

The 1 mm grid shares origin and direction with the input, so the map from output to input
index is a per-axis scaling and the 3D tensor-product B-spline separates into three small
matrix products per block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radzoo.io.volume import Volume


def _bspline3(t: np.ndarray) -> np.ndarray:
    """Cubic B-spline kernel."""
    a = np.abs(t)
    out = np.zeros_like(a)
    near = a < 1
    far = (a >= 1) & (a < 2)
    out[near] = 2.0 / 3.0 - a[near] ** 2 + 0.5 * a[near] ** 3
    out[far] = (2.0 - a[far]) ** 3 / 6.0
    return out


def _mirror(k: np.ndarray, n: int) -> np.ndarray:
    """ITK/scipy 'mirror' boundary (whole-sample symmetric) for indices in [-(n-1), 2(n-1)]."""
    if n == 1:
        return np.zeros_like(k)
    period = 2 * (n - 1)
    k = np.mod(k, period)
    return np.where(k >= n, period - k, k)


@dataclass(frozen=True)
class Grid:
    """Geometry of the 1 mm grid: ITK size (x, y, z), spacing, origin, direction (LPS)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def physical_to_continuous_index(self, points: np.ndarray) -> np.ndarray:
        m = np.linalg.inv(self.direction @ np.diag(self.spacing))
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.origin)) @ m.T

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        """Nearest voxel index (ITK rounding: half up), int64 (x, y, z)."""
        return np.floor(self.physical_to_continuous_index(points) + 0.5).astype(np.int64)


def isotropic_grid(volume: Volume, spacing: float = 1.0) -> Grid:
    """The graph-CT 1 mm grid of ``volume`` (the original's ``convert_to_isotropic`` size rule)."""
    nz, ny, nx = volume.shape
    sx, sy, sz = volume.spacing
    size = (max(int(nx * sx / spacing), 1), max(int(ny * sy / spacing), 1), max(int((nz - 1) * sz / spacing), 1))
    return Grid(size=size, spacing=(spacing,) * 3, origin=tuple(volume.origin),  # type: ignore[arg-type]
                direction=np.asarray(volume.direction, dtype=np.float64))


class IsotropicSampler:
    """Evaluate blocks of the B-spline-resampled 1 mm grid of ``volume`` (see module docstring)."""

    def __init__(self, volume: Volume, spacing: float = 1.0, default_value: float = -1024.0) -> None:
        from scipy import ndimage

        self.volume_shape = volume.shape  # (z, y, x)
        self.grid = isotropic_grid(volume, spacing)
        self.default_value = float(default_value)
        # output index o on an axis -> input continuous index o * t / s
        self.ratio = tuple(spacing / s for s in volume.spacing)  # (x, y, z)
        self.coefficients = ndimage.spline_filter(
            np.asarray(volume.array, dtype=np.float32), order=3, mode="mirror", output=np.float32
        )

    def _axis(self, start: int, length: int, axis_xyz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights [length, taps], input indices [taps] and validity [length] along one axis."""
        n_in = self.volume_shape[2 - axis_xyz]
        n_out = self.grid.size[axis_xyz]
        out = np.arange(start, start + length)
        u = out * self.ratio[axis_xyz]
        valid = (out >= 0) & (out < n_out) & (u >= -0.5) & (u < n_in - 0.5)
        lo = int(np.floor(u.min())) - 1
        hi = int(np.floor(u.max())) + 2
        taps = np.arange(lo, hi + 1)
        weights = _bspline3(u[:, None] - taps[None, :])
        # fold taps that fall outside [0, n-1] onto their mirror images
        src = _mirror(np.clip(taps, -(n_in - 1), 2 * (n_in - 1)), n_in)
        uniq, inverse = np.unique(src, return_inverse=True)
        folded = np.zeros((length, len(uniq)), dtype=np.float64)
        np.add.at(folded.T, inverse, weights.T)
        return folded.astype(np.float32), uniq, valid

    def block(self, corner_xyz: Sequence[int], size: int = 32, out: np.ndarray | None = None) -> np.ndarray:
        """float32 ``(size, size, size)`` in (z, y, x) order: the 1 mm grid from ``corner_xyz`` on."""
        wx, ix, vx = self._axis(int(corner_xyz[0]), size, 0)
        wy, iy, vy = self._axis(int(corner_xyz[1]), size, 1)
        wz, iz, vz = self._axis(int(corner_xyz[2]), size, 2)
        if out is None:
            out = np.empty((size, size, size), dtype=np.float32)
        if not (vx.any() and vy.any() and vz.any()):
            out.fill(self.default_value)
            return out
        c = self.coefficients[np.ix_(iz, iy, ix)]
        c = np.tensordot(wz, c, axes=(1, 0))  # (z, y_in, x_in)
        c = np.tensordot(c, wy, axes=(1, 1))  # (z, x_in, y)
        c = np.tensordot(c, wx, axes=(1, 1))  # (z, y, x)
        out[...] = c
        inside = vz[:, None, None] & vy[None, :, None] & vx[None, None, :]
        out[~inside] = self.default_value
        return out
