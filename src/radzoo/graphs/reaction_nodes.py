"""IGCL's ``AddReactionNodes`` transform (rajpurkarlab/IGCL: src/training/add_reaction_node.py).

Borrowed from DRACON (reaction graphs of disconnected molecules): a report graph whose entities
fall apart into several pieces gets one zero-feature *dummy* node per connected component and
one zero-feature *reaction* node, joined by edges of a fourth type so that message passing can
cross components. Exactly as the original:

1. the edge one-hot always gains a 4th (zero) column;
2. nothing else happens unless the graph has an isolated node (a node on no edge);
3. nothing else happens if the graph is one connected component (a single isolated node);
4. otherwise: dummy node ``n + c`` for component ``c`` (components in order of their lowest
   node, as the original's DFS finds them), edges ``node <-> dummy`` for every node of the
   component, then the reaction node ``n + C`` with ``reaction <-> dummy`` for every component;
   each pair is added in both directions with the one-hot ``[0, 0, 0, 1]``.

Only the order in which the edges of one component are listed can differ from the original
(its adjacency lists are Python sets of tensors); message passing sums over edges, so that order
changes nothing but float rounding.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Data


def connected_components(num_nodes: int, edge_index: torch.Tensor) -> list[list[int]]:
    """Components of the undirected view of ``edge_index``, each listed in DFS order from its
    lowest node, components ordered by their lowest node."""
    adj: list[set[int]] = [set() for _ in range(num_nodes)]
    for head, tail in edge_index.t().tolist():
        adj[head].add(tail)
        adj[tail].add(head)
    seen = [False] * num_nodes
    components = []
    for start in range(num_nodes):
        if seen[start]:
            continue
        order, stack = [], [start]
        while stack:
            node = stack.pop()
            if seen[node]:
                continue
            seen[node] = True
            order.append(node)
            stack.extend(sorted(adj[node] - {node}, reverse=True))
        components.append(order)
    return components


def has_isolated_nodes(num_nodes: int, edge_index: torch.Tensor) -> bool:
    """Whether a node lies on no edge (self-loops do not count), like PyG's ``contains_isolated_nodes``."""
    keep = edge_index[0] != edge_index[1]
    touched = torch.zeros(num_nodes, dtype=torch.bool)
    touched[edge_index[:, keep].reshape(-1)] = True
    return not bool(touched.all())


def add_reaction_nodes(data: Data) -> Data:
    """A new ``Data`` with the 4th edge-type column and, when needed, dummy + reaction nodes.

    ``data`` needs ``x [n, F]``, ``edge_index [2, E]`` and ``edge_attr [E, 3]`` (relation one-hot);
    other attributes are copied. ``edge_type`` (argmax of the one-hot, what RGCN uses) is set too.
    """
    x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
    n = x.shape[0]
    edge_attr = torch.cat([edge_attr, edge_attr.new_zeros(edge_attr.shape[0], 1)], dim=1)
    out = data.clone()
    components = connected_components(n, edge_index) if has_isolated_nodes(n, edge_index) else []
    if len(components) > 1:
        pairs: list[tuple[int, int]] = []
        for c, nodes in enumerate(components):
            for node in nodes:
                pairs += [(node, n + c), (n + c, node)]
        reaction = n + len(components)
        for c in range(len(components)):
            pairs += [(reaction, n + c), (n + c, reaction)]
        new_edges = torch.tensor(pairs, dtype=edge_index.dtype).t()
        new_attr = edge_attr.new_zeros(len(pairs), edge_attr.shape[1])
        new_attr[:, -1] = 1.0
        x = torch.cat([x, x.new_zeros(len(components) + 1, x.shape[1])], dim=0)
        edge_index = torch.cat([edge_index, new_edges], dim=1)
        edge_attr = torch.cat([edge_attr, new_attr], dim=0)
    out.x = x
    out.edge_index = edge_index
    out.edge_attr = edge_attr
    out.edge_type = edge_attr.argmax(dim=1) if edge_attr.shape[0] else edge_index.new_zeros(0)
    out.num_nodes = x.shape[0]
    return out
