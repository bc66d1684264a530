"""Fixtures for converter tests: manifests from shared/specs/checkpoints, a seeded test image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radzoo.converters.random_originals import load_manifest


@pytest.fixture(scope="session")
def manifest(specs_dir: Path):
    """``manifest(name)`` -> the parsed ``checkpoints/<name>.json``."""

    def get(name: str) -> dict[str, Any]:
        path = specs_dir / "checkpoints" / f"{name}.json"
        if not path.is_file():
            pytest.skip(f"manifest {path} not found")
        return load_manifest(path)

    return get


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    """A smooth grayscale test image in [0, 1] (float32, 300x260: non-square on purpose)."""
    yy, xx = np.mgrid[0:300, 0:260].astype(np.float32)
    img = 0.5 + 0.25 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + 0.2 * (yy / 300.0)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
