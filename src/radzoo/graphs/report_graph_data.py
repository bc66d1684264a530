"""Report graphs as tensors: torch_geometric ``Data`` for the RGCN, dense padded arrays for ONNX.

``graph_data`` builds what IGCL's data set hands its graph encoder (rajpurkarlab/IGCL:
src/radgraph_tu.py + the ``reaction`` graph transform): node features ``[text features | label
one-hot (4)]`` (772 = 768 + 4 with bert-base), edges with a relation one-hot, then
``add_reaction_nodes`` (edge one-hot widened to 4, dummy and reaction nodes when needed).

``dense_graph_inputs`` lays a list of such graphs out on a fixed node count for the exported
ONNX graph encoder: features ``[B, N, F]``, a per-relation edge-count adjacency ``[B, R, N, N]``
(``A[b, r, i, j]`` = edges j -> i of type r, what RGCN's per-relation mean aggregates), the mask
of real nodes and the mask of positions that take part in attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from radzoo.errors import InputError
from radzoo.graphs.radgraph_entries import ENTITY_LABELS, NUM_EDGE_TYPES, RELATIONS, ReportGraph
from radzoo.graphs.reaction_nodes import add_reaction_nodes


def graph_data(graph: ReportGraph, text_features: torch.Tensor) -> Data:
    """The IGCL graph of one report from its node text features ``[num_nodes, H]``."""
    text_features = torch.as_tensor(text_features, dtype=torch.float32)
    if text_features.ndim != 2 or text_features.shape[0] != graph.num_nodes:
        raise InputError(
            f"report {graph.report_id!r}: node text features have shape {tuple(text_features.shape)}, "
            f"expected [{graph.num_nodes}, H]"
        )
    labels = torch.nn.functional.one_hot(torch.tensor(graph.labels), len(ENTITY_LABELS)).float()
    x = torch.cat([text_features, labels], dim=1)
    if graph.edges:
        edges = torch.tensor(graph.edges, dtype=torch.long)
        edge_index = edges[:, :2].t().contiguous()
        edge_attr = torch.nn.functional.one_hot(edges[:, 2], len(RELATIONS)).float()
    else:
        edge_index = torch.zeros(2, 0, dtype=torch.long)
        edge_attr = torch.zeros(0, len(RELATIONS))
    data = Data(x=x, edge_index=edge_index, edge_attr=edge_attr, num_nodes=graph.num_nodes)
    out = add_reaction_nodes(data)
    out.report_id = graph.report_id
    return out


def collate_graphs(graphs: Sequence[Data]) -> Batch:
    """One ``Batch`` (``x``, ``edge_index``, ``edge_type``, ``batch``) of IGCL graphs."""
    if not graphs:
        raise InputError("no report graphs given")
    return Batch.from_data_list(list(graphs))


def dense_graph_inputs(
    graphs: Sequence[Data], max_nodes: int, pad_to: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x [B, N, F], adjacency [B, R, N, N], node_mask [B, N], attend_mask [B, N])`` float32 with
    ``N = max_nodes``.

    ``attend_mask`` marks the positions that take part in attention: the real nodes of each graph
    (each graph's embedding independent of its batch), or, with ``pad_to``, the first ``pad_to``
    positions, so that zero padding nodes take part as in a training batch of IGCL whose largest
    graph had ``pad_to`` nodes.
    """
    if not graphs:
        raise InputError("no report graphs given")
    sizes = [int(g.num_nodes) for g in graphs]
    largest = max(sizes)
    if largest > max_nodes:
        worst = sizes.index(largest)
        rid = getattr(graphs[worst], "report_id", worst)
        raise InputError(
            f"report graph {rid!r} has {largest} nodes (with dummy/reaction nodes); the exported graph encoder "
            f"takes at most {max_nodes}: use the torch runtime or export with a larger max node count"
        )
    if pad_to is not None and not largest <= pad_to <= max_nodes:
        raise InputError(f"pad_to must lie between the largest graph ({largest}) and max_nodes ({max_nodes}), got {pad_to}")
    feat = int(graphs[0].x.shape[1])
    b = len(graphs)
    x = np.zeros((b, max_nodes, feat), dtype=np.float32)
    adj = np.zeros((b, NUM_EDGE_TYPES, max_nodes, max_nodes), dtype=np.float32)
    node_mask = np.zeros((b, max_nodes), dtype=np.float32)
    attend = np.zeros((b, max_nodes), dtype=np.float32)
    for i, g in enumerate(graphs):
        n = sizes[i]
        x[i, :n] = g.x.detach().cpu().numpy()
        src, dst = g.edge_index.cpu().numpy()
        np.add.at(adj[i], (g.edge_type.cpu().numpy(), dst, src), 1.0)
        node_mask[i, :n] = 1.0
        attend[i, : (pad_to if pad_to is not None else n)] = 1.0
    return x, adj, node_mask, attend
