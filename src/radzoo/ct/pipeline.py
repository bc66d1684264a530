"""``extract``: a lung CT -> graph-CT patch, node and subject embeddings with a QA report.

Stages (METHODS 5.3; timings land in ``qa["timings_s"]``):

1. ``read``: the volume (``radzoo.io.read_volume``), checked to be a CT in HU with some depth.
2. ``segmentation``: lung labels 50 (right) / 100 (left) on a 2 mm working grid.
3. ``registration``: affine, subject mask -> atlas mask (``radzoo.ct.register``).
4. ``resample``: B-spline coefficients of the 1 mm isotropic grid (evaluated lazily per patch).
5. ``patches`` + ``encoding``: 581 streamed 32^3 patches at the mapped landmark corners,
   clipped/scaled by the spec's transform, through the patch encoder in bounded batches.
6. ``graph``: overlap adjacency > 0.13, the GCN, the mean over nodes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from radzoo.ct.feature_files import CTFeatures
from radzoo.ct.graph import EDGE_THRESHOLD, edge_index, overlap_adjacency
from radzoo.ct.landmarks import load_atlas, map_landmarks
from radzoo.ct.lungs import (
    LEFT_LABEL,
    RIGHT_LABEL,
    LungSegmenter,
    ThresholdLungSegmenter,
    get_segmenter,
)
from radzoo.ct.patches import iter_patch_batches, patch_mask_fraction
from radzoo.ct.register import RegistrationSettings, register_mask_to_atlas
from radzoo.ct.resample import IsotropicSampler
from radzoo.errors import InputError
from radzoo.io.volume import Volume

log = logging.getLogger(__name__)

PATCH_SIZE = 32
WORK_SPACING = 2.0  # mm grid for segmentation and registration
#: QA heuristic: share of patches overlapping the subject lungs by > 10 % (atlas itself: 99 %;
#: an affine fit of differently shaped lungs loses some at the edges; a failed fit loses most).
MIN_PATCHES_IN_LUNG = 0.6


class LungNotFoundError(InputError):
    """The volume holds no (or too little) lung to register: not a chest CT, or cropped."""


class CTQualityError(InputError):
    """QA failed and the caller asked for ``require_qa=True``."""


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def resolve_model(model: Any = "graphct_copdgene", device: Any = None) -> Any:
    """A graph-CT model from a loaded model, registry name or artifact directory (``radzoo.load``,
    default runtime: the patch encoder and GCN run on onnxruntime when they export with parity)."""
    from radzoo.resolve import load
    from radzoo.zoo.model import ZooModel

    m = model if isinstance(model, ZooModel) else load(model, device=device)
    m.spec.require("ct", "lung CT features")
    return m


def read_ct(source: Any) -> Volume:
    """A CT ``Volume`` from a path (NIfTI, MHA/NRRD, DICOM series dir or .zip), a Volume or sitk image."""
    from radzoo.io.volume import read_volume

    if isinstance(source, Volume):
        volume = source
    elif isinstance(source, (str, os.PathLike, bytes, bytearray)):
        volume = read_volume(source, modality="CT")
    elif type(source).__name__ == "Image" and hasattr(source, "GetSpacing"):
        volume = Volume.from_sitk(source, {"source": "<sitk image>"})
    else:
        raise InputError(f"expected a path, radzoo.io.Volume or SimpleITK image, got {type(source).__name__}")
    check_ct(volume)
    return volume


def check_ct(volume: Volume) -> None:
    """Refuse what cannot be a chest CT in HU: other modalities, single slices, non-HU values."""
    label = volume.metadata.get("source", "<volume>")
    modality = volume.metadata.get("modality")
    if modality and str(modality).upper() != "CT":
        raise InputError(f"{label}: modality is {modality}, not CT; graph-CT features need a chest CT")
    if volume.array.ndim != 3 or min(volume.shape) < 2:
        raise InputError(f"{label}: shape {volume.shape} is not a volume (a single slice or localizer?)")
    extent = [n * s for n, s in zip(volume.shape[::-1], volume.spacing, strict=True)]
    if min(extent) < 32.0:
        raise InputError(f"{label}: the volume spans only {min(extent):.1f} mm along one axis; "
                         "lung CT features need the whole chest")
    sample = volume.array[:: max(1, volume.shape[0] // 16)]
    lo, hi = np.percentile(sample, [1, 99.9])
    if not np.all(np.isfinite([lo, hi])):
        raise InputError(f"{label}: the volume holds NaN or infinite values")
    if lo > -500 or hi > 40000:
        raise InputError(f"{label}: intensities (1st percentile {lo:.0f}, 99.9th {hi:.0f}) do not look like "
                         "CT Hounsfield units (air is about -1000 HU): is this a mask, MR or normalised data?")


def _segment(volume: Volume, seg: LungSegmenter) -> tuple[Volume, list[str]]:
    """Lung labels on the 2 mm working grid, whatever grid the segmenter runs on."""
    import SimpleITK as sitk

    from radzoo.io.volume import resample

    coarse = resample(volume, spacing=WORK_SPACING, interpolator="linear", default_value=-1024.0)
    if isinstance(seg, ThresholdLungSegmenter):
        labels = seg(coarse)
    else:  # learned segmenters get the native volume; labels are brought to the working grid
        native = sitk.GetImageFromArray(np.asarray(seg(volume), dtype=np.uint8))
        native.CopyInformation(volume.to_sitk())
        ref = coarse.to_sitk()
        labels = sitk.GetArrayFromImage(sitk.Resample(native, ref, sitk.Transform(), sitk.sitkNearestNeighbor,
                                                      0, sitk.sitkUInt8))
    labels = np.asarray(labels, dtype=np.uint8)
    if labels.shape != coarse.shape:
        raise InputError(f"lung segmenter returned shape {labels.shape}, expected {coarse.shape}")
    mask = Volume(array=labels, spacing=coarse.spacing, origin=coarse.origin, direction=coarse.direction,
                  metadata={"source": volume.metadata.get("source"), "labels": {"right": 50, "left": 100}})
    return mask, list(getattr(seg, "warnings", []) or [])


@dataclass
class PreparedCT:
    """A CT brought onto the atlas, up to (not including) the networks: what ``features`` encodes
    and what graph-CT training caches (``radzoo.training.ct_patch_cache``)."""

    label: str
    sampler: IsotropicSampler  # lazy B-spline evaluation of the 1 mm grid (raw HU)
    landmarks: np.ndarray  # subject LPS mm of the 581 atlas landmark corners
    corners: np.ndarray  # int64 [581, 3] (x, y, z) 1 mm grid indices: the patch corners
    lung_fraction: np.ndarray  # float32 [581]: share of each patch inside the subject lungs
    right_ml: float
    left_ml: float
    registration: Any
    settings: RegistrationSettings
    warnings: list[str]
    segmenter: Any
    timings: dict[str, float]

    def qa(self) -> dict[str, Any]:
        """The QA report (``passed``, ``failures``, volumes, registration, timings so far)."""
        return _qa(self.right_ml, self.left_ml, self.registration, self.settings, self.lung_fraction,
                   self.corners, self.warnings, self.segmenter, self.timings)


def prepare_ct(
    source: Any,
    atlas: Any,
    *,
    segmenter: str | LungSegmenter = "auto",
    registration: RegistrationSettings | None = None,
    min_lung_ml: float = 300.0,
    timings: dict[str, float] | None = None,
) -> PreparedCT:
    """Read, segment and register one CT and map the atlas landmarks into it (stages 1-4).

    Raises :class:`LungNotFoundError` when fewer than ``min_lung_ml`` of lung are found.
    """
    timings = {} if timings is None else timings
    seg = get_segmenter(segmenter)
    settings = registration or RegistrationSettings()
    with _timed(timings, "read"):
        volume = read_ct(source)
    label = str(volume.metadata.get("source", "<volume>"))

    with _timed(timings, "segmentation"):
        mask, warnings = _segment(volume, seg)
    voxel_ml = float(np.prod(mask.spacing)) / 1000.0
    right_ml = float((mask.array == RIGHT_LABEL).sum() * voxel_ml)
    left_ml = float((mask.array == LEFT_LABEL).sum() * voxel_ml)
    if right_ml + left_ml < min_lung_ml:
        raise LungNotFoundError(
            f"{label}: no lungs found (segmented lung volume {right_ml + left_ml:.0f} ml < {min_lung_ml:.0f} ml; "
            f"segmenter {type(seg).__name__}). Graph-CT features need a chest CT covering both lungs."
        )

    with _timed(timings, "registration"):
        reg = register_mask_to_atlas(mask.to_sitk(), atlas.mask, settings)

    with _timed(timings, "resample"):
        sampler = IsotropicSampler(volume, spacing=1.0, default_value=-1024.0)
    landmarks = map_landmarks(atlas, reg.transform)
    corners = sampler.grid.physical_to_index(landmarks)
    lung_fraction = patch_mask_fraction(mask, sampler.grid, corners, PATCH_SIZE).astype(np.float32)
    return PreparedCT(label, sampler, landmarks, corners, lung_fraction, right_ml, left_ml, reg, settings,
                      warnings, seg, timings)


def features(
    source: Any,
    model: Any = "graphct_copdgene",
    *,
    segmenter: str | LungSegmenter = "auto",
    device: Any = None,
    batch_size: int = 64,
    registration: RegistrationSettings | None = None,
    min_lung_ml: float = 300.0,
    require_qa: bool = False,
) -> CTFeatures:
    """Graph-CT embeddings of one lung CT (see module docstring for the stages).

    ``model``: a registry name or artifact directory (opened with ``radzoo.load``), or a loaded
    model. Raises :class:`LungNotFoundError` when fewer than ``min_lung_ml`` of lung are
    found; other QA failures (poor registration, patches off the lungs) set ``qa["passed"]``
    to False, or raise :class:`CTQualityError` with ``require_qa=True``.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    zmodel = resolve_model(model, device)
    atlas = load_atlas(zmodel.assets)
    get_segmenter(segmenter)  # refuse an unknown segmenter before reading anything
    prep = prepare_ct(source, atlas, segmenter=segmenter, registration=registration, min_lung_ml=min_lung_ml)
    timings, corners, label = prep.timings, prep.corners, prep.label
    adjacency = overlap_adjacency(corners, PATCH_SIZE)
    edges = edge_index(adjacency, EDGE_THRESHOLD)

    transform = zmodel.transform
    runtime = zmodel.runtime  # torch or onnxruntime, at the precision radzoo.load chose
    patch_emb = np.empty((len(corners), zmodel.net.patch_encoder.conv4.out_channels), dtype=np.float32)
    batches = iter_patch_batches(prep.sampler, corners, batch_size, PATCH_SIZE, transform=transform)
    while True:
        with _timed(timings, "patches"):
            item = next(batches, None)
        if item is None:
            break
        start, batch = item
        with _timed(timings, "encoding"):
            patch_emb[start:start + len(batch)] = runtime.encode_patches(batch)
    with _timed(timings, "graph"):
        nodes = np.asarray(runtime.encode_graph(patch_emb, edges), dtype=np.float32)
    lung_fraction, landmarks = prep.lung_fraction, prep.landmarks
    qa = prep.qa()
    del prep

    features = CTFeatures(
        patch_embeddings=patch_emb,
        node_embeddings=nodes,
        subject_embedding=nodes.mean(axis=0),
        landmarks=landmarks,
        patch_corners=corners,
        patch_lung_fraction=lung_fraction,
        edge_index=edges,
        qa=qa,
        model={"name": zmodel.name, "revision": zmodel.revision, "random_init": bool(zmodel.random_init)},
        source=label,
    )
    if not qa["passed"]:
        log.warning("%s: CT QA failed: %s", label, "; ".join(qa["failures"]))
        if require_qa:
            raise CTQualityError(f"{label}: CT QA failed: {'; '.join(qa['failures'])}")
    return features


