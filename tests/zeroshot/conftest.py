"""Tiny random-weight image-text artifacts (PRIOR, LoVT) with a synthetic tokenizer, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

import radzoo


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radzoo.zoo.tiny import write_test_vocab

    return write_test_vocab(tmp_path_factory.mktemp("zs") / "vocab")


def _artifact(name: str, vocab: Path, root: Path) -> Path:
    from radzoo import zoo
    from radzoo.zeroshot.prompts import zero_shot_section
    from radzoo.zoo.tiny import tiny_specs

    spec = tiny_specs()[name]
    model = radzoo.build(spec, tokenizer=vocab, seed=3)
    return zoo.save(model, root / name, sections={"zero_shot": zero_shot_section(spec)})


@pytest.fixture(scope="session")
def prior_dir(vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _artifact("tiny-random-prior", vocab_dir, tmp_path_factory.mktemp("zs_prior"))


@pytest.fixture(scope="session")
def lovt_dir(vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _artifact("tiny-random-lovt", vocab_dir, tmp_path_factory.mktemp("zs_lovt"))


@pytest.fixture()
def prior_model(prior_dir: Path):
    """A fresh load per test (empty caches); loading a tiny artifact takes milliseconds."""

    return radzoo.load(prior_dir, device="cpu")


@pytest.fixture()
def lovt_model(lovt_dir: Path):

    return radzoo.load(lovt_dir, device="cpu")


@pytest.fixture(scope="session")
def nih_images(shared_data: Path) -> list[Path]:
    images = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))
    if len(images) < 4:
        pytest.skip("NIH images not found in the shared data")
    return images[:3]
