"""Batch extraction with a graph-CT model: a synthetic chest phantom (NIfTI) and real abdominal
CTs without lungs (NIfTI + DICOM series folder) in one run, resume, the node output, discovery."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo.cli import main
from radzoo.errors import CapabilityError, InputError
from radzoo.extract import extract_features, read_table
from radzoo.extract.volumes import discover_volumes


@pytest.fixture(scope="module")
def graphct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``graphct_copdgene`` with random weights (``zoo.build``), saved as an artifact folder."""
    from radzoo import zoo

    return zoo.save(radzoo.build("graphct_copdgene", seed=1), tmp_path_factory.mktemp("m") / "graphct_random")


@pytest.fixture(scope="module")
def phantom_nifti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import SimpleITK as sitk

    from radzoo import ct

    path = tmp_path_factory.mktemp("ph") / "phantom.nii.gz"
    sitk.WriteImage(ct.chest_phantom(shape=(96, 192, 192), spacing=(1.75, 1.75, 3.0), seed=3).to_sitk(), str(path))
    return path


@pytest.fixture()
def series_dir(shared_data: Path) -> Path:
    folder = shared_data / "ct" / "totalseg_example_ct_dicom_series"
    if not folder.is_dir():
        pytest.skip("shared DICOM series missing")
    return folder


def _rows(out: Path) -> list[dict]:
    table = read_table(out, "embeddings")
    return [] if table is None else table.to_pylist()


