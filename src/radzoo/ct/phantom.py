"""A synthetic chest CT phantom: lets tests and benchmarks run the whole lung pipeline offline.

The phantom is described in patient (LPS) millimetres and rasterised onto any grid, so the same
anatomy can be sampled with anisotropic spacing, flipped directions or a large 512x512x300 grid.

Anatomy (HU): air -1000 outside; body ellipse +40 with a -100 fat ring; spine +400; two lungs
(ellipsoids, -850 parenchyma with +40 vessels); trachea at -1000 splitting into two bronchi
that enter the lungs. Patient right is LPS -x: the right lung has negative x.

Optional subject-specific lung findings (all off by default; synthetic, not a disease model):
``lung_hu`` (parenchymal density), ``emphysema`` (a volume fraction of the lungs filled with
-980 HU low-attenuation spheres of 2-8 mm radius at random positions, like centrilobular
emphysema on a real scan), ``nodules`` (soft-tissue spheres of 3-10 mm radius at random lung
positions), ``small_vessels`` (short +40 HU peripheral vessel segments at random lung positions
and directions). Real lung CTs differ between subjects in exactly these ways; phantoms that differ
only in shape and noise look alike at the same landmark, so a contrastive patch encoder has
nothing subject-specific to learn from them. The findings use their own random stream, so a
phantom without them is identical to one made before the options existed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radzoo.io.volume import Volume

#: Lungs: upper halves of ellipsoids standing on a domed diaphragm (wide base, narrow apex).
#: (base centre, semi-axes) in LPS mm; right lung at -x, left at +x.
RIGHT_LUNG = ((-78.0, 5.0, -130.0), (72.0, 98.0, 250.0))
LEFT_LUNG = ((78.0, 5.0, -135.0), (70.0, 96.0, 245.0))
DOME = 35.0  # diaphragm dome height (mm)
HEART = ((22.0, -35.0, -90.0), (62.0, 55.0, 60.0))
BODY = (170.0, 130.0)  # semi-axes in x, y of the body ellipse
FAT = 12.0  # subcutaneous fat thickness (mm)
EMPHYSEMA_HU = -980.0  # low-attenuation areas (LAA-950 counts voxels below -950 HU)
EMPHYSEMA_RADIUS = (2.0, 8.0)  # mm
NODULE_HU = 30.0
NODULE_RADIUS = (3.0, 10.0)  # mm
SMALL_VESSEL_RADIUS = (1.0, 2.5)  # mm
SMALL_VESSEL_LENGTH = (10.0, 40.0)  # mm


def _in_lungs(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Lung membership (either lung) of points in anatomy millimetres (before ``scale``)."""
    inside = np.zeros(np.broadcast(x, y, z).shape, dtype=bool)
    for centre, axes in (RIGHT_LUNG, LEFT_LUNG):
        r2 = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
        dz = (z - centre[2]) / axes[2]
        inside |= (r2 + dz**2 <= 1.0) & (z >= centre[2] + DOME * np.clip(1.0 - r2, 0.0, None))
    return inside


def _lung_volume_mm3() -> float:
    """Volume of both lungs (anatomy mm^3, before ``scale``): upper half-ellipsoids minus the domes."""
    total = 0.0
    for _, (a, b, c) in (RIGHT_LUNG, LEFT_LUNG):
        # half-ellipsoid minus the dome z < DOME (1 - r^2) over the unit disc: pi a b DOME / 2
        total += 2.0 / 3.0 * np.pi * a * b * c - np.pi * a * b * DOME / 2.0
    return float(total)


def _lung_spheres(rng: np.random.Generator, count: int, radius: tuple[float, float]) -> np.ndarray:
    """``[count, 4]`` (x, y, z, r) spheres centred at uniformly random lung points (anatomy mm)."""
    lo = np.array([min(c[0] - a[0] for c, a in (RIGHT_LUNG, LEFT_LUNG)),
                   min(c[1] - a[1] for c, a in (RIGHT_LUNG, LEFT_LUNG)),
                   min(c[2] for c, _ in (RIGHT_LUNG, LEFT_LUNG))])
    hi = np.array([max(c[0] + a[0] for c, a in (RIGHT_LUNG, LEFT_LUNG)),
                   max(c[1] + a[1] for c, a in (RIGHT_LUNG, LEFT_LUNG)),
                   max(c[2] + a[2] for c, a in (RIGHT_LUNG, LEFT_LUNG))])
    centres = np.empty((0, 3))
    while len(centres) < count:
        p = rng.uniform(lo, hi, size=(max(2 * (count - len(centres)), 16), 3))
        centres = np.concatenate([centres, p[_in_lungs(p[:, 0], p[:, 1], p[:, 2])]])
    return np.column_stack([centres[:count], rng.uniform(*radius, size=count)])


