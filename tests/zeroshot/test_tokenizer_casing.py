"""Tokenizer casing (METHODS 0.6): LoVT and PRIOR lower-case text whatever the stored tokenizer
config says (the test vocabulary's config says ``do_lower_case: false`` and holds both "Edema" and
"edema"), and the artifact records the choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo.zoo.text_tokenizer import load_tokenizer, lowercase_choice


def test_stored_config_says_cased_but_vocab_has_both_forms(vocab_dir: Path) -> None:
    config = json.loads((vocab_dir / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is False
    words = set((vocab_dir / "vocab.txt").read_text().split())
    assert {"Edema", "edema", "Cardiomegaly", "cardiomegaly"} <= words  # casing would change the ids


@pytest.mark.parametrize("which", ["prior_model", "lovt_model"])
def test_cased_and_lower_cased_prompts_score_identically(which: str, request, nih_images) -> None:
    model = request.getfixturevalue(which)
    assert lowercase_choice(model.spec) is True
    labels = ["Edema", "Cardiomegaly"]
    cased = model.zero_shot(nih_images, labels, {"Edema": "Edema is Observed", "Cardiomegaly": "Cardiomegaly is observed"})
    lower = model.zero_shot(nih_images, labels, {"Edema": "edema is observed", "Cardiomegaly": "cardiomegaly is observed"})
    np.testing.assert_array_equal(cased.scores, lower.scores)
    np.testing.assert_array_equal(cased.probabilities, lower.probabilities)
    tok = load_tokenizer(model)
    assert tok("Edema")["input_ids"] == tok("edema")["input_ids"]


def test_choice_is_recorded_in_config_and_card(prior_dir: Path, lovt_dir: Path) -> None:
    for d in (prior_dir, lovt_dir):
        config = json.loads((d / "config.json").read_text())
        assert config["spec"]["text"]["lowercase"] is True
        card = (d / "README.md").read_text()
        assert "lower-cased before tokenisation" in card and "do_lower_case=True" in card


def test_artifacts_without_the_record_still_lower_case(prior_dir: Path, tmp_path: Path, nih_images) -> None:
    """Artifacts written before the field existed: the method decides (PRIOR -> lower case)."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(prior_dir, old)
    config = json.loads((old / "config.json").read_text())
    del config["spec"]["text"]["lowercase"]
    (old / "config.json").write_text(json.dumps(config))
    model = radzoo.load(old, device="cpu")
    assert "lowercase" not in model.spec.text and lowercase_choice(model.spec) is True
    a = model.zero_shot(nih_images[:1], ["Edema", "Cardiomegaly"], "{label} is observed")
    b = model.zero_shot(nih_images[:1], ["edema", "cardiomegaly"], "{label} is observed")
    np.testing.assert_array_equal(a.scores, b.scores)


def test_an_explicit_cased_record_is_honoured(prior_dir: Path, tmp_path: Path) -> None:
    import shutil

    cased = tmp_path / "cased"
    shutil.copytree(prior_dir, cased)
    config = json.loads((cased / "config.json").read_text())
    config["spec"]["text"]["lowercase"] = False
    (cased / "config.json").write_text(json.dumps(config))
    model = radzoo.load(cased, device="cpu")
    tok = load_tokenizer(model)
    assert tok("Edema")["input_ids"] != tok("edema")["input_ids"]
