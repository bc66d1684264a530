"""Fast checks of the graph-CT building blocks: resampling, graph, segmentation sides, registration."""

from __future__ import annotations

import numpy as np
import pytest

import radzoo
from radzoo import ct
from radzoo.ct.landmarks import load_atlas
from radzoo.ct.resample import IsotropicSampler
from radzoo.io import resample
from radzoo.zoo.tiny import tiny_specs


@pytest.fixture(scope="module")
def atlas():
    return load_atlas(radzoo.build(tiny_specs()["tiny-random-graphct"]).assets)


def test_sampler_blocks_equal_sitk_bspline_resample_with_padding() -> None:
    vol = ct.chest_phantom(shape=(30, 64, 64), spacing=(1.7, 1.3, 2.5), direction=np.diag([1.0, -1.0, 1.0]),
                           scale=0.3)
    ref = resample(vol, size=ct.isotropic_grid(vol).size)  # sitk B-spline, default -1024, graph-CT size rule
    sampler = IsotropicSampler(vol)
    assert sampler.grid.size == ref.shape[::-1]
    for x, y, z in [(0, 0, 0), (10, 20, 5), (-10, -5, -3), (90, 70, 50), (60, 60, 40)]:
        expected = np.full((32, 32, 32), -1024.0, dtype=np.float32)  # outside the grid: the padding value
        lo = [max(c, 0) for c in (z, y, x)]
        hi = [min(c + 32, n) for c, n in zip((z, y, x), ref.shape, strict=False)]
        if all(top > bottom for bottom, top in zip(lo, hi, strict=False)):
            expected[lo[0] - z:hi[0] - z, lo[1] - y:hi[1] - y, lo[2] - x:hi[2] - x] = \
                ref.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.testing.assert_allclose(sampler.block((x, y, z)), expected, atol=1e-2)


def test_overlap_adjacency_and_edges() -> None:
    corners = np.array([[0, 0, 0], [16, 0, 0], [0, 0, 28], [100, 100, 100], [8, 8, 8]])
    adj = ct.overlap_adjacency(corners)
    assert adj[0, 0] == 1.0 and adj[0, 1] == pytest.approx(0.5) and adj[0, 2] == pytest.approx(4 / 32)
    assert adj[0, 3] == 0.0 and adj[0, 4] == pytest.approx((24 / 32) ** 3)
    np.testing.assert_array_equal(adj, adj.T)
    edges = ct.edge_index(adj)
    pairs = set(map(tuple, edges.T.tolist()))
    assert (0, 2) not in pairs  # 0.125 is not > 0.13
    assert {(i, i) for i in range(5)} <= pairs and (0, 1) in pairs and (1, 0) in pairs
    from torch import from_numpy
    from torch_geometric.utils import dense_to_sparse

    ref, _ = dense_to_sparse(from_numpy((adj > 0.13).astype(np.float32)))
    np.testing.assert_array_equal(edges, ref.numpy())


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0])], ids=["LPS", "RAS-stored"])
def test_lungs_labelled_by_patient_side(direction: np.ndarray) -> None:
    vol = ct.chest_phantom(shape=(70, 96, 96), spacing=(3.6, 3.6, 4.3), direction=direction, noise_hu=10)
    coarse = resample(vol, spacing=2.0, interpolator="linear")
    seg = ct.ThresholdLungSegmenter()
    labels = seg(coarse)
    assert set(np.unique(labels)) == {0, ct.RIGHT_LABEL, ct.LEFT_LABEL}
    for lab, sign in ((ct.RIGHT_LABEL, -1), (ct.LEFT_LABEL, 1)):
        centroid = coarse.index_to_physical(np.argwhere(labels == lab).mean(axis=0))
        assert np.sign(centroid[0]) == sign  # LPS: patient right is -x
        assert np.count_nonzero(labels == lab) * 8e-3 > 1500  # ml: the phantom lungs are ~3 l each
    # the airway (trachea, -1000 HU) is not lung: the slice above the lungs has no lung label
    top = coarse.shape[0] - 2
    assert not labels[top].any()
    assert seg.warnings == []


def test_segmenter_selection() -> None:
    assert isinstance(ct.get_segmenter("threshold"), ct.ThresholdLungSegmenter)
    if not ct.lungmask_available():
        assert isinstance(ct.get_segmenter("auto"), ct.ThresholdLungSegmenter)
        with pytest.raises(ValueError, match="lungmask"):
            ct.LungmaskSegmenter()(ct.chest_phantom(shape=(4, 8, 8)))
    with pytest.raises(ValueError, match="unknown lung segmenter"):
        ct.get_segmenter("unet")


