"""Report knowledge graphs for IGCL: RadGraph entries -> node features -> torch_geometric graphs.

The inference-side pieces that training (``radzoo train igcl``) and ``radzoo.Model.embed_graphs``
share, one place each:

* ``radgraph_entries``: reading and validating RadGraph JSON (``parse_entry`` -> ``ReportGraph``;
  bad entries raise ``RadGraphEntryError``);
* ``node_text``: ``NodeTextTower``, the frozen BERT whose word vectors become node features;
* ``node_feature_cache``: ``NodeFeatureCache``, those features computed once per report;
* ``reaction_nodes``: IGCL's ``AddReactionNodes`` transform;
* ``report_graph_data``: ``graph_data`` (the ``Data`` object IGCL trains on), ``collate_graphs``,
  ``dense_graph_inputs`` (fixed-size padded arrays for the exported ONNX graph encoder);
* ``graph_embedding``: ``embed_graphs`` (what ``Model.embed_graphs`` runs).

Imports are lazy so ``import radzoo`` never pulls in transformers or torch_geometric.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ENTITY_LABELS": "radzoo.graphs.radgraph_entries",
    "RELATIONS": "radzoo.graphs.radgraph_entries",
    "RadGraphEntryError": "radzoo.graphs.radgraph_entries",
    "ReportGraph": "radzoo.graphs.radgraph_entries",
    "parse_entry": "radzoo.graphs.radgraph_entries",
    "read_radgraph": "radzoo.graphs.radgraph_entries",
    "iter_entries": "radzoo.graphs.radgraph_entries",
    "NodeTextTower": "radzoo.graphs.node_text",
    "NodeFeatureCache": "radzoo.graphs.node_feature_cache",
    "add_reaction_nodes": "radzoo.graphs.reaction_nodes",
    "graph_data": "radzoo.graphs.report_graph_data",
    "collate_graphs": "radzoo.graphs.report_graph_data",
    "dense_graph_inputs": "radzoo.graphs.report_graph_data",
    "embed_graphs": "radzoo.graphs.graph_embedding",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'radzoo.graphs' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
