"""Training data: image files found in a folder tree or a file list, read with ``radzoo.io``.

``find_images`` accepts a directory (searched recursively, ImageFolder layouts included) or a
text file with one image path per line (relative paths are taken from the list's folder,
``#`` starts a comment). ``TwoViewDataset`` returns two independently augmented views of each
image, each view seeded from ``(seed, epoch, index)`` so a run is reproducible with any number
of workers and resumes exactly at an epoch boundary.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from radzoo.errors import InputError

#: File endings read as training images (DICOM, PNG, JPEG; contents are sniffed by the reader).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def find_images(source: str | os.PathLike[str]) -> list[Path]:
    """Sorted image paths under a directory, or listed in a text file; raises if none are found."""
    source = Path(source).expanduser()
    if source.is_dir():
        paths = sorted(
            p
            for p in source.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(source).parts)
        )
        if not paths:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {source}")
        return paths
    if source.is_file():
        paths = []
        for n, line in enumerate(source.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            p = Path(line).expanduser()
            p = p if p.is_absolute() else source.parent / p
            if not p.is_file():
                raise InputError(f"{source}, line {n}: image {p} does not exist")
            paths.append(p)
        if not paths:
            raise InputError(f"file list {source} names no images")
        return paths
    raise InputError(
        f"training data {source} does not exist (give a folder of images or a text file listing them)"
    )


def data_summary(paths: Sequence[Path], source: str | os.PathLike[str]) -> dict[str, Any]:
    """What a run was trained on, for provenance: source, image count, a digest of the file list."""
    root = Path(source).expanduser()
    base = root if root.is_dir() else root.parent
    names = []
    for p in paths:
        try:
            names.append(p.relative_to(base).as_posix())
        except ValueError:
            names.append(p.as_posix())
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    return {"source": str(root), "images": len(paths), "file_list_sha256": digest}


def view_generator(seed: int, epoch: int, index: int, view: int) -> torch.Generator:
    """A generator for one augmented view, independent of worker count and of other samples."""
    state = np.random.SeedSequence([seed, epoch, index, view]).generate_state(2, dtype=np.uint32)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


class TwoViewDataset(Dataset):
    """``dataset[i] -> (view_q, view_k)``: two augmentations of image ``i`` (MoCo query and key).

    ``augment(pixels, generator) -> tensor``; call ``set_epoch`` before each epoch so every
    epoch draws new views. Unreadable files raise ``radzoo.io.ImageReadError`` naming the file.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        augment: Callable[[Any, torch.Generator], torch.Tensor],
        seed: int = 0,
    ) -> None:
        if not paths:
            raise InputError("no training images")
        self.paths = list(paths)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from radzoo.io import read_image

        pixels = read_image(self.paths[index]).pixels
        q = self.augment(pixels, view_generator(self.seed, self.epoch, index, 0))
        k = self.augment(pixels, view_generator(self.seed, self.epoch, index, 1))
        return q, k
