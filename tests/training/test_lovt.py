"""LoVT end to end on real NIH images with reports DERIVED FROM THEIR LABELS (tiny towers, CPU):
the command line trains, validates and early-stops; the artifact loads strictly, embeds, scores
zero-shot and grounds; frozen BERT layers stay frozen; bad inputs are named."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import radzoo
from radzoo.cli import main
from radzoo.training.hparams import LoVTConfig, resolve_config
from radzoo.training.methods.lovt_pretraining import build_net
from radzoo.training.run_log import read_metrics
from radzoo.zoo.instantiate import instantiate
from radzoo.zoo.tiny import write_test_vocab

from .conftest import TINY_PAIRED

LOVT_TINY = {**TINY_PAIRED, "proj_dim": "32", "proj_hidden": "64", "pool_heads": "2", "accumulate": "2",
             "freeze_layers": "1", "epochs": "2", "early_stop_patience": "1"}


@pytest.fixture(scope="module")
def lovt_run(paired_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("lovt") / "lovt_tiny"
    cmd = [sys.executable, "-m", "radzoo.cli", "train", "lovt", "--data", str(paired_manifest), "--out", str(out),
           *[f"--{k}={v}" for k, v in LOVT_TINY.items()]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"wrote {out}" in proc.stdout
    return out


def test_lovt_artifact_loads_strictly_and_does_everything(lovt_run, nih_paths):
    model = radzoo.load(lovt_run, device="cpu")
    assert model.spec.name == "lovt_tiny" and not model.random_init
    assert {"embed", "text", "zero_shot", "ground"} <= model.spec.capabilities
    assert model.outputs == {"trunk": 512, "pooled": 512, "global": 32}
    keys = set(load_file(str(lovt_run / "model.safetensors")))
    assert keys == set(instantiate(model.spec).state_dict())  # exactly the zoo's key layout
    emb = model.embed([str(p) for p in nih_paths[:2]])
    assert emb.shape == (2, 512) and np.isfinite(emb).all()
    res = model.zero_shot([str(p) for p in nih_paths[:3]], ["Atelectasis", "Cardiomegaly", "Pleural Effusion"])
    assert res.probabilities.shape == (3, 3) and np.allclose(res.probabilities.sum(1), 1.0)
    heat = model.ground(str(nih_paths[0]), "There is a pleural effusion.").heatmap
    assert heat.shape == (512, 512) and np.isfinite(heat).all()
    tok = json.loads((lovt_run / "tokenizer" / "tokenizer_config.json").read_text())
    assert tok["do_lower_case"] is True
    cfg = model.config
    assert "zero_shot" in cfg and cfg["zero_shot"]["default_prompt_set"] == "lovt-chexpert5"
    assert any("WordPiece vocabulary" in d for d in cfg["deviations"])
    assert any("TINY preset" in d for d in cfg["deviations"])
    assert "WordPiece" in (lovt_run / "README.md").read_text()


def test_lovt_provenance_metrics_validation_and_frozen_layers(lovt_run):
    model = radzoo.load(lovt_run, device="cpu")
    prov = model.config["provenance"]
    assert prov["method"] == "lovt" and prov["tokenizer"]["source"] == "wordpiece"
    assert prov["data"]["studies"] == 9 and prov["validation"]["studies"] == 3
    assert prov["world_size"] == 1 and prov["replicas"]["in_sync"]
    history = prov["history"]
    assert all("val_loss" in h for h in history) and prov["exported"].startswith("best validation loss")
    steps = read_metrics(lovt_run.parent / "lovt_tiny.train")
    # 9 training studies / batch 4 = 2 micro-batches per epoch, accumulate 2 -> 1 step per epoch
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1)) and len(steps) == len(history)
    for key in ("global_a2b", "global_b2a", "local_a_l2att", "local_a_att2l", "local_b_l2att", "local_b_att2l"):
        assert all(np.isfinite(r[key]) for r in steps), key
    assert steps[0]["lr"] == pytest.approx(1e-4)  # cosine with T_max = 1 step: epoch 0 starts at lr
    resolved = json.loads((lovt_run / "training" / "resolved.json").read_text())
    assert resolved["world_size"] == 1 and resolved["global_batch"] == 4 and resolved["samples_per_optimizer_step"] == 8
    # BERT embeddings and layer 0 are frozen (freeze_layers=1): equal to the seeded init; layer 1 trained
    config = resolve_config(LoVTConfig, lovt_run / "training" / "config.json")
    init = build_net(config, model.spec.arch_args["text_config"]).text_backbone.state_dict()
    trained = model.net.text_backbone.state_dict()
    for k in ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight"):
        assert torch.equal(init[k], trained[k]), k
    assert not torch.equal(init["encoder.layer.1.attention.self.query.weight"], trained["encoder.layer.1.attention.self.query.weight"])


def test_lovt_bad_inputs_are_named(paired_manifest, tmp_path, capsys):
    from transformers import BertConfig, BertModel

    hf = tmp_path / "hf"
    BertModel(BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(hf, safe_serialization=True)
    vocab = write_test_vocab(tmp_path / "vocab")  # 512 tokens: not the tower's 300 rows
    base = ["train", "lovt", "--data", str(paired_manifest), "--out", str(tmp_path / "o"),
            *[f"--{k}={v}" for k, v in LOVT_TINY.items()]]
    assert main([*base, f"--text_init={hf}", f"--tokenizer={vocab}"]) == 1
    err = capsys.readouterr().err
    assert "has 512 tokens but text_init" in err and "300 rows" in err
    assert main([*base, "--image_preset=vit"]) == 1
    assert "image_preset: must be one of resnet50, tiny" in capsys.readouterr().err
    assert main([*base, "--tokenizer", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err
    missing = tmp_path / "m.csv"
    missing.write_text("image,report\nnope.png,FINDINGS: clear.\n")
    assert main([*base[:2], "--data", str(missing), *base[4:]]) == 1
    assert "no usable image-report pairs (skipped: {'image file missing': 1})" in capsys.readouterr().err
