"""graph-CT training: the patch cache over the real CT pipeline, MONAI augmentations, a tiny run whose
artifact runs through ``radzoo ct-features`` and ``radzoo extract``.

Data: synthetic chest phantoms (tests/phantom_ct_set.py: varied scale, noise, vessels and lesions)
and the real abdominal CT of the shared data set for the no-lung path. No real lung CT is
available here, so nothing in these tests is a real chest scan.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import radzoo
from phantom_ct_set import FAST_REGISTRATION, write_phantoms
from radzoo.cli import main
from radzoo.errors import ArtifactError, InputError
from radzoo.training.ct_patch_cache import PatchCache, build_patch_cache, cache_key
from radzoo.training.graph_hparams import GraphCTConfig
from radzoo.training.hparams import resolve_config
from radzoo.training.methods.graphct_pretraining import registration_settings

#: a run small enough for two CPU cores: 2 landmarks x 1 step, one graph sub-epoch
TINY_GRAPHCT = {
    **FAST_REGISTRATION,
    "batch_size": "4",
    "graph_batch_size": "2",
    "moco_k": "8",
    "graph_moco_k": "4",
    "landmark_stride": "291",
    "steps_per_landmark": "1",
    "epochs": "1",
    "sub_epochs": "1",
    "device": "cpu",
    "progress": "false",
    "log_every": "0",
}


def _one_lung(path: Path, out: Path) -> Path:
    """A phantom whose left lung (LPS +x) is filled with soft tissue: lungs found, QA fails."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(image)
    xs = np.array([image.TransformIndexToPhysicalPoint((i, 0, 0))[0] for i in range(arr.shape[2])])
    arr[:, :, xs > 20] = np.where(arr[:, :, xs > 20] < -500, 40, arr[:, :, xs > 20])
    fixed = sitk.GetImageFromArray(arr)
    fixed.CopyInformation(image)
    sitk.WriteImage(fixed, str(out))
    return out


@pytest.fixture(scope="session")
def ct_inputs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ct_inputs")
    phantoms = write_phantoms(folder, 2, seed=7)
    _one_lung(phantoms[0], folder / "one_lung.nii.gz")
    shutil.copy(shared_data / "ct" / "totalseg_example_ct_sm.nii.gz", folder / "abdomen.nii.gz")
    (folder / "notes.txt").write_text("not a volume\n")
    return folder


@pytest.fixture(scope="session")
def config() -> GraphCTConfig:
    return resolve_config(GraphCTConfig, overrides=TINY_GRAPHCT)


@pytest.fixture(scope="session")
def model():
    return radzoo.build("graphct_copdgene", device="cpu")


