"""Fixtures for batch extraction: a tiny random-weight model artifact and copies of real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import radzoo


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny-random-mococxr`` saved as an artifact folder (random weights, marked as such)."""
    from radzoo import zoo
    from radzoo.zoo.tiny import tiny_specs

    directory = tmp_path_factory.mktemp("model") / "tiny-random-mococxr"
    zoo.save(radzoo.build(tiny_specs()["tiny-random-mococxr"]), directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):

    return radzoo.load(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def png_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))
    if len(files) < 40:
        pytest.skip("shared CXR PNGs missing")
    return files


@pytest.fixture()
def png_subset(png_files: list[Path], tmp_path: Path) -> Path:
    """A folder with 12 real CXR PNGs (copied, so tests may touch and chmod them)."""
    folder = tmp_path / "pngs"
    folder.mkdir()
    for f in png_files[:12]:
        shutil.copy2(f, folder / f.name)
    return folder


@pytest.fixture()
def dicom_copy(shared_data: Path, tmp_path: Path) -> Path:
    """The real DICOM edge cases (plus their MANIFEST.csv, a non-image) and an empty sub-folder."""
    folder = tmp_path / "dicom"
    shutil.copytree(shared_data / "dicom", folder)
    (folder / "empty").mkdir()
    return folder
