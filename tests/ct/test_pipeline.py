"""The whole graph-CT pipeline on a synthetic chest phantom, the CLI, and the bad-input paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo import ct, zoo
from radzoo.cli import main
from radzoo.errors import CapabilityError, InputError
from radzoo.io.volume import Volume
from radzoo.zoo.tiny import tiny_specs


@pytest.fixture(scope="module")
def model():
    return radzoo.build(tiny_specs()["tiny-random-graphct"])


@pytest.fixture(scope="module")
def phantom() -> Volume:
    # anisotropic voxels, LPS direction, ~34 x 34 x 29 cm field of view; geometry exact in float32
    # so a NIfTI round trip keeps it bit for bit
    return ct.chest_phantom(shape=(96, 192, 192), spacing=(1.75, 1.75, 3.0), seed=3)


@pytest.fixture(scope="module")
def features(model, phantom) -> ct.CTFeatures:
    return ct.features(phantom, model, segmenter="threshold")


def test_phantom_features_shapes_and_qa(features: ct.CTFeatures) -> None:
    assert features.patch_embeddings.shape == (581, 128)
    assert features.node_embeddings.shape == (581, 128)
    assert features.subject_embedding.shape == (128,)
    assert features.landmarks.shape == (581, 3) and np.isfinite(features.landmarks).all()
    np.testing.assert_allclose(features.subject_embedding, features.node_embeddings.mean(axis=0), rtol=1e-6)
    assert np.isfinite(features.patch_embeddings).all() and features.patch_embeddings.std() > 0
    qa = features.qa
    assert qa["passed"], qa["failures"]
    # the phantom's lungs are about 3.3 l (right) and 2.8 l (left)
    assert 2500 < qa["right_lung_ml"] < 4200 and 2000 < qa["left_lung_ml"] < 3600
    assert qa["registration_similarity"]["dice"] > 0.8
    assert qa["registration"]["converged"], qa["registration"]["stop_conditions"]
    assert qa["patches_in_lung_fraction"] >= 0.6
    assert set(qa["timings_s"]) >= {"read", "segmentation", "registration", "resample", "patches", "encoding"}
    # graph: self-loops on every node, symmetric
    pairs = set(map(tuple, features.edge_index.T.tolist()))
    assert {(i, i) for i in range(581)} <= pairs
    assert all((b, a) in pairs for a, b in pairs)
    # landmarks = the 1 mm grid corners in physical space, within a voxel
    assert np.abs(features.patch_corners - np.rint(features.patch_corners)).max() == 0


def test_patch_embeddings_come_from_the_net(features: ct.CTFeatures, model, phantom) -> None:
    """Recompute two patches by hand: sampler block -> spec transform -> patch encoder."""
    import torch

    sampler = ct.IsotropicSampler(phantom)
    idx = [0, 300]
    patches = np.stack([sampler.block(features.patch_corners[i])[None] for i in idx])
    hu = patches.copy()
    patches = np.clip(patches, -1024, 240) / 632.0 + 1024.0 / 632.0 - 1.0  # METHODS 5.3
    np.testing.assert_allclose(model.transform(hu), patches, atol=1e-5)
    with torch.inference_mode():
        emb = model.net.encode_patches(torch.from_numpy(patches.astype(np.float32))).numpy()
    np.testing.assert_allclose(emb, features.patch_embeddings[idx], atol=1e-4)


def test_cli_on_nifti_is_reproducible_and_saves(features, model, phantom, tmp_path: Path, capsys) -> None:
    import SimpleITK as sitk

    nifti = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(phantom.to_sitk(), str(nifti))
    artifact = zoo.save(model, tmp_path / "model")
    out = tmp_path / "feat.npz"
    code = main(["ct-features", str(nifti), "--model", str(artifact), "--out", str(out), "--segmenter", "threshold"])
    assert code == 0, capsys.readouterr().err
    again = ct.CTFeatures.load(out)
    # same volume through a file, second run: same patch corners, same embeddings
    np.testing.assert_array_equal(again.patch_corners, features.patch_corners)
    np.testing.assert_allclose(again.landmarks, features.landmarks, atol=1e-3)
    np.testing.assert_allclose(again.patch_embeddings, features.patch_embeddings, atol=1e-4)
    np.testing.assert_allclose(again.subject_embedding, features.subject_embedding, atol=1e-4)
    assert again.qa["passed"] and again.model["random_init"]


def test_save_json_roundtrip(features: ct.CTFeatures, tmp_path: Path) -> None:
    back = ct.CTFeatures.load(features.save(tmp_path / "f.json"))
    np.testing.assert_allclose(back.node_embeddings, features.node_embeddings, rtol=1e-6)
    assert back.qa["lung_volume_ml"] == features.qa["lung_volume_ml"]
    with pytest.raises(InputError, match=".npz or .json"):
        features.save(tmp_path / "f.csv")


def test_failed_registration_is_flagged(model, phantom) -> None:
    """A segmenter that finds one small blob: QA fails loudly, require_qa raises."""

    def one_blob(volume: Volume) -> np.ndarray:
        labels = np.zeros(volume.shape, dtype=np.uint8)
        nz, ny, nx = volume.shape
        labels[nz // 3: nz // 3 + 25, ny // 3: ny // 3 + 40, nx // 5: nx // 5 + 40] = ct.RIGHT_LABEL
        return labels

    with pytest.raises(ct.CTQualityError, match="left lung not found"):
        ct.features(phantom, model, segmenter=one_blob, require_qa=True)


# ----------------------------------------------------------------------------- bad inputs


def test_abdominal_nifti_has_no_lungs(model, shared_data: Path) -> None:
    with pytest.raises(ct.LungNotFoundError, match="no lungs found"):
        ct.features(shared_data / "ct" / "totalseg_example_ct_sm.nii.gz", model)


def test_abdominal_dicom_series_has_no_lungs(model, shared_data: Path, tmp_path: Path, capsys) -> None:
    series = shared_data / "ct" / "totalseg_example_ct_dicom_series"
    with pytest.raises(ct.LungNotFoundError, match="no lungs found"):
        ct.features(series, model)
    artifact = zoo.save(model, tmp_path / "model")
    code = main(["ct-features", str(series), "--model", str(artifact), "--out", str(tmp_path / "x.npz")])
    assert code == 1 and "no lungs found" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_localizer_only_and_single_slice_series(model, shared_data: Path, tmp_path: Path) -> None:
    loc = tmp_path / "loc"
    loc.mkdir()
    shutil.copy(shared_data / "dicom" / "ct_localizer_MAROTECH_J2K.dcm", loc / "a")
    with pytest.raises(InputError, match="localizer"):
        ct.features(loc, model)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(shared_data / "dicom" / "ct_chest_CT1_JLSN.dcm", one / "a")
    with pytest.raises(InputError, match="single"):
        ct.features(one, model)


def test_not_ct_inputs(model, phantom, atlas_mask_volume) -> None:
    mr = Volume(array=np.abs(phantom.array[:8]), spacing=phantom.spacing, origin=phantom.origin,
                direction=phantom.direction, metadata={"source": "mr", "modality": "MR"})
    with pytest.raises(InputError, match="modality is MR"):
        ct.features(mr, model)
    with pytest.raises(InputError, match="Hounsfield"):
        ct.features(atlas_mask_volume, model)  # a label mask, not HU
    flat = Volume(array=phantom.array[:1], spacing=phantom.spacing, origin=phantom.origin,
                  direction=phantom.direction, metadata={"source": "flat"})
    with pytest.raises(InputError, match="single slice"):
        ct.features(flat, model)
    with pytest.raises(InputError, match="expected a path"):
        ct.features(42, model)


def test_model_must_be_graphct(phantom) -> None:
    mococxr = radzoo.build(tiny_specs()["tiny-random-mococxr"])
    with pytest.raises(CapabilityError, match="graph-CT"):
        ct.features(phantom, mococxr)


@pytest.fixture(scope="module")
def atlas_mask_volume(model) -> Volume:
    import SimpleITK as sitk

    return Volume.from_sitk(sitk.ReadImage(str(model.assets["atlas_lung_mask.nii.gz"])), {"source": "atlas mask"})
