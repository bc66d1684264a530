"""Fixtures for evaluation tests: the real NIH images and labels, tiny random-weight artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

import radzoo


@pytest.fixture(scope="session")
def nih_dir(shared_data: Path) -> Path:
    d = shared_data / "cxr_nih"
    if not (d / "labels.csv").is_file():
        pytest.skip("NIH labels not found in the shared data")
    return d


@pytest.fixture(scope="session")
def nih_csv(nih_dir: Path) -> Path:
    return nih_dir / "labels.csv"


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight artifacts (MoCo-CXR; PRIOR with a synthetic tokenizer), built once."""
    from radzoo import zoo
    from radzoo.zeroshot.prompts import zero_shot_section
    from radzoo.zoo.tiny import tiny_specs, write_test_vocab

    root = tmp_path_factory.mktemp("eval_models")
    vocab = write_test_vocab(root / "vocab")
    specs = tiny_specs()
    out = {}
    moco = radzoo.build(specs["tiny-random-mococxr"], seed=7)
    out["moco"] = zoo.save(moco, root / "moco")
    prior = radzoo.build(specs["tiny-random-prior"], tokenizer=vocab, seed=3)
    out["prior"] = zoo.save(prior, root / "prior", sections={"zero_shot": zero_shot_section(prior.spec)})
    return out


@pytest.fixture(scope="session")
def moco_features(artifacts: dict[str, Path], nih_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `radzoo extract` output of the tiny MoCo-CXR over the NIH images."""
    from radzoo.extract import extract_features

    out = tmp_path_factory.mktemp("eval_extract") / "features"
    result = extract_features(str(artifacts["moco"]), [str(nih_dir / "images")], out, quiet=True, workers=0)
    assert result.ok and result.counts.written == 201
    return out
