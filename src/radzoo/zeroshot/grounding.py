"""``ground(model, image, text)``: where an image-text model finds a text in an image.

The model's map lives on its feature grid (7x7 for 224 px inputs). It is mapped back through the
spec's geometric preprocessing (resize, LoVT's pad-to-square) to the image as read, so the map
lines up with ``radzoo.io`` pixels pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from radzoo.errors import CapabilityError, InputError
from radzoo.zeroshot import lovt_scoring as lovt
from radzoo.zeroshot import prior_scoring as prior
from radzoo.zeroshot.classify import encode_prompts, rules_for
from radzoo.zeroshot.result_types import GroundingResult
from radzoo.zoo.text_tokenizer import load_tokenizer, max_length

_NON_GEOMETRIC = {"normalize", "channels", "scale", "clip", "affine"}


def _canvas_sizes(shape: tuple[int, int], steps: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Image size before each geometric step and after the last one."""
    from radzoo.io.transforms import resized_size

    h, w = shape
    sizes = [(h, w)]
    for step in steps:
        op = step["op"]
        if op == "resize":
            h, w = resized_size(h, w, step)
        elif op == "pad_square":
            m = max(h, w)
            h, w = h + 2 * int((m - h) / 2), w + 2 * int((m - w) / 2)
        elif op not in _NON_GEOMETRIC:
            raise CapabilityError(f"grounding cannot map a heatmap back through preprocessing step {op!r}")
        sizes.append((h, w))
    return sizes


def to_image_grid(grid: torch.Tensor, shape: tuple[int, int], steps: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Upsample a feature-grid map [h, w] (covering the model input) to the image ``shape``.

    Walks the preprocessing backwards: an exact resize means the map covers the previous canvas
    as a whole; a pad-to-square is undone by cropping its integer half padding.
    """
    sizes = _canvas_sizes(shape, steps)
    cur = grid.detach().float().cpu()[None, None]

    def at(size: tuple[int, int]) -> torch.Tensor:
        if tuple(cur.shape[-2:]) == size:
            return cur
        return F.interpolate(cur, size=size, mode="bilinear", align_corners=False)

    for i in range(len(steps) - 1, -1, -1):
        step = steps[i]
        if step["op"] == "resize" and step.get("mode", "exact") != "exact":
            raise CapabilityError(f"grounding supports exact resizes only, not mode {step.get('mode')!r}")
        if step["op"] == "pad_square":
            before, after = sizes[i], sizes[i + 1]
            cur = at(after)
            top, left = (after[0] - before[0]) // 2, (after[1] - before[1]) // 2
            cur = cur[..., top : top + before[0], left : left + before[1]]
    cur = at(tuple(shape))
    return cur[0, 0].numpy().astype(np.float32)


GROUNDING_METHODS = ("auto", "gradcam", "tokens")


def ground(model: Any, image: Any, text: str, method: str = "auto") -> GroundingResult:
    """Similarity map of ``text`` over ``image``, the same shape as the image's pixels.

    PRIOR: ``gradcam`` (default) is a Grad-CAM of the prompt's image-text score on the 7x7 layer4
    grid (see :func:`radzoo.zeroshot.prior_scoring.ground` for why); ``tokens`` is the literal 7x7
    token-vs-prompt cross-attention map in token order. LoVT: per-region cosine between each
    region and its report-attended vector after the cross-attention (``auto`` only).
    """
    from radzoo.zoo.pixels import to_pixels

    rules = rules_for(model)
    if method not in GROUNDING_METHODS:
        raise InputError(f"unknown grounding method {method!r}; choose one of {', '.join(GROUNDING_METHODS)}")
    if method != "auto" and rules is not prior:
        raise InputError(f"grounding method {method!r} applies to PRIOR models only; LoVT has one map (auto)")
    if not isinstance(text, str) or not text.strip():
        raise InputError("grounding needs a non-empty text")
    if isinstance(image, (list, tuple)):
        raise InputError("ground() takes one image; call it once per image")
    model._require_2d()
    pixels = to_pixels(image, 0, model.spec.modality)
    batch = model.transform(pixels)[None].to(model.device)
    model.net.eval()
    if rules is prior:
        emb, truncated = encode_prompts(model, [text], "ground")
        if method == "tokens":
            grid, details = prior.token_map(model.net, batch, emb)
        else:
            grid, details = prior.ground(model.net, batch, emb)
    else:
        tokens, index = lovt.tokenize_reports(load_tokenizer(model), [text], max_length(model))
        with torch.inference_mode():
            grid, details = lovt.ground(
                model.net, batch, _on(tokens, model.device), index.to(model.device)
            )
        truncated = list(tokens.truncated)
    heat = to_image_grid(grid, pixels.shape, model.spec.preprocess.steps)
    method = details.pop("method")
    details = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in details.items()}
    return GroundingResult(
        heatmap=heat,
        grid=grid.detach().cpu().numpy().astype(np.float32),
        text=text,
        method=method,
        pixels=np.asarray(pixels, dtype=np.float32),
        truncated=truncated,
        details=details,
    )


def _on(tokens: Any, device: torch.device) -> Any:
    tokens.input_ids = tokens.input_ids.to(device)
    tokens.attention_mask = tokens.attention_mask.to(device)
    return tokens
