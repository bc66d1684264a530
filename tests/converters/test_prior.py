"""PRIOR: the image-only release at full size, and the whole model (Lightning-wrapped and flat)
with a tiny text tower, each compared with a re-computation from the raw original keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import clip_attention_pool, resnet50_feature_map, unit_block

import radzoo
from radzoo.converters import convert
from radzoo.converters.random_originals import write_checkpoint
from radzoo.errors import InputError
from radzoo.nets.text import build_bert
from radzoo.zoo.tiny import TINY_TEXT_CONFIG, write_test_vocab


def test_prior_image_release_offers_only_the_mean_pooled_trunk(manifest, ckpt_dir: Path, tmp_path: Path, image) -> None:
    path = write_checkpoint(manifest("prior_resnet50_image"), ckpt_dir / "prior_resnet50.pt", seed=5)
    out = convert("prior", path, tmp_path / "prior")
    model = radzoo.load(out)
    assert model.spec.name == "prior_resnet50" and model.outputs == {"trunk": 2048}
    raw = torch.load(path, weights_only=True)
    batch = model.prepare([image])
    assert batch.shape == (1, 1, 224, 224)
    ref = resnet50_feature_map({"x." + k: v for k, v in raw.items()}, "x.", batch, 1).mean(dim=(2, 3))
    np.testing.assert_allclose(model.embed([image]), ref.numpy(), rtol=1e-4, atol=1e-5)


TINY_ARCH = {"text_config": TINY_TEXT_CONFIG}


@pytest.fixture(scope="module")
def prior_full_file(manifest, ckpt_dir: Path):
    from transformers import BertConfig, BertModel

    m = manifest("prior_full")
    dec = BertModel(BertConfig(**{**TINY_TEXT_CONFIG, "is_decoder": True, "add_cross_attention": True}), add_pooling_layer=False)
    blocks = {
        "text_encoder.encoder.": build_bert(TINY_TEXT_CONFIG).state_dict(),
        "local_text_projection.": {"weight": torch.empty(768, 32), "bias": torch.empty(768)},
        "sentence_decoder.": dec.state_dict(),
        "image_decoder.": unit_block(m, "image_decoder."),
    }
    return m, blocks


@pytest.mark.parametrize("wrapped", [True], ids=["lightning"])  # flat: same rules, see test_negative
def test_prior_full_matches_raw_global_path(prior_full_file, wrapped: bool, ckpt_dir: Path, tmp_path: Path, image) -> None:
    m, blocks = prior_full_file
    if not wrapped:
        m = {**m, "state_dict_location": None}
    path = write_checkpoint(m, ckpt_dir / f"prior-full-tinytext-{'pl' if wrapped else 'flat'}.ckpt", blocks=blocks, seed=6)
    vocab = write_test_vocab(tmp_path / "tok", TINY_TEXT_CONFIG["vocab_size"])
    with pytest.raises(InputError, match="--tokenizer"):
        convert("prior_full", path, tmp_path / "no-tok", arch_args=TINY_ARCH)
    bad = write_test_vocab(tmp_path / "tok-bad", 100)
    with pytest.raises(InputError, match="100 tokens"):
        convert("prior_full", path, tmp_path / "bad-tok", arch_args=TINY_ARCH, tokenizer=bad)
    assert not (tmp_path / "no-tok").exists() and not (tmp_path / "bad-tok").exists()

    out = convert("prior", path, tmp_path / "pf", arch_args=TINY_ARCH, tokenizer=vocab)
    assert (out / "tokenizer" / "vocab.txt").is_file()
    model = radzoo.load(out)
    assert model.outputs == {"trunk": 2048, "pooled": 2048, "global": 768}
    obj = torch.load(path, weights_only=True)
    raw = obj["state_dict"] if wrapped else obj
    batch = model.prepare([image])
    fmap = resnet50_feature_map(raw, "image_encoder.encoder.", batch, 1)
    pooled = clip_attention_pool(raw, "image_encoder.atten_pool.", fmap, 8)
    glob = pooled @ raw["global_image_projection.weight"].T + raw["global_image_projection.bias"]
    np.testing.assert_allclose(model.embed([image], output="pooled"), pooled.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.embed([image]), glob.numpy(), rtol=1e-4, atol=1e-4)
    # text tower: the BERT word embeddings went over unchanged, position_ids dropped
    sd = model.net.state_dict()
    torch.testing.assert_close(sd["text_backbone.embeddings.word_embeddings.weight"],
                               raw["text_encoder.encoder.embeddings.word_embeddings.weight"])
    assert "text_backbone.embeddings.position_ids" not in sd
