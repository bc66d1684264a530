"""Zero-shot labels and grounding heatmaps for the image-text models (PRIOR, LoVT).

Public API::

    zero_shot(model, images, labels=None, prompts=None, *, mode=None, batch_size=16, seed=None) -> ZeroShotResult
    ground(model, image, text) -> GroundingResult
    render_overlay(pixels, heatmap, title, out) -> Path
    PromptSet, zero_shot_section(spec), add_prompt_set(config, spec, prompt_set)

Evaluation on labelled data (metrics, CIs, baselines) lives in ``radzoo.eval.zero_shot``.

``ZooModel.zero_shot`` / ``ZooModel.ground`` delegate here.
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy: ``radzoo.cli.zeroshot`` is imported by the CLI for every command, and must not pull
# in torch/transformers just to build the argument parser.
_EXPORTS = {
    "encode_prompts": "classify",
    "zero_shot": "classify",
    "ground": "grounding",
    "render_overlay": "overlay",
    "PRIOR_CHEXPERT5": "prompts",
    "PromptSet": "prompts",
    "add_prompt_set": "prompts",
    "zero_shot_section": "prompts",
    "GroundingResult": "result",
    "PromptRef": "result",
    "ZeroShotResult": "result",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"radzoo.zeroshot.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'radzoo.zeroshot' has no attribute {name!r}")


__all__ = [
    "PRIOR_CHEXPERT5",
    "GroundingResult",
    "PromptRef",
    "PromptSet",
    "ZeroShotResult",
    "add_prompt_set",
    "encode_prompts",
    "ground",
    "render_overlay",
    "zero_shot",
    "zero_shot_section",
]
