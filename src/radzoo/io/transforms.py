"""Spec-driven preprocessing: ``make_transform(Preprocess) -> callable``.

``input == "image2d"``: the callable takes the reader's float32 (H, W) array in [0, 1] (or an
:class:`radzoo.io.Image`) and returns a ``torch.Tensor`` float32 (C, H, W).
``input == "ct_hu"``: it takes HU of any shape (numpy or torch) and returns float32 of the same
kind and shape.

Ops (each step is a mapping with ``op``):

* ``resize``: ``mode`` ``shorter`` (shorter side -> ``size``, longer ``int(size*long/short)``,
  torchvision ``Resize(int)``), ``longer`` (CheXzero: ``ratio = size/max(w, h)``, each side
  ``int(side*ratio)``) or ``exact`` (``size = [h, w]``); ``interpolation`` bilinear | bicubic |
  lanczos | nearest; ``backend`` ``pil`` (Pillow on a mode "F" image: the same filter the
  original PIL pipelines ran on 8-bit images, without their rounding to uint8, so results
  differ by < 1/255) or ``tensor`` (``torch.nn.functional.interpolate``, ``align_corners=False``,
  ``antialias`` from the step, default False = torchvision 0.11 tensor behaviour).
* ``center_crop``: ``size`` int or [h, w]; torchvision rounding (``int(round((h - th) / 2))``),
  zero padding when the crop is larger than the image (torchvision's pad split).
* ``pad_square``: LoVT ``PadToSquare``: ``int((max - side) / 2)`` on BOTH ends of the shorter
  side, so odd differences stay one pixel short of square; fill ``value``.
* ``pad_center``: paste onto a ``size`` = [h, w] canvas of ``value`` at ((W-w)//2, (H-h)//2)
  (CheXzero), cropping if the image is larger.
* ``scale`` (x * factor), ``normalize`` (per-channel ``(x - mean) / std``; single-value lists
  broadcast), ``channels`` (replicate a 1-channel image to ``n``), ``clip`` (min/max),
  ``affine`` (x * scale + offset).

Transforms are cached per ``Preprocess.digest()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from radzoo.io.read_errors import TransformError

_CACHE: dict[str, Callable[[Any], Any]] = {}
_LOCK = threading.Lock()

_PIL_FILTERS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "lanczos": "LANCZOS", "nearest": "NEAREST"}
_TORCH_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


# ----------------------------------------------------------------------------------- geometry


def resized_size(h: int, w: int, step: Mapping[str, Any]) -> tuple[int, int]:
    """Output (h, w) of a resize step, with the originals' integer rounding."""
    mode = step.get("mode", "exact")
    size = step["size"]
    if mode == "exact":
        if isinstance(size, (int, float)):
            return int(size), int(size)
        return int(size[0]), int(size[1])
    target = int(size if isinstance(size, (int, float)) else size[0])
    if mode == "shorter":
        if w <= h:
            return int(target * h / w), target
        return target, int(target * w / h)
    if mode == "longer":
        ratio = float(target) / max(w, h)
        return int(h * ratio), int(w * ratio)
    raise TransformError(f"resize mode must be shorter|longer|exact, got {mode!r}")


