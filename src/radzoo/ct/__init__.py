"""Lung CT features with graph-CT ("Context Matters"): 581 atlas-registered 32 mm patches, a 3D
patch encoder and a GCN over the patch-overlap graph.

Public API::

    features(source, model="graphct_copdgene", *, segmenter="auto", device=None, batch_size=64,
            registration=None, min_lung_ml=300, require_qa=False) -> CTFeatures
    prepare_ct(source, atlas, ...) -> PreparedCT  # stages up to the networks (training caches it)
    CTFeatures (.patch_embeddings, .node_embeddings, .subject_embedding, .landmarks, .qa, .save, .load)
    segment_lungs(volume, segmenter="auto") / ThresholdLungSegmenter / LungmaskSegmenter
    register_mask_to_atlas(subject_mask, atlas_mask, settings) / RegistrationSettings
    overlap_adjacency(corners) / edge_index(adjacency)
    chest_phantom(...)  # synthetic chest CT for tests and benchmarks
"""

from __future__ import annotations

from radzoo.ct.feature_files import CTFeatures
from radzoo.ct.graph import EDGE_THRESHOLD, edge_index, overlap_adjacency
from radzoo.ct.landmarks import Atlas, load_atlas, map_landmarks
from radzoo.ct.lungs import (
    LEFT_LABEL,
    RIGHT_LABEL,
    LungmaskSegmenter,
    LungSegmenter,
    ThresholdLungSegmenter,
    get_segmenter,
    lungmask_available,
    segment_lungs,
)
from radzoo.ct.phantom import chest_phantom
from radzoo.ct.pipeline import (
    CTQualityError,
    LungNotFoundError,
    PreparedCT,
    check_ct,
    features,
    prepare_ct,
    read_ct,
)
from radzoo.ct.register import Registration, RegistrationSettings, register_mask_to_atlas
from radzoo.ct.resample import IsotropicSampler, isotropic_grid

__all__ = [
    "EDGE_THRESHOLD",
    "LEFT_LABEL",
    "RIGHT_LABEL",
    "Atlas",
    "CTFeatures",
    "CTQualityError",
    "IsotropicSampler",
    "LungNotFoundError",
    "LungSegmenter",
    "LungmaskSegmenter",
    "PreparedCT",
    "Registration",
    "RegistrationSettings",
    "ThresholdLungSegmenter",
    "check_ct",
    "chest_phantom",
    "edge_index",
    "features",
    "get_segmenter",
    "isotropic_grid",
    "load_atlas",
    "lungmask_available",
    "map_landmarks",
    "overlap_adjacency",
    "prepare_ct",
    "read_ct",
    "register_mask_to_atlas",
    "segment_lungs",
]
