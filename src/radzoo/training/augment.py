"""Pretraining augmentations applied to the reader's float32 ``(H, W)`` images in [0, 1].

One class per method, each drawing every random choice from the ``generator`` argument so a view
is reproducible from a seed (and independent of the number of processes and workers):

* :class:`MoCoCXRAugment` (METHODS 1.3): ``Resize(320) -> RandomHorizontalFlip ->
  RandomRotation(10) -> RandomCrop(320) -> Normalize(0.5020, 0.085585)``, grayscale replicated to 3
  channels; both MoCo views come from it. The resize reuses the zoo's spec-driven resize (Pillow on
  float pixels, like inference); the random steps use torchvision's tensor functional ops with
  torchvision's defaults (nearest-neighbour rotation, zero fill).
* :class:`LoVTAugment` (METHODS 2.3) and :class:`PriorAugment` (METHODS 3.3): see their docstrings.
* :func:`eval_view`: the spec's inference transform, for validation batches.
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


# ----------------------------------------------------------------------------------- LoVT


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64))


def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` drawn as torchvision's ``RandomResizedCrop.get_params`` does (ten tries
    at a random area and log-uniform aspect ratio, then a centred fallback), from ``generator``."""
    import math

    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_lo, log_hi, generator))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class LoVTAugment:
    """One LoVT training view (METHODS 2.3; lovt ``scan_transforms.py`` with ``ScanAugmentationConfig``
    defaults): ``RandomResizedCrop(size, scale (0.6, 1))`` -> horizontal flip (p 0.5) ->
    ``RandomAffine(±20°, translate 0.1, scale 0.95-1.05)`` (nearest, zero fill) ->
    ``ColorJitter(brightness 0.6-1.4, contrast 0.6-1.4)`` always (the two in random order, as
    torchvision) -> ``GaussianBlur(int(0.1 size) bumped to odd, sigma 0.1-3)`` always -> normalise
    with the spec's statistics -> grayscale expanded to 3 channels.

    The original applied these to 8-bit PIL images; here they act on the reader's float pixels
    (no 8-bit rounding between steps).
    """

    def __init__(
        self,
        size: int = 224,
        mean: float = 0.5,
        std: float = 0.29,
        channels: int = 3,
        crop_scale: tuple[float, float] = (0.6, 1.0),
        flip_p: float = 0.5,
        degrees: float = 20.0,
        translate: tuple[float, float] = (0.1, 0.1),
        scale: tuple[float, float] = (0.95, 1.05),
        brightness: tuple[float, float] = (0.6, 1.4),
        contrast: tuple[float, float] = (0.6, 1.4),
        blur_sigma: tuple[float, float] = (0.1, 3.0),
    ) -> None:
        if std <= 0:
            raise ValueError(f"normalisation std must be > 0, got {std}")
        self.size, self.mean, self.std, self.channels = int(size), float(mean), float(std), int(channels)
        self.crop_scale, self.flip_p, self.degrees = tuple(crop_scale), float(flip_p), float(degrees)
        self.translate, self.scale = tuple(translate), tuple(scale)
        self.brightness, self.contrast, self.blur_sigma = tuple(brightness), tuple(contrast), tuple(blur_sigma)
        kernel = int(0.1 * self.size)
        self.kernel = kernel + 1 if kernel % 2 == 0 else kernel

    @classmethod
    def from_preprocess(cls, preprocess: Preprocess, **kwargs: Any) -> LoVTAugment:
        """Output size, normalisation and channels from the spec the artifact will be served with."""
        steps = {s["op"]: s for s in preprocess.steps}
        size = steps["resize"]["size"]
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        norm = steps["normalize"]
        return cls(size=size, mean=float(norm["mean"][0]), std=float(norm["std"][0]), channels=preprocess.channels, **kwargs)

    def __call__(self, image: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator
        x = torch.as_tensor(image, dtype=torch.float32)
        x = x[None] if x.ndim == 2 else x
        h, w = x.shape[-2:]
        top, left, ch, cw = random_resized_crop_params(h, w, self.crop_scale, (3 / 4, 4 / 3), g)
        x = TF.resized_crop(x, top, left, ch, cw, [self.size, self.size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        if torch.rand((), generator=g) < self.flip_p:
            x = torch.flip(x, dims=[-1])
        angle = _uniform(-self.degrees, self.degrees, g)
        tx = int(round(_uniform(-self.translate[0] * self.size, self.translate[0] * self.size, g)))
        ty = int(round(_uniform(-self.translate[1] * self.size, self.translate[1] * self.size, g)))
        zoom = _uniform(self.scale[0], self.scale[1], g)
        x = TF.affine(x, angle=angle, translate=[tx, ty], scale=zoom, shear=[0.0, 0.0], interpolation=InterpolationMode.NEAREST, fill=0.0)
        for op in torch.randperm(2, generator=g).tolist():
            if op == 0:
                x = (x * _uniform(*self.brightness, g)).clamp(0.0, 1.0)
            else:
                c = _uniform(*self.contrast, g)
                x = (c * x + (1 - c) * x.mean()).clamp(0.0, 1.0)
        sigma = _uniform(*self.blur_sigma, g)
        x = TF.gaussian_blur(x, [self.kernel, self.kernel], [sigma, sigma])
        x = (x - self.mean) / self.std
        if self.channels != 1:
            x = x.expand(self.channels, -1, -1)
        return x.contiguous()


# ---------------------------------------------------------------------------------- PRIOR


class PriorAugment:
    """One PRIOR training view (METHODS 3.3; PRIOR ``train_prior.yaml``): ``Resize([size, size])``
    (a squash, bilinear) -> ``RandomAffine(degrees=5)`` (nearest, zero fill) ->
    ``RandomHorizontalFlip(0.5)`` -> ``Normalize(0.4755, 0.3011)`` (the pretraining statistics;
    PRIOR's zero-shot code, and the served spec, use CheXpert's) -> 1 channel."""

    def __init__(
        self,
        size: int = 224,
        mean: float = 0.4755,
        std: float = 0.3011,
        degrees: float = 5.0,
        flip_p: float = 0.5,
        channels: int = 1,
    ) -> None:
        if std <= 0:
            raise ValueError(f"normalisation std must be > 0, got {std}")
        self.size, self.mean, self.std = int(size), float(mean), float(std)
        self.degrees, self.flip_p, self.channels = float(degrees), float(flip_p), int(channels)
        self._resize = make_transform(
            Preprocess(
                "image2d",
                ({"op": "resize", "mode": "exact", "size": [self.size, self.size], "interpolation": "bilinear", "backend": "pil"},),
                notes="PRIOR pretraining Resize([size, size])",
            )
        )

    def __call__(self, image: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator
        x = self._resize(image)
        angle = _uniform(-self.degrees, self.degrees, g)
        x = TF.affine(x, angle=angle, translate=[0, 0], scale=1.0, shear=[0.0, 0.0], interpolation=InterpolationMode.NEAREST, fill=0.0)
        if torch.rand((), generator=g) < self.flip_p:
            x = torch.flip(x, dims=[-1])
        x = (x - self.mean) / self.std
        if self.channels != 1:
            x = x.expand(self.channels, -1, -1)
        return x.contiguous()


def eval_view(preprocess: Preprocess) -> Any:
    """The spec's inference transform as ``(pixels, generator) -> tensor`` (validation: no augmentation)."""
    transform = make_transform(preprocess)

    def view(image: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        return transform(image)

    return view
