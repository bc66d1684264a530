"""IGCL report-graph embeddings for inference: RadGraph entries -> 768-d vectors in the joint space.

The path is the training path (``parse_entry`` -> node text features from the artifact's frozen
BERT -> ``graph_data`` with reaction nodes -> ``IGCLNet.encode_graph``), with one choice made for
inference: by default padding nodes are kept out of the transformer's attention, so each graph's
embedding does not depend on which other graphs share its batch (it equals the original's
embedding of the graph on its own). ``pad_to=N`` reproduces the original's training-time effect of
a batch whose largest graph has ``N`` nodes. On the ONNX runtime (an artifact exported with
``radzoo export``) the padded ``graph_global`` graph runs instead of torch, for batches that fit
its node count.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radzoo.errors import ArtifactError, CapabilityError, InputError
from radzoo.graphs.node_text import NodeTextTower
from radzoo.graphs.radgraph_entries import ENTITY_LABELS, iter_entries, parse_entry
from radzoo.graphs.report_graph_data import collate_graphs, dense_graph_inputs, graph_data

log = logging.getLogger(__name__)

#: Where an IGCL artifact keeps its node-feature BERT (``radzoo.zoo.artifact.CARRIED_DIRS``).
NODE_TEXT_DIR = "graph_text"


def node_text_tower(model: Any, text_tower: NodeTextTower | str | os.PathLike[str] | None = None) -> NodeTextTower:
    """The model's node-feature tower (cached on the model), or ``text_tower`` when given."""
    if isinstance(text_tower, NodeTextTower):
        tower = text_tower
    elif text_tower is not None:
        tower = NodeTextTower.from_dir(Path(text_tower), device=model.device)
    else:
        cached = model._cache.get("node_text_tower")
        if cached is not None:
            return cached
        path = model.assets.get(NODE_TEXT_DIR)
        if path is None:
            raise CapabilityError(
                f"model {model.name!r} carries no node-feature text tower ({NODE_TEXT_DIR}/ in its artifact), so it "
                "cannot turn RadGraph entries into node features; pass text_tower=DIR (the BERT it was trained "
                "with, e.g. bert-base-uncased) or use an artifact written by `radzoo train igcl`"
            )
        tower = NodeTextTower.from_dir(Path(path), device=model.device)
    expected = int(model.spec.arch_args.get("node_features", 0))
    if tower.hidden_size + len(ENTITY_LABELS) != expected:
        raise ArtifactError(
            f"node-feature text tower {tower.source} is {tower.hidden_size} wide; model {model.name!r} expects "
            f"{expected} node features = {expected - len(ENTITY_LABELS)} text + {len(ENTITY_LABELS)} label"
        )
    if text_tower is None:
        model._cache["node_text_tower"] = tower
    return tower


def embed_graphs(
    model: Any,
    entries: Any,
    *,
    batch_size: int = 16,
    pad_to: int | None = None,
    text_tower: NodeTextTower | str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """float32 ``(N, embed_dim)`` graph embeddings of RadGraph entries, in the entries' order.

    ``entries``: ``{report_id: entry}``, a list of entries, one entry, or a RadGraph JSON path.
    A bad entry raises ``RadGraphEntryError`` naming it (nothing is silently dropped here).
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if pad_to is not None and pad_to < 1:
        raise InputError(f"pad_to must be >= 1, got {pad_to}")
    tower = node_text_tower(model, text_tower)
    graphs = [parse_entry(rid, entry) for rid, entry in iter_entries(entries)]
    if not graphs:
        raise InputError("no RadGraph entries given")
    datas = [graph_data(g, tower.span_features(g)) for g in graphs]
    if pad_to is not None:
        largest = max(int(d.num_nodes) for d in datas)
        if pad_to < largest:
            raise InputError(f"pad_to={pad_to} is smaller than the largest graph ({largest} nodes incl. dummy/reaction nodes)")
    runtime = model.runtime
    exported = getattr(runtime, "graphs", {}).get("graph_global") if getattr(runtime, "name", "") == "onnx" else None
    if exported is None:
        return encode_graph_batches(model.net, datas, model.device, batch_size=batch_size, pad_to=pad_to)
    max_nodes = int(exported["inputs"]["x"][1])
    chunks = []
    for start in range(0, len(datas), batch_size):
        chunk = datas[start : start + batch_size]
        if max(int(d.num_nodes) for d in chunk) > max_nodes or (pad_to or 0) > max_nodes:
            log.info("report graphs over the exported %d nodes: this batch runs on torch", max_nodes)
            chunks.append(encode_graph_batches(model.net, chunk, model.device, batch_size=batch_size, pad_to=pad_to))
        else:
            chunks.append(runtime.encode_report_graphs(*dense_graph_inputs(chunk, max_nodes, pad_to)))
    return np.concatenate(chunks, axis=0).astype(np.float32, copy=False)


def encode_graph_batches(
    net: torch.nn.Module,
    datas: Sequence[Any],
    device: torch.device,
    *,
    batch_size: int = 16,
    pad_to: int | None = None,
) -> np.ndarray:
    """``IGCLNet.encode_graph`` over ``datas`` in batches (masked padding unless ``pad_to``)."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(datas), batch_size):
            batch = collate_graphs(datas[start : start + batch_size]).to(device)
            out = net.encode_graph(
                batch.x, batch.edge_index, batch.edge_type, batch.batch,
                mask_padding=pad_to is None, pad_to=pad_to,
            )
            chunks.append(out.float().cpu().numpy())
    return np.concatenate(chunks, axis=0)