def _resize(x: np.ndarray, step: Mapping[str, Any]) -> np.ndarray:
    c, h, w = x.shape
    oh, ow = resized_size(h, w, step)
    if oh <= 0 or ow <= 0:
        raise TransformError(f"resize of a {h}x{w} image gives an empty {oh}x{ow} image")
    interp = step.get("interpolation", "bilinear")
    backend = step.get("backend", "pil")
    if backend == "pil":
        from PIL import Image as PILImage

        if interp not in _PIL_FILTERS:
            raise TransformError(f"unknown interpolation {interp!r} (one of {sorted(_PIL_FILTERS)})")
        resample = getattr(PILImage.Resampling, _PIL_FILTERS[interp])
        if (oh, ow) == (h, w):
            return x
        # The originals resized 8-bit images: Pillow runs a horizontal then a vertical pass and
        # clamps each pass to 0..255. Filters with negative lobes (bicubic, lanczos) overshoot at
        # strong edges, so for [0, 1] images we run the same two passes and clamp after each.
        clamp = interp in ("bicubic", "lanczos") and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        out = np.empty((c, oh, ow), dtype=np.float32)
        for i in range(c):
            img = PILImage.fromarray(np.ascontiguousarray(x[i], dtype=np.float32), mode="F")
            if clamp:
                if ow != w:
                    mid = np.clip(np.asarray(img.resize((ow, h), resample=resample), dtype=np.float32), 0.0, 1.0)
                    img = PILImage.fromarray(mid, mode="F")
                if oh != h:
                    img = img.resize((ow, oh), resample=resample)
                out[i] = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
            else:
                out[i] = np.asarray(img.resize((ow, oh), resample=resample), dtype=np.float32)
        return out
    if backend == "tensor":
        import torch

        if interp not in _TORCH_MODES:
            raise TransformError(f"tensor backend interpolation must be one of {sorted(_TORCH_MODES)}, got {interp!r}")
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
        kwargs: dict[str, Any] = {"mode": _TORCH_MODES[interp]}
        if interp != "nearest":
            kwargs["align_corners"] = False
            kwargs["antialias"] = bool(step.get("antialias", False))
        return torch.nn.functional.interpolate(t, size=(oh, ow), **kwargs)[0].numpy()
    raise TransformError(f"resize backend must be 'pil' or 'tensor', got {backend!r}")


def _pad(x: np.ndarray, top: int, bottom: int, left: int, right: int, value: float) -> np.ndarray:
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right)), mode="constant", constant_values=value)


