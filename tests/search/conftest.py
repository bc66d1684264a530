"""Fixtures for similar-case search: real NIH PNGs and real DICOMs embedded by a tiny random model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import radzoo

FAST = {"threads": 1, "quiet": True, "workers": 0}


@pytest.fixture(scope="session")
def search_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radzoo import zoo
    from radzoo.zoo.tiny import tiny_specs

    directory = tmp_path_factory.mktemp("search-model") / "tiny-random-mococxr"
    zoo.save(radzoo.build(tiny_specs()["tiny-random-mococxr"]), directory)
    return directory


@pytest.fixture(scope="session")
def search_model(search_model_dir: Path):
    return radzoo.load(search_model_dir, device="cpu", threads=1)


@pytest.fixture(scope="session")
def nih_pngs(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))
    if len(files) < 40:
        pytest.skip("shared CXR PNGs missing")
    return files


@pytest.fixture(scope="session")
def extraction(tmp_path_factory: pytest.TempPathFactory, search_model, nih_pngs: list[Path], shared_data: Path) -> Path:
    """12 NIH PNGs (patient and view from labels.csv) and the real DICOM edge cases, embedded once."""
    from radzoo.extract.api import extract_features

    root = tmp_path_factory.mktemp("search-extract")
    pngs = root / "pngs"
    pngs.mkdir()
    for f in nih_pngs[:12]:
        shutil.copy2(f, pngs / f.name)
    out = root / "ext"
    extract_features(search_model, [pngs, shared_data / "dicom"], out,
                     metadata_csv=shared_data / "cxr_nih" / "labels.csv", **FAST)
    return out


@pytest.fixture()
def index_dir(extraction: Path, tmp_path: Path) -> Path:
    from radzoo.search import build_index

    out = tmp_path / "index"
    build_index([extraction], out)
    return out
