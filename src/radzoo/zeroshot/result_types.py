"""What zero-shot scoring and grounding return: plain arrays plus the facts needed to read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PromptRef:
    """One column of ``prompt_scores``: which label it serves, with which polarity, and its words."""

    label: str
    polarity: str  # "positive" | "negative"
    text: str


@dataclass
class ZeroShotResult:
    """Per-image, per-label zero-shot output.

    * ``probabilities`` (N, L): single-label rows sum to 1 (softmax over ``labels``); multi-label
      entries are each label's positive-vs-negative probability.
    * ``scores`` (N, L): the rule's raw score before normalisation (PRIOR: ``P_g + 0.5 P_l``).
    * ``prompt_scores``: component name -> (N, P) per-prompt scores, columns described by ``prompts``.
    """

    labels: list[str]
    probabilities: np.ndarray
    scores: np.ndarray
    prompt_scores: dict[str, np.ndarray]
    prompts: list[PromptRef]
    rule: str
    mode: str
    prompt_set: str
    truncated: list[str] = field(default_factory=list)

    def predictions(self, threshold: float = 0.5) -> list[Any]:
        """Single-label: the argmax label per image. Multi-label: the labels at or above ``threshold``."""
        if self.mode == "single-label":
            return [self.labels[i] for i in self.probabilities.argmax(axis=1)]
        return [[lab for lab, p in zip(self.labels, row, strict=True) if p >= threshold] for row in self.probabilities]

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "probabilities": self.probabilities.tolist(),
            "scores": self.scores.tolist(),
            "prompt_scores": {k: v.tolist() for k, v in self.prompt_scores.items()},
            "prompts": [vars(p) for p in self.prompts],
            "rule": self.rule,
            "mode": self.mode,
            "prompt_set": self.prompt_set,
            "truncated": list(self.truncated),
        }


@dataclass
class GroundingResult:
    """A similarity map for one image and one text.

    ``heatmap`` has the shape of the image as read (``radzoo.io`` pixels), ``grid`` is the map on
    the model's feature grid before upsampling; ``method`` names how it was computed.
    """

    heatmap: np.ndarray
    grid: np.ndarray
    text: str
    method: str
    pixels: np.ndarray
    truncated: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
