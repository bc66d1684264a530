"""Pretraining augmentations applied to the reader's float32 ``(H, W)`` images in [0, 1].

MoCo-CXR (METHODS 1.3): ``Resize(320) -> RandomHorizontalFlip -> RandomRotation(10) ->
RandomCrop(320) -> ToTensor -> Normalize(0.5020, 0.085585)``, grayscale replicated to 3 channels.
Both MoCo views come from this pipeline. The resize reuses the zoo's spec-driven resize (Pillow
on float pixels, like inference) so training and serving see the same geometry; the random
steps use torchvision's tensor functional ops with torchvision's defaults (nearest-neighbour
rotation, zero fill). Every random draw comes from the ``generator`` argument, so a view is
reproducible from a seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from radzoo.io.transforms import make_transform
from radzoo.zoo.spec import Preprocess


class MoCoCXRAugment:
    """One random MoCo-CXR training view: ``aug(image, generator) -> float32 [C, size, size]``."""

    def __init__(
        self,
        size: int = 320,
        mean: float = 0.5020,
        std: float = 0.085585,
        rotation: float = 10.0,
        flip_p: float = 0.5,
        channels: int = 3,
        interpolation: str = "bilinear",
    ) -> None:
        if size < 1:
            raise ValueError(f"augmentation size must be >= 1, got {size}")
        if std <= 0:
            raise ValueError(f"normalisation std must be > 0, got {std}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {flip_p}")
        self.size = int(size)
        self.mean = float(mean)
        self.std = float(std)
        self.rotation = float(rotation)
        self.flip_p = float(flip_p)
        self.channels = int(channels)
        self._resize = make_transform(
            Preprocess(
                "image2d",
                (
                    {
                        "op": "resize",
                        "mode": "shorter",
                        "size": self.size,
                        "interpolation": interpolation,
                        "backend": "pil",
                    },
                ),
                notes="MoCo-CXR pretraining Resize(size), shorter side",
            )
        )

    @classmethod
    def from_preprocess(
        cls, preprocess: Preprocess, rotation: float = 10.0, flip_p: float = 0.5
    ) -> MoCoCXRAugment:
        """Take size, interpolation, normalisation and channel count from a spec's inference steps,
        so the training views and the served inputs share their statistics."""
        steps: dict[str, Mapping[str, Any]] = {s["op"]: s for s in preprocess.steps}
        try:
            resize, norm = steps["resize"], steps["normalize"]
        except KeyError as exc:
            raise ValueError(
                f"preprocess has no {exc.args[0]!r} step to derive the augmentation from"
            ) from exc
        size = resize["size"]
        size = int(size if isinstance(size, (int, float)) else size[0])
        if len(norm["mean"]) != 1 or len(norm["std"]) != 1:
            raise ValueError("MoCo-CXR augmentation expects a single-value grayscale normalisation")
        return cls(
            size=size,
            mean=float(norm["mean"][0]),
            std=float(norm["std"][0]),
            rotation=rotation,
            flip_p=flip_p,
            channels=preprocess.channels,
            interpolation=str(resize.get("interpolation", "bilinear")),
        )

    def __call__(self, image: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self._resize(image)  # [1, H, W], shorter side == size
        if torch.rand((), generator=generator) < self.flip_p:
            x = torch.flip(x, dims=[-1])
        if self.rotation > 0:
            angle = float((torch.rand((), generator=generator) * 2 - 1) * self.rotation)
            x = TF.rotate(x, angle, interpolation=InterpolationMode.NEAREST, expand=False, fill=0.0)
        _, h, w = x.shape
        top = int(torch.randint(0, h - self.size + 1, (), generator=generator))
        left = int(torch.randint(0, w - self.size + 1, (), generator=generator))
        x = x[:, top : top + self.size, left : left + self.size]
        x = (x - self.mean) / self.std
        if self.channels != 1:
            x = x.expand(self.channels, -1, -1)
        return x.contiguous()

    def __repr__(self) -> str:
        return (
            f"MoCoCXRAugment(size={self.size}, flip_p={self.flip_p}, rotation={self.rotation}, "
            f"mean={self.mean}, std={self.std}, channels={self.channels})"
        )