def _paint_spheres(sl: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray, spheres: np.ndarray,
                   where: np.ndarray, value: float) -> None:
    """Set ``sl`` to ``value`` inside the ``spheres`` that cut this slice, where ``where`` holds."""
    if not len(spheres):
        return
    near = spheres[(spheres[:, 2] + spheres[:, 3] >= z.min()) & (spheres[:, 2] - spheres[:, 3] <= z.max())]
    for cx, cy, cz, r in near:
        inside = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r
        sl[inside & where] = value


def _segments(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Vessel centre lines: from near each hilum outward into its lung."""
    out = []
    for centre, axes in (RIGHT_LUNG, LEFT_LUNG):
        c = np.array(centre) + np.array([0.0, 0.0, 0.35 * axes[2]])
        a = np.array(axes) * np.array([1.0, 1.0, 0.35])
        hilum = c + np.array([-np.sign(c[0]) * 0.55 * a[0], 0.0, 0.0])
        for _ in range(n):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            end = c + 0.7 * a * d
            out.append((hilum, end, float(rng.uniform(1.5, 3.0))))
    return out


def _tube(px: np.ndarray, py: np.ndarray, z: float, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Mask of points within ``radius`` of segment ab on one axial plane."""
    ab = b - a
    t = ((px - a[0]) * ab[0] + (py - a[1]) * ab[1] + (z - a[2]) * ab[2]) / float(ab @ ab)
    t = np.clip(t, 0.0, 1.0)
    dx = px - (a[0] + t * ab[0])
    dy = py - (a[1] + t * ab[1])
    dz = z - (a[2] + t * ab[2])
    return dx * dx + dy * dy + dz * dz <= radius * radius


def random_findings(rng: np.random.Generator) -> dict[str, float | int]:
    """Per-subject lung findings for :func:`chest_phantom` (synthetic): parenchyma -880..-820 HU,
    emphysema 2-25 % of the lung volume, 0-10 nodules, 300-900 small vessels. Pass as
    ``chest_phantom(**random_findings(rng))``."""
    return {
        "lung_hu": float(rng.uniform(-880.0, -820.0)),
        "emphysema": float(rng.uniform(0.02, 0.25)),
        "nodules": int(rng.integers(0, 11)),
        "small_vessels": int(rng.integers(300, 901)),
    }


def chest_phantom(
    shape: Sequence[int] = (120, 256, 256),
    spacing: Sequence[float] = (1.4, 1.4, 2.5),
    direction: Sequence[float] | np.ndarray | None = None,
    *,
    scale: float = 1.0,
    noise_hu: float = 15.0,
    vessels_per_lung: int = 12,
    seed: int = 0,
    lung_hu: float = -850.0,
    emphysema: float = 0.0,
    nodules: int = 0,
    small_vessels: int = 0,
) -> Volume:
    """A chest CT ``Volume`` (float32 HU, array ``(z, y, x)``) centred on the body.

    ``shape`` is (z, y, x); ``spacing`` (x, y, z) mm; ``direction`` a 3x3 LPS matrix (default
    identity: the usual axial DICOM orientation). ``scale`` shrinks or grows the anatomy.
    Subject-specific lung findings (see the module doc): ``lung_hu`` parenchymal HU,
    ``emphysema`` the lung volume fraction (0..0.5) in low-attenuation spheres, ``nodules`` the
    number of soft-tissue nodules, ``small_vessels`` the number of short peripheral vessel segments
    (1-2.5 mm radius, 10-40 mm long, random position and direction: the subject's own vessel
    pattern in every part of the lung); their positions are drawn from ``seed``.
    """
    if not 0.0 <= emphysema <= 0.5:
        raise ValueError(f"emphysema is a lung volume fraction in [0, 0.5], got {emphysema}")
    if nodules < 0 or small_vessels < 0:
        raise ValueError(f"nodules and small_vessels must be >= 0, got {nodules}, {small_vessels}")
    nz, ny, nx = (int(s) for s in shape)
    sp = np.asarray(spacing, dtype=np.float64)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64).reshape(3, 3)
    rng = np.random.default_rng(seed)
    # the grid centre sits at the LPS origin
    centre_index = (np.array([nx, ny, nz], dtype=np.float64) - 1) / 2
    origin = -(d @ (sp * centre_index))
    ii, jj = np.meshgrid(np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64), indexing="xy")
    vessels = _segments(rng, vessels_per_lung)
    findings = np.random.default_rng([int(seed), 1])  # own stream: the phantom without findings is unchanged
    mean_r3 = (EMPHYSEMA_RADIUS[1] ** 4 - EMPHYSEMA_RADIUS[0] ** 4) / (4 * (EMPHYSEMA_RADIUS[1] - EMPHYSEMA_RADIUS[0]))
    holes = _lung_spheres(findings, int(round(emphysema * _lung_volume_mm3() / (4.0 / 3.0 * np.pi * mean_r3))),
                          EMPHYSEMA_RADIUS)
    nodes = _lung_spheres(findings, int(nodules), NODULE_RADIUS)
    starts = _lung_spheres(findings, int(small_vessels), SMALL_VESSEL_RADIUS)
    directions = findings.normal(size=(len(starts), 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    ends = starts[:, :3] + directions * findings.uniform(*SMALL_VESSEL_LENGTH, size=(len(starts), 1))
    small = [(a[:3], b, float(a[3])) for a, b in zip(starts, ends, strict=True)]
    array = np.empty((nz, ny, nx), dtype=np.float32)
    s = float(scale)
    for k in range(nz):
        # physical coordinates of this slice: p = origin + D @ (spacing * index)
        px = origin[0] + d[0, 0] * sp[0] * ii + d[0, 1] * sp[1] * jj + d[0, 2] * sp[2] * k
        py = origin[1] + d[1, 0] * sp[0] * ii + d[1, 1] * sp[1] * jj + d[1, 2] * sp[2] * k
        pz = origin[2] + d[2, 0] * sp[0] * ii + d[2, 1] * sp[1] * jj + d[2, 2] * sp[2] * k
        x, y, z = px / s, py / s, pz / s
        sl = np.full((ny, nx), -1000.0, dtype=np.float32)
        body = (x / BODY[0]) ** 2 + (y / BODY[1]) ** 2 <= 1.0
        inner = (x / (BODY[0] - FAT)) ** 2 + (y / (BODY[1] - FAT)) ** 2 <= 1.0
        sl[body] = -100.0
        sl[inner] = 40.0
        lung = _in_lungs(x, y, z)
        sl[lung] = lung_hu
        _paint_spheres(sl, x, y, z, holes, lung, EMPHYSEMA_HU)
        hc, ha = HEART
        sl[sum(((c - m) / a) ** 2 for c, m, a in zip((x, y, z), hc, ha, strict=True)) <= 1.0] = 40.0
        sl[(x / 22.0) ** 2 + ((y - 100.0) / 20.0) ** 2 <= 1.0] = 400.0  # vertebral body
        for a, b, r in vessels:
            if min(a[2], b[2]) - r <= z.mean() <= max(a[2], b[2]) + r:
                sl[_tube(x, y, float(z.mean()), a, b, r) & (sl < -500)] = 40.0
        for a, b, r in small:  # peripheral vessels stay inside the lungs
            if min(a[2], b[2]) - r <= z.mean() <= max(a[2], b[2]) + r:
                sl[_tube(x, y, float(z.mean()), a, b, r) & lung & (sl < -500)] = 40.0
        _paint_spheres(sl, x, y, z, nodes, sl < -500, NODULE_HU)
        # airway: trachea down to the carina, then one bronchus into each lung
        carina = np.array([0.0, -5.0, 40.0])
        trachea = _tube(x, y, float(z.mean()), np.array([0.0, -5.0, 1e4]), carina, 9.0)
        right = _tube(x, y, float(z.mean()), carina, np.array([-55.0, 0.0, 10.0]), 6.0)
        left = _tube(x, y, float(z.mean()), carina, np.array([55.0, 0.0, 5.0]), 6.0)
        sl[(trachea & body) | right | left] = -1000.0
        array[k] = sl
    if noise_hu > 0:
        array += rng.normal(0.0, noise_hu, size=array.shape).astype(np.float32)
    return Volume(
        array=array,
        spacing=tuple(float(v) for v in sp),  # type: ignore[arg-type]
        origin=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        direction=d,
        metadata={"source": "<chest phantom>", "modality": "CT",
                  "phantom": {"scale": s, "seed": seed, "lung_hu": float(lung_hu), "emphysema": float(emphysema),
                              "emphysema_spheres": len(holes), "nodules": len(nodes),
                              "small_vessels": len(starts)}},
    )
