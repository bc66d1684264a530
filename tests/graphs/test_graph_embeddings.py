"""Node-feature cache, ``Model.embed_graphs`` and the padded ONNX graph encoder (tiny IGCL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import radzoo
from conftest import HAND_ENTRY
from radzoo import zoo
from radzoo.errors import ArtifactError, CapabilityError
from radzoo.graphs import (
    NodeFeatureCache,
    RadGraphEntryError,
    collate_graphs,
    graph_data,
    parse_entry,
)


def test_feature_cache_builds_once_and_refuses_another_tower(tower, vocab_dir, derived_entries, tmp_path: Path) -> None:
    from radzoo.graphs import NodeTextTower
    from radzoo.zoo.tiny import TINY_NODE_TEXT_CONFIG

    graphs = [parse_entry(k, v) for k, v in derived_entries.items()][:6]
    cache = NodeFeatureCache.for_tower(tmp_path / "c", tower)
    assert cache.build(graphs, tower, shard_size=4) == {"cached": 0, "computed": 6, "failed": 0}
    assert sorted(p.name for p in (tmp_path / "c").glob("shard-*")) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    again = NodeFeatureCache.for_tower(tmp_path / "c", tower)
    assert again.build(graphs, tower) == {"cached": 6, "computed": 0, "failed": 0}
    torch.testing.assert_close(again.get(graphs[3].report_id), tower.span_features(graphs[3]))
    # a changed report (other spans) is recomputed, the others are kept
    changed = parse_entry(graphs[0].report_id, {**derived_entries[graphs[0].report_id], "text": "x " + graphs[0].text})
    assert again.build([changed, *graphs[1:]], tower) == {"cached": 5, "computed": 1, "failed": 0}
    other = NodeTextTower.random(TINY_NODE_TEXT_CONFIG, vocab_dir, seed=6)
    with pytest.raises(ArtifactError, match="computed with another text tower"):
        NodeFeatureCache.for_tower(tmp_path / "c", other)


def test_interrupted_cache_build_leaves_no_corrupt_cache(tower, derived_entries, tmp_path: Path) -> None:
    graphs = [parse_entry(k, v) for k, v in derived_entries.items()][:3]
    cache = NodeFeatureCache.for_tower(tmp_path / "c", tower)
    cache.build(graphs[:2], tower)
    manifest = (tmp_path / "c" / "manifest.json").read_text()
    # a crash after the shard was written but before the manifest was replaced
    (tmp_path / "c" / "shard-00001.safetensors").write_bytes(b"half a shard")
    (tmp_path / "c" / "shard-00002.safetensors.tmp").write_bytes(b"partial")
    reopened = NodeFeatureCache.for_tower(tmp_path / "c", tower)
    assert (tmp_path / "c" / "manifest.json").read_text() == manifest
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["manifest.json", "shard-00000.safetensors"]
    assert len(reopened) == 2 and graphs[2].report_id not in reopened
    assert reopened.build(graphs, tower)["computed"] == 1


def test_embed_graphs_is_batch_independent_and_pad_to_reproduces_the_original(igcl_model, tower, derived_entries) -> None:
    ids = list(derived_entries)
    emb = igcl_model.embed_graphs(derived_entries, text_tower=tower, batch_size=5)
    assert emb.shape == (len(ids), 32) and emb.dtype == np.float32 and np.isfinite(emb).all()
    # each graph's embedding equals the original encoder on that graph alone (no padding at all)
    net = igcl_model.net
    datas = [graph_data(parse_entry(k, v), tower.span_features(parse_entry(k, v))) for k, v in derived_entries.items()]
    with torch.inference_mode():
        for i in (0, 7):
            b = collate_graphs([datas[i]])
            alone = net.encode_graph(b.x, b.edge_index, b.edge_type, b.batch).numpy()[0]
            np.testing.assert_allclose(emb[i], alone, atol=1e-5)
        # pad_to = the batch's largest graph equals the original's unmasked batch encoding
        b = collate_graphs(datas)
        batch_effect = net.encode_graph(b.x, b.edge_index, b.edge_type, b.batch).numpy()
    largest = max(int(d.num_nodes) for d in datas)
    padded = igcl_model.embed_graphs(derived_entries, text_tower=tower, pad_to=largest, batch_size=3)
    np.testing.assert_allclose(padded, batch_effect, atol=1e-5)
    assert np.abs(padded - emb).max() > 1e-4  # the padding effect is real: the two modes differ
    # order follows the entries; a list of entries works too
    single = igcl_model.embed_graphs([derived_entries[ids[4]]], text_tower=tower)
    np.testing.assert_allclose(single[0], emb[4], atol=1e-5)


def test_embed_graphs_errors(igcl_model, tower) -> None:
    with pytest.raises(RadGraphEntryError, match="'broken'.*no entities"):
        igcl_model.embed_graphs({"ok": HAND_ENTRY, "broken": {"text": "x", "entities": {}}}, text_tower=tower)
    with pytest.raises(CapabilityError, match="no node-feature text tower"):
        igcl_model.embed_graphs({"ok": HAND_ENTRY})
    from radzoo.zoo.tiny import tiny_specs

    other = radzoo.build(tiny_specs()["tiny-random-mococxr"])
    with pytest.raises(CapabilityError, match="report graphs need IGCL's graph tower"):
        other.embed_graphs({"ok": HAND_ENTRY}, text_tower=tower)


@pytest.fixture(scope="module")
def exported_igcl(igcl_model, tower, tmp_path_factory) -> Path:
    from radzoo.artifacts import export_artifact
    from radzoo.zoo.golden import compute_golden

    root = tmp_path_factory.mktemp("igcl_onnx")
    igcl_model.assets["graph_text"] = tower.save(root / "tower")
    try:
        directory = zoo.save(igcl_model, root / "igcl", sections={"golden": compute_golden(igcl_model)})
    finally:
        del igcl_model.assets["graph_text"]
    export_artifact(directory)
    return directory


def test_artifact_carries_the_node_text_tower_and_onnx_matches_torch(exported_igcl: Path, tower, derived_entries) -> None:
    config = json.loads((exported_igcl / "config.json").read_text())
    entry = config["onnx"]["graphs"]["graph_global"]
    assert entry["kind"] == "graph" and entry["inputs"]["x"] == ["batch", 128, 20]
    assert entry["parity_max_abs_diff"] < 1e-4
    torch_model = radzoo.load(exported_igcl, runtime="torch")
    onnx_model = radzoo.load(exported_igcl, runtime="onnx")
    assert onnx_model.runtime.name == "onnx"
    from radzoo.graphs.graph_embedding import node_text_tower

    assert node_text_tower(torch_model).digest() == tower.digest()  # the tower travelled with the weights
    a = torch_model.embed_graphs(derived_entries)
    b = onnx_model.embed_graphs(derived_entries)
    np.testing.assert_allclose(a, b, atol=1e-4)
    a = torch_model.embed_graphs(derived_entries, pad_to=60)
    b = onnx_model.embed_graphs(derived_entries, pad_to=60)
    np.testing.assert_allclose(a, b, atol=1e-4)
    # verify re-checks the graph encoder against torch
    from radzoo.artifacts import verify_artifact

    report = verify_artifact(exported_igcl)
    assert any(c.target.startswith("graph_global") and c.passed for c in report.checks), report.format()


def test_onnx_parity_inputs_have_teeth(igcl_model) -> None:
    """The second parity set (the original's padding to 17 nodes) fails a wrapper that masks it."""
    from radzoo.onnx.graphs import IGCLGraphDense, graph_defs

    graph = next(d for d in graph_defs(igcl_model) if d.name == "graph_global")
    wrapper = IGCLGraphDense(igcl_model.net)
    own, padded = graph.parity_inputs
    x, adj, node, attend = (torch.from_numpy(a) for a in padded)
    assert not torch.equal(attend, node)
    with torch.inference_mode():
        ref = wrapper.reference(x, adj, node, attend)
        assert (wrapper(x, adj, node, attend) - ref).abs().max() < 1e-5
        assert (wrapper(x, adj, node, node) - ref).abs().max() > 1e-4
