"""Fixtures for the io tests: paths into the shared real data (skips when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="session")
def ct_dir(shared_data: Path) -> Path:
    return shared_data / "ct"


@pytest.fixture(scope="session")
def series_dir(ct_dir: Path) -> Path:
    return ct_dir / "totalseg_example_ct_dicom_series"


@pytest.fixture(scope="session")
def png_dir(shared_data: Path) -> Path:
    return shared_data / "cxr_nih" / "images"
