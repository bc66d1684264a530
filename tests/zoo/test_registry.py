"""Every registered model builds offline on CPU and gives outputs of the declared shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import radzoo
from radzoo import zoo
from radzoo.errors import ModelNotFoundError
from radzoo.nets import build_net
from radzoo.zoo.golden import input_shape
from radzoo.zoo.spec import ModelSpec
from radzoo.zoo.tiny import tiny_specs

REGISTRY = zoo.list_models()


def test_registry_holds_the_initial_models() -> None:
    for name in [
        "mococxr_resnet18",
        "mococxr_resnet50",
        "mococxr_densenet121",
        "prior_resnet50",
        "lovt_resnet50",
        "igcl_vitb32",
        "graphct_copdgene",
    ]:
        assert name in REGISTRY


@pytest.mark.parametrize("name", REGISTRY)
def test_spec_is_pure_data_and_round_trips_json(name: str) -> None:
    spec = zoo.get_spec(name)
    data = json.loads(json.dumps(spec.to_dict()))
    assert ModelSpec.from_dict(data) == spec
    assert spec.license and spec.citation.startswith("@") and spec.paper_url.startswith("https://")
    assert spec.default_output in spec.outputs


@pytest.mark.parametrize("name", REGISTRY)
def test_every_model_builds_and_gives_declared_shapes(name: str) -> None:
    spec = zoo.get_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_net(spec.arch, spec.arch_args).eval()
    if spec.modality == "ct":
        patches = torch.rand(6, 1, 32, 32, 32) * 2 - 1
        edges = torch.tensor([[0, 1, 2, 3, 4, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0, 1, 2, 3, 4]])
        with torch.inference_mode():
            out = net(patches, edges)
        assert out["patch"].shape == (6, spec.outputs["patch"])
        assert out["node"].shape == (6, spec.outputs["node"])
        assert out["subject"].shape == (spec.outputs["subject"],)
        return
    # Full-size nets on their real input size; a batch of 1 keeps CPU time small.
    x = torch.randn(1, *input_shape(spec.preprocess))
    with torch.inference_mode():
        for output, dim in spec.outputs.items():
            y = net.image_features(x, output)
            assert y.shape == (1, dim), (output, y.shape)
            assert torch.isfinite(y).all()
    assert set(net.image_outputs) == set(spec.outputs)


@pytest.mark.parametrize("name", sorted(tiny_specs()))
def test_tiny_models_embed_real_pngs(name: str, shared_data) -> None:
    spec = tiny_specs()[name]
    model = radzoo.build(spec)
    assert model.random_init
    if spec.modality == "ct":
        return
    images = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[:3]
    for output, dim in spec.outputs.items():
        emb = model.embed(images, output=output)
        assert emb.shape == (3, dim) and emb.dtype == np.float32
        assert np.isfinite(emb).all()


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ModelNotFoundError, match="Did you mean 'mococxr_resnet50'"):
        zoo.get_spec("mococxr_resnet5")
    with pytest.raises(ModelNotFoundError, match="Known models"):
        radzoo.load("no-such-model-anywhere")


def test_build_is_seeded_and_marked_random() -> None:
    spec = tiny_specs()["tiny-random-mococxr"]
    a, b, c = radzoo.build(spec, seed=1), radzoo.build(spec, seed=1), radzoo.build(spec, seed=2)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert np.array_equal(a.embed_batch(x), b.embed_batch(x))
    assert not np.array_equal(a.embed_batch(x), c.embed_batch(x))
    assert a.random_init and "random" in repr(a)


# ---- output widths and capabilities: one source each, checked against the nets -------------------

ALL_SPECS = {**{n: zoo.get_spec(n) for n in REGISTRY}, **tiny_specs()}


@pytest.fixture(scope="module")
def nets() -> dict:
    with torch.random.fork_rng(devices=[]):
        return {name: build_net(spec.arch, spec.arch_args) for name, spec in ALL_SPECS.items()}


@pytest.mark.parametrize("name", sorted(ALL_SPECS))
def test_declared_outputs_equal_the_nets_widths(name: str, nets) -> None:
    spec, net = ALL_SPECS[name], nets[name]
    assert dict(spec.outputs) == net.output_widths
    if "embed" in spec.capabilities:  # 2D outputs are computed, not only declared
        x = torch.zeros(1, *input_shape(spec.preprocess))
        with torch.inference_mode():
            for output, width in spec.outputs.items():
                assert net.eval().image_features(x, output).shape == (1, width)


@pytest.mark.parametrize("name", sorted(ALL_SPECS))
def test_capabilities_match_what_the_net_has(name: str, nets) -> None:
    spec, net = ALL_SPECS[name], nets[name]
    caps = spec.capabilities
    assert ("embed" in caps) == bool(net.image_outputs)
    assert ("text" in caps) == ("zero_shot" in caps) == ("ground" in caps) == bool(net.has_text)
    assert ("ct" in caps) == hasattr(net, "encode_patches")
    assert ("graph" in caps) == bool(net.has_graph_tower)
    assert caps <= set(zoo.CAPABILITIES)


def test_a_spec_whose_outputs_disagree_with_the_net_is_refused() -> None:
    from radzoo.errors import ArtifactError

    spec = zoo.get_spec("mococxr_resnet18")
    with pytest.raises(ArtifactError, match=r"spec lists outputs \{'trunk': 2048\}.*produces \{'trunk': 512\}"):
        radzoo.build(spec.with_(outputs={"trunk": 2048}))


def test_capability_errors_name_what_the_model_offers() -> None:
    from radzoo.errors import CapabilityError

    with pytest.raises(CapabilityError, match=r"cannot do zero-shot.*it offers: embed"):
        zoo.get_spec("mococxr_resnet18").require("zero_shot", "zero-shot")
