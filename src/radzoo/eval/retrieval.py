"""Image-text retrieval on paired data: Recall@K in both directions.

Images and texts live in the model's joint space (image output ``global``, text
``model.encode_text(...)["global"]``); similarity is the cosine. Identical texts are one gallery
entry: an image->text query is a hit when its own text is among the K most similar texts, a
text->image query when any image paired with that text is among the K most similar images.
Bootstrap resamples the queries by patient; the galleries stay whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from radzoo.errors import InputError

KS = (1, 5, 10)
TEXT_BATCH = 64
JOINT_OUTPUT = "global"


def text_embeddings(model: Any, texts: Sequence[str], batch: int = TEXT_BATCH) -> np.ndarray:
    """(T, E) text embeddings in the joint space, encoded in batches."""
    model.spec.require("text", "retrieval")
    parts = []
    for start in range(0, len(texts), batch):
        emb = model.encode_text(list(texts[start : start + batch]))["global"]
        parts.append(emb.detach().float().cpu().numpy())
    return np.concatenate(parts)


def hits(image_emb: np.ndarray, text_emb: np.ndarray, text_of_image: np.ndarray,
         ks: Sequence[int] = KS) -> dict[str, np.ndarray]:
    """Per-query hit indicators: ``image_to_text/R@K`` (one per image), ``text_to_image/R@K``
    (one per gallery text). ``text_of_image[i]`` is the gallery index of image i's text."""
    if image_emb.shape[1] != text_emb.shape[1]:
        raise InputError(f"image embeddings ({image_emb.shape[1]}) and text embeddings ({text_emb.shape[1]}) "
                         "are not in one space; retrieval needs the joint output 'global'")
    a = image_emb / np.maximum(np.linalg.norm(image_emb, axis=1, keepdims=True), 1e-12)
    b = text_emb / np.maximum(np.linalg.norm(text_emb, axis=1, keepdims=True), 1e-12)
    sim = a @ b.T  # (I, T)
    n_img = sim.shape[0]
    true = sim[np.arange(n_img), text_of_image]
    rank_i2t = (sim > true[:, None]).sum(axis=1)  # texts ranked above the true one
    rank_t2i = np.empty(sim.shape[1], dtype=np.int64)
    for t in range(sim.shape[1]):
        mine = text_of_image == t
        best = sim[mine, t].max()
        rank_t2i[t] = int((sim[~mine, t] > best).sum())
    out = {}
    for k in ks:
        out[f"image_to_text/R@{k}"] = (rank_i2t < k).astype(np.float64)
        out[f"text_to_image/R@{k}"] = (rank_t2i < k).astype(np.float64)
    return out


def statistic_for(per_query: dict[str, np.ndarray], text_of_image: np.ndarray, n_texts: int,
                  ) -> Callable[[np.ndarray | None], dict[str, float]]:
    """Recall@K as a function of bootstrap weights over images; a text query weighs the mean
    multiplicity of its images."""
    counts = np.bincount(text_of_image, minlength=n_texts).astype(np.float64)

    def stat(w: np.ndarray | None) -> dict[str, float]:
        w_img = np.ones(text_of_image.size) if w is None else w
        w_txt = np.bincount(text_of_image, weights=w_img, minlength=n_texts) / counts
        out = {}
        for key, h in per_query.items():
            weights = w_img if key.startswith("image_to_text") else w_txt
            out[key] = float(np.average(h, weights=weights)) if weights.sum() > 0 else float("nan")
        return out

    return stat


def chance(text_of_image: np.ndarray, n_texts: int, ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@K of a random ranking: K / texts for image->text; for text->image, the chance that
    one of a text's m images is among K of the I images, averaged over the texts."""
    n_images = int(text_of_image.size)
    counts = np.bincount(text_of_image, minlength=n_texts)
    out = {}
    for k in ks:
        out[f"image_to_text/R@{k}"] = min(1.0, k / n_texts)
        kk = min(k, n_images)
        miss = [math.comb(n_images - int(m), kk) / math.comb(n_images, kk) for m in counts]
        out[f"text_to_image/R@{k}"] = float(1.0 - np.mean(miss))
    return out
