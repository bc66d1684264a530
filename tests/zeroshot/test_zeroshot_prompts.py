"""Prompt sets are versioned data in the artifact: round trip, card text, version checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo.errors import InputError
from radzoo.zeroshot.prompts import PRIOR_CHEXPERT5, PromptSet, add_prompt_set, zero_shot_section


def test_default_section_and_card(prior_dir: Path) -> None:
    config = json.loads((prior_dir / "config.json").read_text())
    zs = config["zero_shot"]
    assert zs["default_prompt_set"] == "prior-chexpert5"
    assert zs["prompt_sets"]["prior-chexpert5"]["classes"]["Pleural Effusion"] == ["Pleural Effusion is observed"]
    card = (prior_dir / "README.md").read_text()
    assert "Deviations from the original" in card and "Gumbel" in card
    assert (prior_dir / "tokenizer" / "vocab.txt").is_file()


def test_prompt_set_round_trip_through_artifact(prior_model, nih_images, tmp_path: Path) -> None:
    from radzoo import zoo

    mine = PromptSet(
        name="my-set", version="2", mode="single-label",
        classes={"Edema": ("Edema is seen",), "Atelectasis": ("Atelectasis is seen",)},
    )
    assert PromptSet.from_dict(mine.name, mine.to_dict()) == mine
    add_prompt_set(prior_model.config, prior_model.spec, mine, default=True)
    saved = zoo.save(prior_model, tmp_path / "with-set")
    again = radzoo.load(saved, device="cpu")
    r = again.zero_shot(nih_images[:1])
    assert r.prompt_set == "my-set@2" and r.labels == ["Edema", "Atelectasis"]
    ref = prior_model.zero_shot(nih_images[:1], prompts=mine)
    np.testing.assert_allclose(r.probabilities, ref.probabilities, atol=1e-6)
    assert again.zero_shot(nih_images[:1], prompts="prior-chexpert5@1").labels[0] == "Atelectasis"
    # same name and version with other words is refused: bump the version
    changed = PromptSet(name="my-set", version="2", classes={"Edema": ("Edema!",), "Atelectasis": ("A",)})
    with pytest.raises(InputError, match="bump its version"):
        add_prompt_set(again.config, again.spec, changed)
    add_prompt_set(again.config, again.spec, PromptSet(name="my-set", version="3", classes=changed.classes))


def test_prompt_set_validation() -> None:
    with pytest.raises(InputError, match="no version"):
        PromptSet.from_dict("x", {"classes": {"A": ["a"]}})
    with pytest.raises(InputError, match="placeholder"):
        PromptSet(name="x", version="1", templates={"positive": ("no placeholder",)})
    with pytest.raises(InputError, match="unknown fields"):
        PromptSet.from_dict("x", {"version": "1", "prompts": {}})
    assert PRIOR_CHEXPERT5.negatives_for("Edema") == ("No Edema is observed",)


def test_zero_shot_section_refuses_image_only_models() -> None:
    from radzoo.errors import CapabilityError
    from radzoo.zoo import get_spec

    assert zero_shot_section(get_spec("lovt_resnet50"))["default_prompt_set"] == "lovt-chexpert5"
    with pytest.raises(CapabilityError, match="RadGraph"):
        zero_shot_section(get_spec("igcl_vitb32"))
    with pytest.raises(CapabilityError, match="image-only"):
        zero_shot_section(get_spec("prior_resnet50"))


def test_lovt_zero_shot_contract(lovt_model, nih_images) -> None:
    a = lovt_model.zero_shot(nih_images)
    b = lovt_model.zero_shot(nih_images[::-1])
    assert a.rule == "lovt-retrieval-cosine"
    np.testing.assert_allclose(a.probabilities.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(a.probabilities, b.probabilities[::-1], atol=1e-6)
    # a two-sentence prompt is encoded on its own (LoVT's padded-mean query depends on the batch)
    r = lovt_model.zero_shot(nih_images[:1], ["Edema", "Atelectasis"],
                             {"Edema": "Edema is observed. Lungs are seen.", "Atelectasis": "Atelectasis is observed."})
    alone = lovt_model.zero_shot(nih_images[:1], ["Edema", "Atelectasis"],
                                 {"Edema": "Edema is observed. Lungs are seen.", "Atelectasis": "Atelectasis is seen."})
    np.testing.assert_allclose(r.prompt_scores["global"][0, 0], alone.prompt_scores["global"][0, 0], atol=1e-5)
