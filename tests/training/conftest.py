"""Training fixtures: a handful of real NIH chest X-rays (from the shared data set)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def nih_paths(shared_data: Path) -> list[Path]:
    folder = shared_data / "cxr_nih" / "images"
    paths = sorted(folder.glob("*.png"))[:8]
    if len(paths) < 8:
        pytest.skip(f"need 8 NIH PNGs in {folder}")
    return paths


@pytest.fixture(scope="session")
def nih_list(nih_paths: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file list (one absolute path per line), the second input form ``--data`` accepts."""
    path = tmp_path_factory.mktemp("data") / "train.txt"
    path.write_text("# eight NIH images\n" + "\n".join(str(p) for p in nih_paths) + "\n")
    return path


#: Overrides that make a MoCo-CXR run tiny: resnet18 at 64 px, queue of 64, batches of 4.
TINY = {
    "arch": "resnet18",
    "image_size": "64",
    "moco_k": "64",
    "batch_size": "4",
    "init": "random",
    "device": "cpu",
    "log_every": "0",
}


@pytest.fixture(scope="session")
def paired_manifest(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real NIH images paired with reports DERIVED FROM THEIR LABELS (not real reports), 3 of
    them in the validate split (see derived_nih.py)."""
    from .derived_nih import write_derived_manifest

    folder = shared_data / "cxr_nih"
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"need {folder / 'labels.csv'}")
    return write_derived_manifest(folder, tmp_path_factory.mktemp("pairs"), limit=12, val_rows=3)


#: Overrides that make the image-report methods tiny: resnet18 at 64 px, a 2-layer BERT of width
#: 128, batches of 4, short reports.
TINY_PAIRED = {
    "image_preset": "tiny",
    "text_preset": "tiny",
    "init": "random",
    "batch_size": "4",
    "max_length": "64",
    "device": "cpu",
    "log_every": "0",
    "progress": "false",
}
