"""``Model.embed_text``: text vectors in the joint space that zero-shot scoring compares images with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo.errors import CapabilityError, InputError
from radzoo.zeroshot.prompts import CHEXPERT5


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


@pytest.mark.parametrize("which", ["prior", "lovt"])
def test_text_vectors_are_what_zero_shot_scores_images_against(which, prior_model, lovt_model, nih_images):
    """Each method's global prompt score is (scale x) the cosine of the image's ``global`` output and
    the prompt's text embedding: the ratio is one constant over every image-prompt pair."""
    model = prior_model if which == "prior" else lovt_model
    result = model.zero_shot(nih_images)
    prompts = [ref.text for ref in result.prompts]
    texts = model.embed_text(prompts)
    assert texts.shape == (len(prompts), model.outputs[radzoo.resolve.JOINT_OUTPUT]) and texts.dtype == np.float32
    images = model.embed(nih_images, output="global")
    cos = _cos(images.astype(np.float64), texts.astype(np.float64))
    ratio = result.prompt_scores["global"] / cos
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-3)
    assert len(prompts) == len(CHEXPERT5)


def test_batches_and_cache(prior_model):
    texts = [f"{c} is observed" for c in CHEXPERT5] + ["No acute cardiopulmonary process."]
    whole = prior_model.embed_text(texts)
    np.testing.assert_allclose(prior_model.embed_text(texts, batch_size=2), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prior_model.embed_text(texts[3]), whole[3:4], rtol=1e-5, atol=1e-6)
    cached = len(prior_model._cache)
    prior_model.embed_text(["an arbitrary report sentence"])
    assert len(prior_model._cache) == cached  # arbitrary texts never fill the prompt cache


def test_bad_texts_and_image_only_models(prior_model, shared_data: Path):
    for bad, needle in [([], "no texts"), (["ok", "  "], r"texts\[1\]"), ([3], r"texts\[0\]")]:
        with pytest.raises(InputError, match=needle):
            prior_model.embed_text(bad)
    from radzoo.zoo.tiny import tiny_specs

    moco = radzoo.build(tiny_specs()["tiny-random-mococxr"])
    with pytest.raises(CapabilityError, match="it offers: embed"):
        moco.embed_text(["Edema"])


def test_cli_embed_text(prior_dir: Path, prior_model, tmp_path: Path):
    import json
    import subprocess
    import sys

    out = tmp_path / "texts.json"
    texts = ["Pleural effusion, small.", "No pneumothorax."]
    argv = [sys.executable, "-m", "radzoo.cli", "embed", "--model", str(prior_dir), "--out", str(out)]
    done = subprocess.run(argv + [a for t in texts for a in ("--text", t)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    body = json.loads(out.read_text())
    assert body["output"] == "global" and [item["text"] for item in body["items"]] == texts
    np.testing.assert_allclose([item["embedding"] for item in body["items"]], prior_model.embed_text(texts),
                               rtol=1e-5, atol=1e-6)
    both = subprocess.run(argv + ["--text", "x", str(prior_dir)], capture_output=True, text=True, timeout=300)
    assert both.returncode != 0 and "not both" in both.stderr