def _known_affine(atlas, angle_deg=8.0, scales=(1.08, 0.93, 1.05), shift=(10.0, -8.0, 6.0)):
    import SimpleITK as sitk

    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    g = sitk.AffineTransform(3)
    g.SetMatrix((rot @ np.diag(scales)).ravel().tolist())
    g.SetCenter(atlas.landmarks_physical.mean(axis=0).tolist())
    g.SetTranslation(list(shift))
    ref = sitk.Image([160, 160, 134], sitk.sitkUInt8)  # 3 mm LPS grid covering the warped atlas
    ref.SetSpacing([3.0, 3.0, 3.0])
    ref.SetOrigin([-230.0, -430.0, -1180.0])
    moving = sitk.Resample(atlas.mask, ref, g, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return g, moving


def test_registration_recovers_known_affine(atlas) -> None:
    g, moving = _known_affine(atlas)
    settings = ct.RegistrationSettings(base_spacing=3.0)
    reg = ct.register_mask_to_atlas(moving, atlas.mask, settings)
    truth = np.array([g.GetInverse().TransformPoint(p.tolist()) for p in atlas.landmarks_physical])
    err = np.linalg.norm(ct.map_landmarks(atlas, reg.transform) - truth, axis=1)
    assert err.mean() < 3.0 and err.max() < 6.0, (err.mean(), err.max())
    assert reg.dice > 0.9
    assert reg.converged, reg.stop_conditions
    np.testing.assert_allclose(reg.matrix @ np.asarray(g.GetMatrix()).reshape(3, 3), np.eye(3), atol=0.03)
    again = ct.register_mask_to_atlas(moving, atlas.mask, settings)  # reproducible to ~0.01 mm
    again_pts = ct.map_landmarks(atlas, again.transform)
    assert np.abs(again_pts - ct.map_landmarks(atlas, reg.transform)).max() < 0.1


def test_empty_mask_cannot_register(atlas) -> None:
    import SimpleITK as sitk

    empty = sitk.Image([20, 20, 20], sitk.sitkUInt8)
    with pytest.raises(ValueError, match="empty"):
        ct.register_mask_to_atlas(empty, atlas.mask)


def test_atlas_assets(atlas) -> None:
    assert atlas.mask.GetSize() == (387, 387, 319)
    np.testing.assert_allclose(np.asarray(atlas.mask.GetDirection()).reshape(3, 3), np.diag([1, -1, 1]))
    assert atlas.landmarks.shape == (581, 3)
    assert atlas.locations.max(axis=0).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(Exception, match="atlas"):
        load_atlas({})


def test_phantom_findings_are_subject_specific_and_off_by_default() -> None:
    from radzoo.ct.phantom import EMPHYSEMA_HU, NODULE_HU, random_findings

    kw = {"shape": (48, 96, 96), "spacing": (3.6, 3.6, 6.0), "noise_hu": 0.0, "vessels_per_lung": 2}
    plain = ct.chest_phantom(seed=4, **kw).array
    assert not (plain == EMPHYSEMA_HU).any() and not (plain == NODULE_HU).any()
    vol = ct.chest_phantom(seed=4, lung_hu=-830.0, emphysema=0.2, nodules=6, small_vessels=200, **kw)
    arr = vol.array
    # everything outside the lungs is untouched; the findings only replace lung parenchyma
    changed = arr != plain
    assert changed.any() and (plain[changed] == -850.0).all()
    assert set(np.unique(arr[changed]).tolist()) <= {-830.0, EMPHYSEMA_HU, NODULE_HU, 40.0}
    # the emphysema share of the parenchyma is the requested fraction, less sphere overlaps and clipping
    share = (arr == EMPHYSEMA_HU).sum() / ((arr == EMPHYSEMA_HU) | (arr == -830.0) | (arr == 40.0) & changed).sum()
    assert 0.12 < share <= 0.2, share
    assert (arr == NODULE_HU).any() and vol.metadata["phantom"]["nodules"] == 6
    assert vol.metadata["phantom"]["small_vessels"] == 200 and ((arr == 40.0) & changed).sum() > 200
    # positions come from the seed: another subject has its findings elsewhere
    other = ct.chest_phantom(seed=5, lung_hu=-830.0, emphysema=0.2, nodules=6, **kw).array
    assert ((arr == EMPHYSEMA_HU) != (other == EMPHYSEMA_HU)).mean() > 0.01
    f = random_findings(np.random.default_rng(0))
    assert -880 <= f["lung_hu"] <= -820 and 0.02 <= f["emphysema"] <= 0.25 and 0 <= f["nodules"] <= 10
    assert 300 <= f["small_vessels"] <= 900
    with pytest.raises(ValueError, match="emphysema"):
        ct.chest_phantom(shape=(4, 8, 8), emphysema=0.9)
