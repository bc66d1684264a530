"""Tiny artifacts for the ONNX tests: built with ``zoo.build``, saved with golden outputs, exported once."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import radzoo
from radzoo import zoo
from radzoo.zoo.golden import compute_golden
from radzoo.zoo.tiny import tiny_specs

TINY = sorted(tiny_specs())
TINY_2D = [n for n in TINY if "graphct" not in n]
TINY_TEXT = ["tiny-random-lovt", "tiny-random-prior"]


def save_with_golden(name: str, directory: Path, seed: int = 0) -> Path:
    model = radzoo.build(tiny_specs()[name], seed=seed, device="cpu", runtime="torch")
    return zoo.save(model, directory, sections={"golden": compute_golden(model)})


@pytest.fixture(scope="session")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``saved(name)``: a pristine (not exported) tiny artifact, shared read-only."""
    root = tmp_path_factory.mktemp("saved")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = save_with_golden(name, root / name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, saved: Callable[[str], Path]) -> Callable[[str], Path]:
    """``exported(name)``: the tiny artifact after ``export_artifact``, shared read-only."""
    from radzoo.artifacts import export_artifact

    root = tmp_path_factory.mktemp("exported")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            target = root / name
            shutil.copytree(saved(name), target)
            export_artifact(target)
            cache[name] = target
        return cache[name]

    return get


@pytest.fixture
def exported_copy(exported: Callable[[str], Path], tmp_path: Path) -> Callable[[str], Path]:
    """A private, writable copy of an exported artifact (for tests that damage it)."""

    def get(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(exported(name), target)
        return target

    return get