def test_ct_archive_rows_errors_and_resume(graphct_dir: Path, phantom_nifti: Path, shared_data: Path,
                                          series_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy2(phantom_nifti, archive / "phantom.nii.gz")
    shutil.copy2(shared_data / "ct" / "totalseg_example_ct_sm.nii.gz", archive / "abdomen.nii.gz")
    shutil.copytree(series_dir, archive / "patient1" / "series1")
    (archive / "patient1" / "notes.txt").write_text("not a volume\n")
    out = tmp_path / "out"
    cmd = ["extract", "--model", str(graphct_dir), str(archive), "--out", str(out), "--threads", "2", "-q"]
    assert main(cmd) == 3
    err = capsys.readouterr().err
    assert "1 written" in err and "2 failed" in err and "1 non-image files skipped" in err, err

    rows = _rows(out)
    assert len(rows) == 1
    row = rows[0]
    assert row["path"] == str(archive / "phantom.nii.gz")
    assert row["sha256"] == hashlib.sha256((archive / "phantom.nii.gz").read_bytes()).hexdigest()
    emb = np.asarray(row["embedding"], dtype=np.float32)
    assert emb.shape == (128,) and np.isfinite(emb).all() and emb.std() > 0
    assert row["output"] == "subject" and row["model"] == "graphct_copdgene"
    assert row["qa_passed"] is True and 4500 < row["lung_volume_ml"] < 7800
    assert row["registration_dice"] > 0.8 and row["patches_in_lung_fraction"] >= 0.6
    assert row["series_instance_uid"] is None and row["sop_instance_uid"] is None  # NIfTI: no UIDs
    assert json.loads(row["qa"])["passed"] is True

    errors = {Path(e["path"]).name: e for e in read_table(out, "errors").to_pylist()}
    assert set(errors) == {"abdomen.nii.gz", "series1", "notes.txt"}
    assert errors["abdomen.nii.gz"]["error_type"] == "LungNotFoundError"
    assert errors["series1"]["error_type"] == "LungNotFoundError" and "no lungs found" in errors["series1"]["message"]
    assert errors["notes.txt"]["error_type"] == "NotAVolume" and errors["notes.txt"]["skipped"]
    assert not errors["series1"]["skipped"] and errors["series1"]["size"] == sum(
        f.stat().st_size for f in (archive / "patient1" / "series1").iterdir())

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["dim"] == 128 and manifest["runs"][0]["options"]["workers"] is None

    # rerun: nothing is recomputed or duplicated; the failures are not retried
    assert main(cmd) == 0
    err = capsys.readouterr().err
    assert "0 written, 1 already done, 0 failed, 2 failed earlier" in err, err
    assert len(_rows(out)) == 1 and len(read_table(out, "errors")) == 3

    # node output: 581 x 128 stored flattened; their mean is the subject embedding of the same volume
    node_out = tmp_path / "node"
    r = extract_features(str(graphct_dir), [archive / "phantom.nii.gz"], node_out, output="node", threads=2, quiet=True)
    assert r.exit_code == 0 and r.counts.written == 1
    nodes = np.asarray(_rows(node_out)[0]["embedding"], dtype=np.float32).reshape(581, 128)
    np.testing.assert_allclose(nodes.mean(axis=0), emb, atol=1e-5)


def test_discovery_one_item_per_series(series_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    from radzoo.extract.ct_work import hash_volume, series_sha256

    root = tmp_path / "tree"
    slices = sorted(series_dir.iterdir())
    for sub, chunk in (("a", slices[:3]), ("b/c", slices[3:6])):
        (root / sub).mkdir(parents=True)
        for f in chunk:
            shutil.copy2(f, root / sub / f.name)
    (root / "b" / "readme.md").write_text("# notes")
    shutil.copy2(shared_data / "ct" / "totalseg_example_ct_sm.nii.gz", root / "vol.nii.gz")
    with zipfile.ZipFile(root / "zipped.zip", "w") as zf:
        for f in slices[:2]:
            zf.write(f, f.name)

    found = discover_volumes([root])
    kinds = {Path(i.path).relative_to(root).as_posix(): i.kind for i in found.items}
    assert kinds == {"a": "series", "b/c": "series", "b/readme.md": "other", "vol.nii.gz": "volume",
                     "zipped.zip": "volume"}
    a = next(i for i in found.items if i.path == str(root / "a"))
    assert [Path(m).name for m in a.members] == sorted(f.name for f in slices[:3])

    # the series key: sha256 over the members' sha256, sorted; renaming a slice keeps it
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in slices[:3]]
    key = hash_volume(a).sha256
    assert key == series_sha256(digests) == hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()
    (root / "a" / slices[0].name).rename(root / "a" / "renamed")
    renamed = next(i for i in discover_volumes([root / "a"]).items)
    assert hash_volume(renamed).sha256 == key

    # explicitly named slices form one series of just those files; a missing input is a problem
    two = discover_volumes([str(root / "b" / "c" / slices[3].name), str(root / "b" / "c" / slices[4].name),
                            str(root / "missing.nii")])
    assert [(i.kind, len(i.members)) for i in two.items] == [("series", 2)]
    assert [p.error_type for p in two.problems] == ["FileNotFound"]


def test_study_uid_of_a_series(series_dir: Path, tmp_path: Path) -> None:
    """The shared series is anonymised (empty UIDs): give two copies UIDs, in a folder and a zip."""
    import pydicom

    from radzoo.extract.ct_work import _study_uid

    folder = tmp_path / "s"
    folder.mkdir()
    for f in sorted(series_dir.iterdir())[:2]:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.StudyInstanceUID = "1.2.826.0.1.3680043.99.1", "1.2.826.0.1.3680043.99.2"
        ds.save_as(folder / f.name)
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f.name)
    items = {i.kind: i for i in discover_volumes([folder, tmp_path / "s.zip"]).items}
    for kind in ("series", "volume"):
        assert _study_uid(items[kind], "1.2.826.0.1.3680043.99.1") == "1.2.826.0.1.3680043.99.2"
        assert _study_uid(items[kind], "1.2.3.not.this.series") is None


def test_ct_refusals(graphct_dir: Path, series_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CapabilityError, match="engine='ray' does not support CT"):
        extract_features(str(graphct_dir), [series_dir], tmp_path / "o1", engine="ray", quiet=True)
    with pytest.raises(InputError, match="no output 'proj'"):
        extract_features(str(graphct_dir), [series_dir], tmp_path / "o2", output="proj", quiet=True)
    with pytest.raises(InputError, match="unknown lung segmenter"):
        extract_features(str(graphct_dir), [series_dir], tmp_path / "o3", segmenter="magic", quiet=True)