@pytest.fixture(scope="session")
def cache_dir(ct_inputs: Path, config: GraphCTConfig, model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("patch_cache") / "cache"
    report = build_patch_cache(ct_inputs, out, model, segmenter=config.segmenter,
                               registration=registration_settings(config))
    assert report.built == 2 and report.cached == 0, report
    assert sum(report.seconds.values()) > 0 and 0 < report.registration_share < 1
    return out


def test_cache_holds_the_pipelines_patches_and_leaves_out_bad_volumes(cache_dir: Path, ct_inputs: Path, config, model) -> None:
    from radzoo import ct
    from radzoo.ct.landmarks import load_atlas

    cache = PatchCache(cache_dir, cache_key(model, config.segmenter, registration_settings(config)))
    assert cache.subjects == ["phantom0", "phantom1"]
    excluded = cache.manifest["excluded"]
    assert "LungNotFoundError" in excluded["abdomen"]["reason"]  # the real abdominal CT: no lungs
    assert excluded["one_lung"]["reason"].startswith("QA failed")  # lungs found, but the fit to the atlas fails
    assert "not a CT volume" in excluded["notes.txt"]["reason"]
    patches = cache.patches("phantom1")
    assert patches.shape == (581, 32, 32, 32) and patches.dtype == np.int16
    assert patches.min() >= -1024 and patches.max() <= 240
    # a direct computation through the CT pipeline: the sampler's block at the mapped corner, clipped, rounded
    prep = ct.prepare_ct(ct_inputs / "phantom1.nii.gz", load_atlas(model.assets), segmenter="threshold",
                         registration=registration_settings(config))
    np.testing.assert_array_equal(cache.corners("phantom1"), prep.corners)
    for landmark in (0, 290, 580):
        block = prep.sampler.block(prep.corners[landmark], 32)
        np.testing.assert_array_equal(cache.patch("phantom1", landmark), np.rint(np.clip(block, -1024, 240)).astype(np.int16))
    adj = cache.adjacency("phantom1")
    assert adj.shape == (581, 581) and adj.diagonal().all() and (adj == adj.T).all()
    qa = cache.manifest["subjects"]["phantom1"]["qa"]
    assert qa["passed"] and qa["num_patches"] == 581


def test_cache_from_another_setup_or_an_interrupted_build_is_refused(cache_dir: Path, ct_inputs: Path, config, model,
                                                                     tmp_path: Path) -> None:
    other = registration_settings(resolve_config(GraphCTConfig, overrides={**TINY_GRAPHCT, "registration_iterations": "61,30,15"}))
    with pytest.raises(ArtifactError, match="another atlas, spec or pipeline version.*registration"):
        PatchCache(cache_dir, cache_key(model, config.segmenter, other))
    with pytest.raises(ArtifactError, match="another atlas"):
        build_patch_cache(ct_inputs, cache_dir, model, segmenter=config.segmenter, registration=other)
    # an interrupted build: the manifest still says complete = false, a subject file was half written
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["complete"] = False
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "subjects" / "phantom2.safetensors.tmp").write_bytes(b"partial")
    with pytest.raises(ArtifactError, match="incomplete"):
        PatchCache(copy)
    # running the build again finishes it: finished and excluded volumes are not redone
    report = build_patch_cache(ct_inputs, copy, model, segmenter=config.segmenter, registration=registration_settings(config))
    assert report.cached == 2 and report.built == 0 and set(report.excluded) >= {"abdomen", "one_lung"}
    assert PatchCache(copy).subjects == ["phantom0", "phantom1"]
    assert not list((copy / "subjects").glob("*.tmp"))
    # a second builder on the same directory is refused while the first holds it
    import fcntl

    with open(copy / ".build.lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputError, match="being built by another process"):
            build_patch_cache(ct_inputs, copy, model, segmenter=config.segmenter, registration=registration_settings(config))
    with pytest.raises(ArtifactError, match="not a graph-CT patch cache"):
        PatchCache(tmp_path)


def test_monai_augmentations_in_the_original_order() -> None:
    from monai.transforms import Rand3DElastic, RandAdjustContrast, RandGaussianNoise

    from radzoo.training.ct_augment import graphct_augmentation, two_views

    compose = graphct_augmentation()
    kinds = [type(t) for t in compose.transforms]
    assert kinds == [RandAdjustContrast, RandGaussianNoise, Rand3DElastic]
    contrast, noise, elastic = compose.transforms
    assert contrast.prob == 0.25 and tuple(contrast.gamma) == (0.5, 4.5)
    assert noise.prob == 0.25 and noise.mean == 0.0 and noise.std == 50
    assert elastic.prob == 1.0 and tuple(elastic.sigma_range) == (8, 12) and tuple(elastic.magnitude_range) == (0, 1264)
    grid = elastic.rand_affine_grid
    assert tuple(grid.translate_range) == (12, 12, 12) and tuple(grid.scale_range) == (0.1, 0.1, 0.1)
    np.testing.assert_allclose(grid.rotate_range, [np.pi / 18] * 3)
    assert (elastic.mode, elastic.padding_mode, tuple(elastic.spatial_size)) == ("bilinear", "border", (32, 32, 32))
    hu = np.random.default_rng(0).uniform(-1024, 240, size=(1, 32, 32, 32)).astype(np.int16)
    a1, b1 = two_views(compose, hu, seed=5)
    a2, b2 = two_views(compose, hu, seed=5)
    assert torch.equal(a1, a2) and torch.equal(b1, b2) and not torch.equal(a1, b1)
    assert a1.shape == (1, 32, 32, 32) and a1.dtype == torch.float32
    assert -1.5 < float(a1.min()) and float(a1.max()) < 1.5  # (HU + 1024) / 632 - 1, plus noise


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_tiny_run_artifact_runs_through_ct_features_and_extract(cache_dir: Path, ct_inputs: Path, tmp_path: Path,
                                                                 capsys) -> None:
    out = tmp_path / "graphct"
    args = ["train", "graphct", "--data", str(ct_inputs), "--out", str(out), "--cache", str(cache_dir)]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in TINY_GRAPHCT.items()]
    assert main(args) == 0
    run = tmp_path / "graphct.train"
    patch = _metrics(run / "patch" / "metrics.jsonl")
    graph = _metrics(run / "graph" / "metrics.jsonl")
    assert [r["step"] for r in patch] == [1, 2] and [r["landmark"] for r in patch] == [0.0, 291.0]
    assert len(graph) == 1 and np.isfinite(graph[0]["loss"])
    assert abs(patch[0]["lr"] - 0.03) < 1e-12  # cosine at epoch 0 of 1
    model = radzoo.load(out)  # strict load of the graphct_copdgene layout
    assert model.spec.name == "graphct_copdgene" and not model.random_init
    config = json.loads((out / "config.json").read_text())
    assert config["provenance"]["data"]["subjects"] == 2 and config["provenance"]["graph"]["steps"] == 1
    init = radzoo.build("graphct_copdgene", seed=0)
    assert not torch.equal(model.net.patch_encoder.conv1.weight, init.net.patch_encoder.conv1.weight)
    # a crash during the graph phase, then --resume: the patch phase is done, and the graph phase restarts
    # from the restored (trained) patch encoder, so its step repeats exactly and the artifact keeps it
    patch_weights = model.net.patch_encoder.conv1.weight.clone()
    shutil.rmtree(run / "graph")
    assert main(args + ["--resume"]) == 0
    assert [r["step"] for r in _metrics(run / "patch" / "metrics.jsonl")] == [1, 2]
    again = _metrics(run / "graph" / "metrics.jsonl")
    assert len(again) == 1 and again[0]["loss"] == pytest.approx(graph[0]["loss"], abs=1e-5)
    assert torch.equal(radzoo.load(out).net.patch_encoder.conv1.weight, patch_weights)
    capsys.readouterr()
    # the artifact runs unchanged through the CT commands
    feats = tmp_path / "feat.npz"
    assert main(["ct-features", str(ct_inputs / "phantom0.nii.gz"), "--model", str(out), "--out", str(feats),
                 "--segmenter", "threshold"]) == 0
    data = np.load(feats)
    assert data["subject_embedding"].shape == (128,) and np.isfinite(data["node_embeddings"]).all()
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(ct_inputs / "phantom1.nii.gz", one)
    rc = main(["extract", str(one), "--model", str(out), "--out", str(tmp_path / "ext"), "--segmenter", "threshold", "-q"])
    assert rc == 0
    import pyarrow.parquet as pq

    table = pq.read_table(next((tmp_path / "ext" / "embeddings").glob("*.parquet")))
    assert table.num_rows == 1


def test_graphct_config_and_inputs_are_checked(tmp_path: Path) -> None:
    from radzoo.training.hparams import ConfigError

    with pytest.raises(ConfigError, match="graph_batch_size"):
        resolve_config(GraphCTConfig, overrides={"graph_batch_size": "1"})
    with pytest.raises(ConfigError, match="same number of levels"):
        resolve_config(GraphCTConfig, overrides={"registration_shrink": "2,1"})
    with pytest.raises(InputError, match="no CT volumes|does not exist|names nothing"):
        build_patch_cache(tmp_path / "missing", tmp_path / "c", "graphct_copdgene", segmenter="threshold")