def _center_crop(x: np.ndarray, step: Mapping[str, Any]) -> np.ndarray:
    size = step["size"]
    th, tw = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    _, h, w = x.shape
    if th > h or tw > w:  # torchvision pads first, splitting the odd pixel to the bottom/right
        pl, pt = (tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0
        pr, pb = (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0
        x = _pad(x, pt, pb, pl, pr, 0.0)
        _, h, w = x.shape
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return x[:, top : top + th, left : left + tw]


def _pad_square(x: np.ndarray, step: Mapping[str, Any]) -> np.ndarray:
    _, h, w = x.shape
    side = max(h, w)
    ph, pw = int((side - h) / 2), int((side - w) / 2)
    return _pad(x, ph, ph, pw, pw, float(step.get("value", 0.0)))


def _pad_center(x: np.ndarray, step: Mapping[str, Any]) -> np.ndarray:
    size = step["size"]
    H, W = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    c, h, w = x.shape
    canvas = np.full((c, H, W), float(step.get("value", 0.0)), dtype=np.float32)
    top, left = (H - h) // 2, (W - w) // 2
    # paste with cropping where the image extends beyond the canvas (PIL paste semantics)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, H), min(left + w, W)
    if y1 > y0 and x1 > x0:
        canvas[:, y0:y1, x0:x1] = x[:, y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def _per_channel(values: Any, c: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        return np.full((c, 1, 1), arr[0], dtype=np.float32)
    if arr.size != c:
        raise TransformError(f"normalize {name} has {arr.size} values for {c} channel(s)")
    return arr.reshape(c, 1, 1)


def _normalize(x: np.ndarray, step: Mapping[str, Any]) -> np.ndarray:
    c = x.shape[0]
    mean = _per_channel(step["mean"], c, "mean")
    std = _per_channel(step["std"], c, "std")
    if np.any(std == 0):
        raise TransformError("normalize std contains 0")
    return (x - mean) / std


def _channels(x: np.ndarray, step: Mapping[str, Any]) -> np.ndarray:
    n = int(step["n"])
    c = x.shape[0]
    if c == n:
        return x
    if c != 1:
        raise TransformError(f"channels: cannot turn {c} channels into {n}")
    return np.repeat(x, n, axis=0)


_IMAGE_OPS: dict[str, Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]] = {
    "resize": _resize,
    "center_crop": _center_crop,
    "pad_square": _pad_square,
    "pad_center": _pad_center,
    "scale": lambda x, s: x * np.float32(s["factor"]),
    "normalize": _normalize,
    "channels": _channels,
    "clip": lambda x, s: np.clip(x, s.get("min"), s.get("max")),
    "affine": lambda x, s: x * np.float32(s.get("scale", 1.0)) + np.float32(s.get("offset", 0.0)),
}
_ELEMENTWISE = {"scale", "clip", "affine"}


# ------------------------------------------------------------------------------------- public


def _check_steps(preprocess: Any, allowed: Iterable[str]) -> list[Mapping[str, Any]]:
    steps = [dict(s) for s in preprocess.steps]
    allowed = set(allowed)
    for i, s in enumerate(steps):
        if "op" not in s:
            raise TransformError(f"preprocess step {i} has no 'op': {s}")
        if s["op"] not in allowed:
            raise TransformError(f"preprocess step {i}: op {s['op']!r} is not valid for input "
                                 f"{preprocess.input!r} (valid: {sorted(allowed)})")
    return steps


def _as_chw(image: Any) -> np.ndarray:
    pixels = getattr(image, "pixels", image)
    if hasattr(pixels, "detach"):  # torch tensor
        pixels = pixels.detach().cpu().numpy()
    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise TransformError(f"image2d transforms expect a (H, W) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise TransformError(f"empty image {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)[None]


class _ImageTransform:
    def __init__(self, preprocess: Any) -> None:
        self.preprocess = preprocess
        self.steps = _check_steps(preprocess, _IMAGE_OPS)
        self.digest = preprocess.digest()

    def __call__(self, image: Any) -> Any:
        import torch

        x = _as_chw(image)
        for step in self.steps:
            x = _IMAGE_OPS[step["op"]](x, step)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def __repr__(self) -> str:
        return f"ImageTransform({self.digest}, ops={[s['op'] for s in self.steps]})"


class _HUTransform:
    def __init__(self, preprocess: Any) -> None:
        self.preprocess = preprocess
        self.steps = _check_steps(preprocess, _ELEMENTWISE)
        self.digest = preprocess.digest()

    def __call__(self, hu: Any) -> Any:
        is_torch = hasattr(hu, "detach")
        x = hu.detach().cpu().numpy() if is_torch else np.asarray(hu)
        x = x.astype(np.float32, copy=True)
        for step in self.steps:
            x = _IMAGE_OPS[step["op"]](x, step)
        x = np.asarray(x, dtype=np.float32)
        if is_torch:
            import torch

            return torch.from_numpy(x)
        return x

    def __repr__(self) -> str:
        return f"HUTransform({self.digest}, ops={[s['op'] for s in self.steps]})"


def make_transform(preprocess: Any) -> Callable[[Any], Any]:
    """Callable for a ``radzoo.zoo.spec.Preprocess`` (cached per ``preprocess.digest()``)."""
    key = preprocess.digest()
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    if preprocess.input == "image2d":
        fn: Callable[[Any], Any] = _ImageTransform(preprocess)
    elif preprocess.input == "ct_hu":
        fn = _HUTransform(preprocess)
    else:
        raise TransformError(f"unknown preprocess input {preprocess.input!r} (image2d or ct_hu)")
    with _LOCK:
        _CACHE.setdefault(key, fn)
        return _CACHE[key]


def preprocess_image(image: Any, preprocess: Any) -> Any:
    """One image (``Image``, (H, W) array or path/bytes) -> model input tensor (C, H, W)."""
    if isinstance(image, (str, bytes, bytearray)) or hasattr(image, "__fspath__") or hasattr(image, "read"):
        from radzoo.io.image import read_image

        image = read_image(image)
    return make_transform(preprocess)(image)


def preprocess_batch(images: Iterable[Any], preprocess: Any) -> Any:
    """Several images -> stacked tensor (N, C, H, W). All must come out the same size."""
    import torch

    outs = [preprocess_image(im, preprocess) for im in images]
    if not outs:
        raise TransformError("preprocess_batch got no images")
    shapes = {tuple(o.shape) for o in outs}
    if len(shapes) != 1:
        raise TransformError(f"images preprocess to different shapes {sorted(shapes)}; the spec needs a fixed size")
    return torch.stack(outs)
