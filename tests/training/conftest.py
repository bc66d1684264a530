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
