"""IGCL (fc_layers 2 and 1; tiny CLIP tower, full-size graph encoder) and LoVT (tiny BERT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import resnet50_feature_map
from transformers import CLIPVisionConfig, CLIPVisionModel

import radzoo
from radzoo.converters import convert
from radzoo.converters.random_originals import write_checkpoint
from radzoo.nets.text import build_bert
from radzoo.zoo.tiny import TINY_TEXT_CONFIG, write_test_vocab

TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
               "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "num_channels": 3}


@pytest.mark.parametrize("variant", [None, "fc_layers_1"], ids=["fc2", "fc1"])
def test_igcl_reads_fc_layers_and_matches_clip(variant, manifest, ckpt_dir: Path, tmp_path: Path, image) -> None:
    m = manifest("igcl_full")
    clip = CLIPVisionModel(CLIPVisionConfig(**TINY_VISION))
    block = {k.removeprefix("vision_model."): v for k, v in clip.state_dict().items()}
    path = write_checkpoint(m, ckpt_dir / f"igcl-tinyvision-{variant or 'fc2'}.pt", variant=variant,
                            blocks={"visual.encoder.model.vision_model.": block}, seed=7)
    raw = torch.load(path, weights_only=True)
    # tiny tower is 32 wide: the raw proj must be too (the manifest says [768, 768] for ViT-B/32)
    raw["visual.proj"] = torch.randn(32, 768) / 32**0.5
    torch.save(raw, path)
    out = convert("igcl", path, tmp_path / "igcl", arch_args={"vision_config": TINY_VISION})
    model = radzoo.load(out)
    assert model.spec.arch_args["fc_layers"] == (1 if variant else 2)
    ref_clip = CLIPVisionModel(CLIPVisionConfig(**TINY_VISION)).eval()
    pre = "visual.encoder.model.vision_model."
    sd = {k[len(pre):]: v for k, v in raw.items() if k.startswith(pre) and not k.endswith("position_ids")}
    target = ref_clip.state_dict()
    sd = {("vision_model." + k if "vision_model." + k in target else k): v for k, v in sd.items()}
    ref_clip.load_state_dict(sd, strict=True)
    batch = model.prepare([image])
    with torch.inference_mode():
        pooled = ref_clip(pixel_values=batch).pooler_output
    np.testing.assert_allclose(model.embed([image], output="trunk"), pooled.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.embed([image]), (pooled @ raw["visual.proj"]).numpy(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.net.graph_proj.weight, raw["gnn.proj"].T)


def test_lovt_lightning_checkpoint_matches_raw_pool(manifest, ckpt_dir: Path, tmp_path: Path, image) -> None:
    m = manifest("lovt_full")
    tiny = build_bert(TINY_TEXT_CONFIG).state_dict()
    blocks = {
        "model_b.encoder.language_model.": tiny,
        "model_b.encoder.global_aggregator.attention.": {"in_proj_weight": torch.empty(96, 32), "in_proj_bias": torch.empty(96),
                                                         "out_proj.weight": torch.empty(32, 32), "out_proj.bias": torch.empty(32)},
        "model_b.project_global.projection_before.": {"weight": torch.empty(2048, 32), "bias": torch.empty(2048)},
        "model_b.project_local.projection_before.": {"weight": torch.empty(2048, 32, 1), "bias": torch.empty(2048)},
        "chexpert_bin_report.": {"classifier.weight": torch.empty(5, 32), "classifier.bias": torch.empty(5)},
    }
    path = write_checkpoint(m, ckpt_dir / "lovt-tinytext.ckpt", blocks=blocks, seed=8)
    vocab = write_test_vocab(tmp_path / "tok", TINY_TEXT_CONFIG["vocab_size"])
    out = convert("lovt", path, tmp_path / "lovt", tokenizer=vocab, arch_args={"text_config": TINY_TEXT_CONFIG})
    model = radzoo.load(out)
    raw = torch.load(path, weights_only=True)["state_dict"]
    batch = model.prepare([image])
    tokens = resnet50_feature_map(raw, "model_a.encoder.feature_extractor.backbone_layers.", batch, 3).flatten(2).transpose(1, 2)
    mha = torch.nn.MultiheadAttention(2048, 8, batch_first=True).eval()
    p = "model_a.encoder.global_aggregator.attention."
    mha.load_state_dict({k[len(p):]: v for k, v in raw.items() if k.startswith(p)})
    with torch.inference_mode():
        pooled = mha(tokens.mean(1, keepdim=True), tokens, tokens, need_weights=False)[0][:, 0]
        g = "model_a.project_global."
        h = pooled @ raw[g + "projection_before.weight"].T + raw[g + "projection_before.bias"]
        h = torch.nn.functional.batch_norm(h, raw[g + "norm.running_mean"], raw[g + "norm.running_var"],
                                           raw[g + "norm.weight"], raw[g + "norm.bias"], False, 0.0, 1e-5)
        z = torch.relu(h) @ raw[g + "projection_after.weight"].T + raw[g + "projection_after.bias"]
    np.testing.assert_allclose(model.embed([image]), pooled.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.embed([image], output="global"), z.numpy(), rtol=1e-4, atol=2e-4)
