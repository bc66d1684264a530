"""Shared fixtures: where the real shared data lives, and the tiny random-weight models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["hub_server", "task_head_fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_root() -> Path | None:
    env = os.environ.get("RADZOO_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir():
            return c
    return None


SHARED = _shared_root()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``$RADZOO_SHARED``): specs and real data. Skips only when absent."""
    if SHARED is None:
        pytest.skip("shared data folder not found (set RADZOO_SHARED or place ../shared beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="session")
def specs_dir(shared_dir: Path) -> Path:
    return shared_dir / "specs"
