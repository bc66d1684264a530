"""Random-weight builds of image-text models carry a generated WordPiece tokenizer, marked as such."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo import zoo
from radzoo.zoo.generated_tokenizer import MARKER, word_list
from radzoo.zoo.text_tokenizer import load_tokenizer
from radzoo.zoo.tiny import tiny_specs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("name", ["tiny-random-prior", "tiny-random-lovt"])
def test_build_attaches_a_marked_generated_tokenizer(name, home, tmp_path):
    spec = tiny_specs()[name]
    model = radzoo.build(spec)
    section = model.config["tokenizer"]
    tower = spec.arch_args["text_config"]["vocab_size"]
    assert section["generated"] is True and section["vocab_size"] <= tower == section["tower_vocab_size"]
    tok_dir = model.assets["tokenizer"]
    assert json.loads((tok_dir / MARKER).read_text())["generated"] is True
    vocab = (tok_dir / "vocab.txt").read_text().splitlines()
    assert len(vocab) == section["vocab_size"] and vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    tok = load_tokenizer(model)
    ids = tok("Pleural Effusion is observed")["input_ids"]
    assert ids == tok("pleural effusion is observed")["input_ids"]  # lower-cased, like the originals
    assert tok.unk_token_id not in tok("zygomatic xq7 hemithorax!")["input_ids"]  # any ASCII word has pieces

    out = zoo.save(model, tmp_path / "artifact")
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer"]["generated"] is True and (out / "tokenizer" / "vocab.txt").is_file()
    assert "Generated tokenizer" in (out / "README.md").read_text()
    loaded = radzoo.load(out)
    np.testing.assert_allclose(loaded.embed_text(["Edema"]), model.embed_text(["Edema"]), rtol=1e-5, atol=1e-6)


def test_generation_is_deterministic_and_cached(tmp_path, monkeypatch):
    spec = tiny_specs()["tiny-random-prior"]
    vocabs = []
    for sub in ("a", "b"):
        monkeypatch.setenv("RADZOO_HOME", str(tmp_path / sub))
        tok_dir = radzoo.build(spec).assets["tokenizer"]
        vocabs.append((tok_dir / "vocab.txt").read_bytes())
        assert radzoo.build(spec, seed=1).assets["tokenizer"] == tok_dir  # trained once per corpus and size
    assert vocabs[0] == vocabs[1]
    words = set(vocabs[0].decode().split())
    assert {"pleural", "effusion", "observed"} <= words and len(word_list()) > 200


def test_casing_follows_the_spec(home):
    spec = tiny_specs()["tiny-random-lovt"]
    lower = radzoo.build(spec)
    cased = radzoo.build(spec.with_(text={**spec.text, "lowercase": False}))
    assert lower.config["tokenizer"]["lowercase"] is True and cased.config["tokenizer"]["lowercase"] is False
    tok = load_tokenizer(cased)
    assert tok("Edema")["input_ids"] != tok("edema")["input_ids"]
    assert tok.unk_token_id not in tok("Zygomatic XQ7 Hemithorax")["input_ids"]


def test_real_tokenizer_given_is_kept(home, tmp_path):
    from radzoo.zoo.tiny import write_test_vocab

    vocab = write_test_vocab(tmp_path / "vocab")
    model = radzoo.build(tiny_specs()["tiny-random-prior"], tokenizer=vocab)
    assert model.assets["tokenizer"] == vocab and "tokenizer" not in model.config


def _readme_example() -> list[str]:
    """The "Try it offline" example of the zero-shot docs page (it was the README's before the docs site)."""
    text = (ROOT / "docs" / "zero-shot.md").read_text()
    section = text.split("### Try it offline", 1)[1].split("\n#", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


@pytest.mark.slow  # builds the full-size PRIOR (ResNet-50 + BERT) twice: ~1 min on 2 busy cores
def test_readme_offline_image_text_example_runs(home, tmp_path):
    """The docs' zero-shot + grounding example (docs/zero-shot.md) on examples/cxr, exactly as documented."""
    blocks = _readme_example()
    assert blocks, "docs/zero-shot.md section 'Try it offline' has no bash block"
    for command in blocks[0].splitlines():
        command = command.replace(".venv/bin/python", sys.executable)
        command = command.replace(".venv/bin/radzoo", f"{sys.executable} -m radzoo.cli")
        command = command.replace("out/", f"{tmp_path}/")
        done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ground.png").read_bytes().startswith(b"\x89PNG")
