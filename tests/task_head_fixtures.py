"""A task head trained once per session on real NIH images (for tests of heads, serving, DICOM SR).

The base model is the seeded random-weight ``mococxr_resnet18`` (``--random-weights --seed 5``):
the head records the seed and ``radzoo.load(HEAD)`` rebuilds exactly it, offline.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

HEAD_MODEL = "mococxr_resnet18"
HEAD_SEED = 0  # the seed a server with --random-weights builds, so served heads match
HEAD_ROWS = 60  # 13 AP and 6 Effusion among the first 60 NIH rows, one image per patient
HEAD_LABELS = ["view:AP=AP", "Effusion"]


@dataclass
class TrainedHead:
    folder: Path
    csv: Path
    cache: Path
    images: list[Path]


def write_nih_subset(nih_dir: Path, out: Path, rows: int, start: int = 0) -> tuple[Path, list[Path]]:
    """The first ``rows`` rows (from ``start``) of the NIH labels, with absolute image paths."""
    with open(nih_dir / "labels.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        records = list(reader)[start : start + rows]
    images = []
    for r in records:
        r["path"] = str((nih_dir / r["path"]).resolve())
        images.append(Path(r["path"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(records)
    return out, images


@pytest.fixture(scope="session")
def nih_head(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedHead:
    """``radzoo head train`` (the CLI, in process) on 60 NIH images: AP vs PA and Effusion."""
    from radzoo.cli import main

    nih = shared_data / "cxr_nih"
    if not (nih / "labels.csv").is_file():
        pytest.skip("NIH labels not found in the shared data")
    root = tmp_path_factory.mktemp("task_head")
    labels, images = write_nih_subset(nih, root / "labels.csv", HEAD_ROWS)
    folder, cache = root / "head", root / "cache"
    code = main(["head", "train", "--model", HEAD_MODEL, "--random-weights", "--seed", str(HEAD_SEED),
                 "--runtime", "torch", "--labels-csv", str(labels), "--labels", *HEAD_LABELS, "--folds", "3",
                 "--bootstrap", "20", "--cache", str(cache), "--workers", "0", "--out", str(folder)])
    assert code == 0
    return TrainedHead(folder, labels, cache, images)
