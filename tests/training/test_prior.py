"""PRIOR end to end on real NIH images with reports DERIVED FROM THEIR LABELS (tiny towers, CPU):
three stages with a new optimiser per stage; a run stopped mid-stage and resumed equals an
uninterrupted one; the artifact loads strictly, embeds and scores zero-shot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import radzoo
from radzoo.training.hparams import PriorConfig, resolve_config
from radzoo.training.methods.prior_pretraining import gather_sentences, stage_phases, train_prior
from radzoo.training.resume import read_training_meta
from radzoo.training.run_log import read_metrics
from radzoo.zoo.instantiate import instantiate
from radzoo.zoo.tiny import write_test_vocab

from .conftest import TINY_PAIRED

PRIOR_TINY = {**TINY_PAIRED, "decoder_layers": "2", "spb_k": "16", "pool_heads": "2", "stage1_epochs": "1",
              "stage2_epochs": "1", "stage3_epochs": "1", "stage3_warmup_epochs": "1"}


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    """A fixed tokenizer directory: a trained WordPiece vocabulary is not bit-reproducible (the
    tokenizers library breaks frequency ties in hash order), and the resume test compares two runs."""
    return write_test_vocab(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def prior_full(paired_manifest, vocab, tmp_path_factory):
    config = resolve_config(PriorConfig, None, {**PRIOR_TINY, "tokenizer": str(vocab)})
    out = tmp_path_factory.mktemp("prior") / "prior_tiny"
    train_prior(config, paired_manifest, out)
    return out


def test_prior_artifact_loads_strictly_embeds_and_scores(prior_full, nih_paths):
    model = radzoo.load(prior_full, device="cpu")
    assert model.spec.name == "prior_tiny" and model.outputs == {"trunk": 512, "pooled": 512, "global": 128}
    keys = set(load_file(str(prior_full / "model.safetensors")))
    assert keys == set(instantiate(model.spec).state_dict())
    assert not any(k.startswith(("sentence_decoder", "image_decoder", "predictor", "prototype_queries")) for k in keys)
    emb = model.embed([str(p) for p in nih_paths[:2]])
    assert emb.shape == (2, 128) and np.isfinite(emb).all()
    res = model.zero_shot([str(p) for p in nih_paths[:2]], ["Atelectasis", "Cardiomegaly", "Edema"])
    assert res.rule == "prior-global-local" and np.allclose(res.probabilities.sum(1), 1.0)
    assert model.config["zero_shot"]["default_prompt_set"] == "prior-chexpert5"
    prov = model.config["provenance"]
    assert prov["stages"] == ["stage1", "stage2", "stage3"] and prov["steps"] == 6
    steps = read_metrics(prior_full.parent / "prior_tiny.train")
    assert [r["phase"] for r in steps] == ["stage1"] * 2 + ["stage2"] * 2 + ["stage3"] * 2
    assert {"spg_loss", "kl_loss", "gpa_loss", "rec_image_loss", "proto_loss"} <= set(steps[-1])
    assert "proto_loss" in steps[2] and "spg_loss" not in steps[2]
    # each stage restarts its warm-up from its own start lr (a new schedule per stage)
    assert [r["lr"] for r in steps] == pytest.approx([1e-7, 1e-5, 1e-7, 1e-5, 1e-8, 5e-6])


def test_prior_resumed_mid_stage_equals_uninterrupted(prior_full, paired_manifest, vocab, tmp_path):
    out = tmp_path / "prior_tiny"
    first = resolve_config(PriorConfig, None, {**PRIOR_TINY, "tokenizer": str(vocab), "max_steps": "3"})
    train_prior(first, paired_manifest, out)
    meta = read_training_meta(tmp_path / "prior_tiny.train")
    loop = meta["loop"]
    assert (loop["phase"], loop["phase_step"], loop["epoch"], loop["step"]) == ("stage2", 1, 1, 3)
    # the stage-2 optimiser is new: its AdamW state has taken exactly one step
    from safetensors.torch import load_file as lf

    state = lf(str(tmp_path / "prior_tiny.train" / meta["tensors_file"]))
    assert {float(v) for k, v in state.items() if k.endswith(".step")} == {1.0}
    full = resolve_config(PriorConfig, None, {**PRIOR_TINY, "tokenizer": str(vocab)})
    train_prior(full, paired_manifest, out, resume=True)
    resumed = load_file(str(out / "model.safetensors"))
    straight = load_file(str(prior_full / "model.safetensors"))
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=1e-5, atol=1e-6, msg=k)
    steps = read_metrics(tmp_path / "prior_tiny.train")
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6] and steps[3]["lr"] == pytest.approx(1e-5)
    prov = json.loads((out / "config.json").read_text())["provenance"]
    assert prov["steps"] == 6


def test_prior_stage_schedules_and_sentence_gather():
    config = resolve_config(PriorConfig, None, {**PRIOR_TINY, "stage2_epochs": "0"})
    phases = stage_phases(config, steps_per_epoch=4)
    assert [p.name for p in phases] == ["stage1", "stage3"]  # a stage with no epochs is skipped
    p1 = phases[0]
    assert p1.lr_at(0, 0) == pytest.approx(1e-7) and p1.lr_at(3, 0) == pytest.approx(1e-5)
    opt_a = p1.make_optimizer([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt_a, torch.optim.AdamW) and opt_a.defaults["weight_decay"] == 1e-6
    # SentenceGather('avg'): token vectors averaged per 1-based sentence index; -1 ignored
    tokens = torch.arange(12, dtype=torch.float32).view(1, 6, 2)
    index = torch.tensor([[-1, 1, 1, 2, 2, -1]])
    sentences, mask = gather_sentences(tokens, index)
    torch.testing.assert_close(sentences, torch.tensor([[[3.0, 4.0], [7.0, 8.0]]]))
    assert mask.tolist() == [[True, True]]
    two = gather_sentences(torch.ones(2, 4, 1), torch.tensor([[1, 2, 3, -1], [1, 1, -1, -1]]))
    assert two[1].tolist() == [[True, True, True], [True, False, False]]