def _qa(right_ml: float, left_ml: float, reg: Any, settings: RegistrationSettings, lung_fraction: np.ndarray,
        corners: np.ndarray, warnings: list[str], seg: Any, timings: dict[str, float]) -> dict[str, Any]:
    failures: list[str] = []
    warnings = list(warnings)
    total = right_ml + left_ml
    for side, ml in (("right", right_ml), ("left", left_ml)):
        if ml < 100.0:
            failures.append(f"{side} lung not found ({ml:.0f} ml)")
    if not 1500.0 <= total <= 10000.0:
        warnings.append(f"lung volume {total:.0f} ml is outside the usual adult range 1500-10000 ml")
    if reg.dice < settings.min_dice:
        failures.append(f"registration to the atlas is poor (lung Dice {reg.dice:.2f} < {settings.min_dice})")
    det = reg.determinant
    if not 1 / 3 <= det <= 3:
        failures.append(f"registration is implausible (affine determinant {det:.2f})")
    in_lung = float((lung_fraction > 0.1).mean())
    if in_lung < MIN_PATCHES_IN_LUNG:
        failures.append(f"only {in_lung:.0%} of the patches overlap the lungs (need {MIN_PATCHES_IN_LUNG:.0%})")
    return {
        "passed": not failures,
        "failures": failures,
        "warnings": warnings,
        "lung_volume_ml": total,
        "right_lung_ml": right_ml,
        "left_lung_ml": left_ml,
        "registration_similarity": {"dice": reg.dice, "mattes_mi": reg.metric_value},
        "registration": reg.summary(),
        "patches_in_lung_fraction": in_lung,
        "mean_patch_lung_fraction": float(lung_fraction.mean()),
        "num_patches": int(len(corners)),
        "segmenter": type(seg).__name__,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
