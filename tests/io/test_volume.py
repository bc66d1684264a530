"""read_volume / resample on the real CT series, NIfTI files and broken directories."""

from __future__ import annotations

import csv
import gzip
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from radzoo.io import Volume, VolumeReadError, read_dicom_values, read_volume, resample


@pytest.fixture(scope="module")
def series(series_dir: Path) -> Volume:
    return read_volume(series_dir)


def test_series_sorted_by_position_against_csv(series: Volume, ct_dir: Path) -> None:
    with open(ct_dir / "totalseg_example_ct_dicom_series.csv") as fh:
        rows = list(csv.DictReader(fh))
    rows.sort(key=lambda r: float(r["ImagePositionPatient_z"]))
    assert series.metadata["files"] == [r["file"] for r in rows]
    np.testing.assert_allclose(series.metadata["slice_positions"], [float(r["ImagePositionPatient_z"]) for r in rows])
    # InstanceNumber falls as z rises: the order is NOT the InstanceNumber order
    assert [int(r["InstanceNumber"]) for r in rows] == sorted((int(r["InstanceNumber"]) for r in rows), reverse=True)


def test_series_geometry_and_hu(series: Volume, series_dir: Path) -> None:
    assert series.shape == (20, 512, 512) and series.array.dtype == np.float32
    assert series.spacing[2] == pytest.approx(2.0)  # 3 mm slices, 2 mm apart: spacing is the gap
    assert series.spacing[0] == pytest.approx(0.977, abs=1e-3)
    assert not series.metadata["irregular_spacing"]
    assert series.metadata["slice_thickness"] == pytest.approx(3.0)
    np.testing.assert_allclose(series.direction, np.eye(3), atol=1e-6)
    assert series.origin[2] == pytest.approx(-804.5)
    # voxel (k, j, i) -> physical: z of slice k is origin_z + 2k
    np.testing.assert_allclose(series.index_to_physical([19, 0, 0])[2], -766.5)
    np.testing.assert_allclose(series.affine @ [0, 0, 19, 1], [*series.index_to_physical([19, 0, 0]), 1])
    # HU: SimpleITK/GDCM decode equals radzoo's pydicom/openjpeg decode of the same (lossless) slice
    first = series_dir / series.metadata["files"][0]
    np.testing.assert_array_equal(series.array[0], read_dicom_values(first))
    assert series.array.min() >= -1100 and series.array.max() < 4000


def test_localizer_is_excluded(series_dir: Path, dicom_dir: Path, tmp_path: Path) -> None:
    for f in series_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(dicom_dir / "ct_localizer_MAROTECH_J2K.dcm", tmp_path / "1.2.3.scout")
    (tmp_path / "README.txt").write_text("not dicom")
    vol = read_volume(tmp_path)
    assert vol.shape == (20, 512, 512)
    assert "1.2.3.scout" not in vol.metadata["files"]
    reasons = [r["excluded"] for r in vol.metadata["series_report"]]
    assert {"localizer": 1} in reasons
    assert vol.metadata["skipped_files"] == ["README.txt"]


