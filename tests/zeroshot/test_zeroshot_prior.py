"""PRIOR zero-shot: the rule of METHODS 3.5 recomputed independently, plus the contract's properties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import radzoo
from radzoo.errors import CapabilityError, InputError
from radzoo.zeroshot.prompts import CHEXPERT5


def _mha_token0(tokens: torch.Tensor, sd: dict, prefix: str, heads: int) -> torch.Tensor:
    """Plain multi-head self-attention over ``tokens`` [n, D] with q/k/v/c_proj weights; token 0 out."""
    n, d = tokens.shape
    hd = d // heads

    def lin(name: str, x: torch.Tensor) -> torch.Tensor:
        return x @ sd[f"{prefix}{name}.weight"].t() + sd[f"{prefix}{name}.bias"]

    q = lin("q_proj", tokens).view(n, heads, hd).transpose(0, 1)
    k = lin("k_proj", tokens).view(n, heads, hd).transpose(0, 1)
    v = lin("v_proj", tokens).view(n, heads, hd).transpose(0, 1)
    att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1)
    out = (att @ v).transpose(0, 1).reshape(n, d)
    return lin("c_proj", out)[0]


def _reference_scores(model, images: list[Path]) -> np.ndarray:
    """PRIOR's zero-shot score P = softmax(G) + 0.5 softmax(S), written from the spec with plain
    torch on the raw parameters (BERT and the ResNet trunk are stock torchvision/transformers)."""
    from transformers import BertTokenizer

    net = model.net
    sd = {k: v.detach().double() for k, v in net.state_dict().items()}
    heads = model.spec.arch_args["pool_heads"]
    length = model.spec.text["max_length"]
    # the originals lower-cased prompts (Bio_ClinicalBERT Hub default, METHODS 0.6)
    tok = BertTokenizer(str(model.assets["tokenizer"] / "vocab.txt"), do_lower_case=True)
    prompts = [f"{c} is observed" for c in CHEXPERT5]

    def linear(name: str, x: torch.Tensor) -> torch.Tensor:
        return x @ sd[f"{name}.weight"].t() + sd[f"{name}.bias"]

    # prompts: BERT -> [:, 1:-1] -> keep mask==1 -> text_proj_local -> mean -> SPB -> text_pool
    g_txt, q_txt = [], []
    for p in prompts:
        enc = tok(p, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = net.text_backbone(**{k: enc[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
        hidden = hidden[0].double()[1:-1]
        keep = enc["attention_mask"][0, 1:-1].bool()
        s = linear("text_proj_local", hidden[keep]).mean(0)
        proto = sd["sentence_bank.embed.weight"]
        q = torch.softmax(s @ proto.t() / 0.9, dim=-1) @ proto
        g = _mha_token0(torch.stack([q, q]), sd, "text_pool.", heads)  # [mean of {q}, q]
        q_txt.append(q)
        g_txt.append(g)
    scale = float(sd["logit_scale"])  # the RAW parameter, as the original zero-shot code (METHODS 3.5)
    batch = model.prepare(images)
    with torch.no_grad():
        trunk = net.image_backbone
        x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(batch))))
        fmap = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(x)))).double()
    out = []
    for b in range(fmap.shape[0]):
        c = fmap.shape[1]
        spatial = fmap[b].reshape(c, -1).t()  # [HW, C], permuted correctly for the attention pool
        tokens = torch.cat([spatial.mean(0, keepdim=True), spatial]) + sd["image_pool.positional_embedding"]
        g_img = linear("image_proj_global", _mha_token0(tokens, sd, "image_pool.", heads))
        local = linear("image_proj_local", fmap[b].reshape(-1).view(-1, c))  # view without permute
        G, S = [], []
        for g, q in zip(g_txt, q_txt, strict=True):
            G.append(scale * float(F.cosine_similarity(g_img, g, dim=0)))
            dim = q.shape[0]
            a_img2txt = torch.sigmoid(linear("local_cross_attention.query1", local) @ linear("local_cross_attention.key2", q) / math.sqrt(dim))
            a_txt2img = torch.sigmoid(linear("local_cross_attention.key1", local) @ linear("local_cross_attention.query2", q) / math.sqrt(dim))
            S.append(float((a_img2txt.mean() + a_txt2img.mean()) / 2))
        G_t, S_t = torch.tensor(G, dtype=torch.float64), torch.tensor(S, dtype=torch.float64)
        out.append((torch.softmax(G_t, 0) + 0.5 * torch.softmax(S_t, 0)).numpy())
    return np.stack(out)


def test_prior_scores_equal_independent_reference(prior_model, nih_images) -> None:
    result = prior_model.zero_shot(nih_images)
    expected = _reference_scores(prior_model, nih_images)
    assert result.rule == "prior-global-local"
    assert result.labels == list(CHEXPERT5)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, expected / 1.5, rtol=1e-4, atol=1e-5)
    assert [r.text for r in result.prompts] == [f"{c} is observed" for c in CHEXPERT5]
    assert result.prompt_scores["global"].shape == (3, 5) and result.prompt_scores["local"].shape == (3, 5)


def test_deterministic_and_single_label_sums_to_one(prior_model, nih_images) -> None:
    a = prior_model.zero_shot(nih_images)
    b = prior_model.zero_shot(nih_images)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    np.testing.assert_allclose(a.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert a.mode == "single-label" and a.prompt_set == "prior-chexpert5@1"
    assert len(a.predictions()) == 3 and set(a.predictions()) <= set(CHEXPERT5)


def test_batch_size_does_not_change_scores(prior_model, nih_images) -> None:
    a = prior_model.zero_shot(nih_images, batch_size=3)
    b = prior_model.zero_shot(nih_images, batch_size=1)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_label_order_invariance(prior_model, nih_images) -> None:
    labels = ["Edema", "Atelectasis", "Pleural Effusion"]
    a = prior_model.zero_shot(nih_images, labels)
    b = prior_model.zero_shot(nih_images, labels[::-1])
    np.testing.assert_allclose(a.probabilities, b.probabilities[:, ::-1], atol=1e-6)


def test_prompt_embeddings_are_cached(prior_model, nih_images) -> None:
    calls = []
    handle = prior_model.net.text_backbone.register_forward_hook(lambda *_: calls.append(1))
    try:
        prior_model.zero_shot(nih_images[:1])
        assert len(calls) == 1
        prior_model.zero_shot(nih_images[1:2])
        assert len(calls) == 1  # reused: the text tower did not run again
        prior_model.zero_shot(nih_images[:1], prompts="{label} is seen")
        assert len(calls) == 2  # other words, new embeddings
    finally:
        handle.remove()
    keys = [k for k in prior_model._cache if isinstance(k, tuple) and k[0] == "zero_shot.prompts"]
    assert any(k[2] == "prior-chexpert5@1" for k in keys)


def test_multi_label_mode(prior_model, nih_images) -> None:
    r = prior_model.zero_shot(nih_images, ["Edema", "Cardiomegaly"], mode="multi-label")
    assert r.mode == "multi-label" and r.probabilities.shape == (3, 2)
    assert ((r.probabilities > 0) & (r.probabilities < 1)).all()
    assert {(p.label, p.polarity) for p in r.prompts} == {
        ("Edema", "positive"), ("Edema", "negative"), ("Cardiomegaly", "positive"), ("Cardiomegaly", "negative")
    }
    # each label's probability depends on its own pair only
    alone = prior_model.zero_shot(nih_images, ["Edema"], mode="multi-label")
    np.testing.assert_allclose(alone.probabilities[:, 0], r.probabilities[:, 0], atol=1e-6)


def test_user_prompts_mapping_and_stochastic_mode(prior_model, nih_images) -> None:
    prompts = {"Edema": ["Edema is observed", "edema"], "Cardiomegaly": "Cardiomegaly is observed"}
    r = prior_model.zero_shot(nih_images, ["Edema", "Cardiomegaly"], prompts)
    assert r.prompt_set == "user-prompts@0" and len(r.prompts) == 3
    s1 = prior_model.zero_shot(nih_images, seed=1)
    s1b = prior_model.zero_shot(nih_images, seed=1)
    s2 = prior_model.zero_shot(nih_images, seed=2)
    det = prior_model.zero_shot(nih_images)
    np.testing.assert_array_equal(s1.probabilities, s1b.probabilities)
    assert not np.allclose(s1.probabilities, s2.probabilities)
    assert not np.allclose(s1.probabilities, det.probabilities)


def test_overlong_prompt_is_truncated_and_reported(prior_model, nih_images) -> None:
    long = "Edema is observed " + "with mild opacity " * 20
    r = prior_model.zero_shot(nih_images[:1], ["Edema", "Atelectasis"], {"Edema": long, "Atelectasis": "Atelectasis is observed"})
    assert len(r.truncated) == 1 and "truncated to the maximum length 32" in r.truncated[0]
    assert np.isfinite(r.probabilities).all()


@pytest.mark.parametrize(
    ("labels", "prompts", "mode", "message"),
    [
        ([], None, None, "empty"),
        (["Edema", "edema"], None, None, "duplicate labels"),
        (["Edema"], None, "single-label", "at least two labels"),
        ("Edema", None, None, "single string"),
        (["Edema", "Mass"], {"Edema": "Edema is observed"}, None, "no prompt for label 'Mass'"),
        (["Edema", "Atelectasis"], "nope", None, "unknown prompt set"),
        (["Edema", "Atelectasis"], "prior-chexpert5@7", None, "version 1, not 7"),
        (["Edema", "Atelectasis"], {"Edema": "x is y", "Atelectasis": "x is y"}, None, "several labels"),
        (["Edema", "Atelectasis"], None, "both", "mode must be"),
    ],
)
def test_bad_labels_and_prompts(prior_model, nih_images, labels, prompts, mode, message) -> None:
    from radzoo.zeroshot.prompts import PromptSet  # noqa: F401  (mapping/str forms are exercised)

    with pytest.raises(InputError, match=message):
        prior_model.zero_shot(nih_images[:1], labels, prompts, mode=mode)


def test_no_images(prior_model) -> None:
    with pytest.raises(InputError, match="no images"):
        prior_model.zero_shot([])


def test_non_cxr_input_is_refused(prior_model, shared_data: Path) -> None:
    ct = shared_data / "dicom" / "ct_chest_CT1_rle.dcm"
    with pytest.raises(InputError, match="not a radiograph"):
        prior_model.zero_shot([ct])
    with pytest.raises(InputError, match="colour"):
        prior_model.zero_shot([np.stack([np.zeros((8, 8)), np.ones((8, 8)), np.zeros((8, 8))], -1).astype(np.uint8)])


def test_models_without_text_tower_say_so(vocab_dir: Path) -> None:
    from radzoo.zoo.tiny import tiny_specs

    igcl = radzoo.build(tiny_specs()["tiny-random-igcl"])
    with pytest.raises(CapabilityError, match="RadGraph graph prompt"):
        igcl.zero_shot([np.zeros((64, 64), np.uint8)], ["Edema", "Atelectasis"])
    moco = radzoo.build(tiny_specs()["tiny-random-mococxr"])
    with pytest.raises(CapabilityError, match="image-only"):
        moco.ground(np.zeros((64, 64), np.uint8), "Edema")
    image_only = tiny_specs()["tiny-random-prior"].with_(
        name="tiny-prior-image-only", arch_args={"trunk": "resnet18", "in_chans": 1, "image_only": True},
        outputs={"trunk": 512}, default_output="trunk",
    )
    with pytest.raises(CapabilityError, match="no text tower"):
        radzoo.build(image_only).zero_shot([np.zeros((64, 64), np.uint8)], ["Edema", "Atelectasis"])


def test_missing_tokenizer_is_a_clear_error(tmp_path) -> None:
    """Random-weight builds get a generated tokenizer; a loaded artifact without one fails clearly."""
    import shutil

    from radzoo import zoo
    from radzoo.zoo.tiny import tiny_specs

    model = radzoo.build(tiny_specs()["tiny-random-prior"])  # no tokenizer=: a generated one
    assert model.config["tokenizer"]["generated"] is True
    shutil.rmtree(zoo.save(model, tmp_path / "art") / "tokenizer")
    with pytest.raises(CapabilityError, match="no tokenizer"):
        radzoo.load(tmp_path / "art").zero_shot([np.zeros((64, 64), np.uint8)])