def test_zip_reads_the_same(series: Volume, series_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(series_dir.iterdir()):
            zf.write(f, arcname=f"study/series/{f.name}")
    vol = read_volume(archive)
    np.testing.assert_array_equal(vol.array, series.array)
    assert vol.spacing == series.spacing and vol.origin == series.origin
    assert vol.metadata["format"] == "dicom_series_zip"


def test_irregular_spacing_is_reported_and_resampled(series: Volume, series_dir: Path, tmp_path: Path) -> None:
    names = series.metadata["files"]
    for name in names[:5] + names[6:]:  # drop one slice: one 4 mm gap among 2 mm gaps
        shutil.copy(series_dir / name, tmp_path / name)
    with pytest.raises(VolumeReadError, match="uneven slice spacing"):
        read_volume(tmp_path, irregular="error")
    vol = read_volume(tmp_path)
    assert vol.metadata["irregular_spacing"] and vol.shape[0] == 20 and vol.spacing[2] == pytest.approx(2.0)
    np.testing.assert_allclose(vol.array[5], 0.5 * (series.array[4] + series.array[6]), atol=1e-3)
    kept = read_volume(tmp_path, irregular="ignore")
    assert kept.shape[0] == 19


def test_error_cases(series_dir: Path, dicom_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VolumeReadError, match="empty"):
        read_volume(empty)
    scout = tmp_path / "scout"
    scout.mkdir()
    shutil.copy(dicom_dir / "ct_localizer_MAROTECH_J2K.dcm", scout / "a")
    with pytest.raises(VolumeReadError, match="localizer"):
        read_volume(scout)
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(next(series_dir.iterdir()), single / "a")
    with pytest.raises(VolumeReadError, match="single"):
        read_volume(single)
    not_ct = tmp_path / "notct"
    not_ct.mkdir()
    shutil.copy(dicom_dir / "dx_thorax_lateral_canine_mono1.dcm", not_ct / "a")
    shutil.copy(dicom_dir / "cr_chest_pa_siim_jpegbaseline.dcm", not_ct / "b")
    with pytest.raises(VolumeReadError, match="no CT series"):
        read_volume(not_ct)
    with pytest.raises(VolumeReadError, match="single DICOM file"):
        read_volume(dicom_dir / "ct_chest_CT1_rle.dcm")
    with pytest.raises(VolumeReadError, match="not found"):
        read_volume(tmp_path / "nope")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(VolumeReadError, match="junk.nii.gz"):
        read_volume(junk)


def _nifti_header(path: Path) -> dict:
    with gzip.open(path, "rb") as fh:
        hdr = fh.read(348)
    dims = struct.unpack("<8h", hdr[40:56])
    pixdim = struct.unpack("<8f", hdr[76:108])
    qform_code, sform_code = struct.unpack("<2h", hdr[252:256])
    if sform_code > 0:
        srow = np.array([struct.unpack("<4f", hdr[280 + 16 * i : 296 + 16 * i]) for i in range(3)], dtype=np.float64)
    else:  # qform: quaternion (b, c, d), offsets, qfac = pixdim[0]
        b, c, d, qx, qy, qz = struct.unpack("<6f", hdr[256:280])
        a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
        rot = np.array([
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ])
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        srow = np.zeros((3, 4))
        srow[:, :3] = rot @ np.diag([pixdim[1], pixdim[2], pixdim[3] * qfac])
        srow[:, 3] = (qx, qy, qz)
    return {"dims": dims[1 : 1 + dims[0]], "pixdim": pixdim[1:4], "srow": srow, "codes": (qform_code, sform_code)}


def test_nifti_read_and_resample(ct_dir: Path) -> None:
    path = ct_dir / "totalseg_example_ct_sm.nii.gz"
    vol = read_volume(path)
    hdr = _nifti_header(path)
    assert vol.shape == tuple(reversed(hdr["dims"])) == (30, 101, 122)
    assert vol.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert -1100 <= vol.array.min() and vol.array.max() < 3100
    # graph-CT's grid (METHODS 5.3): 1 mm, B-spline, default -1024, z = floor((n-1)*s), x/y = floor(n*s)
    iso = resample(vol, size=(int(122 * 3.0), int(101 * 3.0), int(29 * 3.0)))
    assert iso.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert iso.shape == (87, 303, 366)
    assert iso.origin == pytest.approx(vol.origin)
    np.testing.assert_allclose(iso.direction, vol.direction)
    assert iso.array[:, -1, :].max() == pytest.approx(-1024.0)  # beyond the input extent in y
    # values at shared grid points are preserved (3 mm grid points are 1 mm grid points)
    np.testing.assert_allclose(iso.array[30, 30, 30], vol.array[10, 10, 10], atol=1.0)
    ext = resample(vol, spacing=(1.5, 1.5, 1.5), interpolator="linear")  # default: keep the extent
    assert ext.shape == (59, 201, 243)
    with pytest.raises(ValueError, match="size must be 3 positive"):
        resample(vol, size=(0, 1, 1))
    # round trip through SimpleITK
    back = Volume.from_sitk(vol.to_sitk())
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine)


def test_las_mask_direction(ct_dir: Path) -> None:
    path = ct_dir / "copdgene_atlas_lung_mask_LAS.nii.gz"
    vol = read_volume(path, modality=None)
    hdr = _nifti_header(path)
    ras = hdr["srow"][:, :3] / np.asarray(hdr["pixdim"])
    lps = np.diag([-1.0, -1.0, 1.0]) @ ras
    np.testing.assert_allclose(vol.direction, lps, atol=1e-6)
    np.testing.assert_allclose(vol.direction, np.diag([1.0, -1.0, 1.0]), atol=1e-6)  # LAS in LPS terms
    np.testing.assert_allclose(vol.affine[:3, 3], np.diag([-1.0, -1.0, 1.0]) @ hdr["srow"][:, 3], atol=1e-3)
    assert vol.shape == (319, 387, 387)
    assert set(np.unique(vol.array).tolist()) == {0.0, 50.0, 100.0}
