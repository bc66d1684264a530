"""What gets exported: one ``GraphDef`` per ONNX graph, with its wrapper module and parity inputs.

Each graph is a small ``nn.Module`` whose ``forward`` takes plain tensors (what onnxruntime feeds)
and calls the canonical network's own methods, so the exported graph computes exactly what
``radzoo.nets`` computes. Parity inputs are seeded and come in two different sizes per dynamic
axis, which proves that the axis really is dynamic in the exported graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from radzoo.nets import EncoderNet, ImageOutput
from radzoo.zoo.golden import GOLDEN_SEED, golden_inputs
from radzoo.zoo.model import ZooModel

#: Input name of every image graph; the runtime feeds preprocessed batches under this name.
IMAGE_INPUT = "image"
#: Output name of every single-output graph.
EMBEDDING = "embedding"


@dataclass
class GraphDef:
    """One exportable graph: ``file`` is relative to the artifact directory."""

    name: str
    kind: str  # "image", "text", "patch_encoder", "gnn", "graph" (IGCL report graphs)
    module: nn.Module
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    parity_inputs: list[tuple[np.ndarray, ...]]  # first one is also the tracing example
    output: str | None = None  # the image output name, for image graphs
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return f"onnx/{self.name}.onnx"

    def symbolic_shapes(self) -> dict[str, list[int | str]]:
        """Input shapes as recorded in config.json: dynamic axes by name, the rest as numbers."""
        example = self.parity_inputs[0]
        shapes: dict[str, list[int | str]] = {}
        for name, arr in zip(self.input_names, example, strict=True):
            dyn = self.dynamic_axes.get(name, {})
            shapes[name] = [dyn.get(i, int(d)) for i, d in enumerate(arr.shape)]
        return shapes


class PriorPromptGlobal(nn.Module):
    """PRIOR's zero-shot prompt embedding (``encode_prompts(...)["global"]``)."""

    def __init__(self, net: EncoderNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.net.encode_prompts(input_ids, attention_mask)["global"]


class LoVTReportGlobal(nn.Module):
    """LoVT's global report embedding zg_b, equal to ``LoVTNet.encode_text(...)["global"]``.

    ``encode_text`` counts sentences with ``.item()``, which a tracer freezes into a constant, and
    its attention pool passes the same tensor as key and value, which makes torch's MHA take a
    path whose reshapes the tracer also freezes. This wrapper derives the sentence count as a
    tensor (candidates ``0..T-1`` sliced to ``max(sentence_index) + 1``) and passes the value as
    a distinct tensor; the arithmetic is otherwise the same sequence of module calls, and export
    parity is checked against ``encode_text`` itself.
    """

    def __init__(self, net: EncoderNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sentence_index: torch.Tensor
    ) -> torch.Tensor:
        net = self.net
        hidden = net.text_backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        n_sent = torch.clamp(sentence_index.max() + 1, min=1)
        candidates = torch.arange(input_ids.shape[1], device=hidden.device)
        member = (sentence_index[:, None, :] == candidates[None, :, None])[:, :n_sent]
        filled = hidden[:, None, :, :].masked_fill(~member[..., None], float("-inf"))
        mask = member.any(dim=2)
        sentences = filled.amax(dim=2).masked_fill(~mask[..., None], 0.0)
        pool = net.text_pool
        # MeanQueryAttentionPool.pool with padded_mean=True: mean over the padded sentence axis
        query = (sentences * mask.to(sentences.dtype).unsqueeze(-1)).sum(dim=1, keepdim=True) / sentences.shape[1]
        pooled, _ = nn.MultiheadAttention.forward(
            pool, query, sentences, sentences.clone(), key_padding_mask=~mask, need_weights=True
        )
        return net.text_proj_global(pooled[:, 0])

    def reference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sentence_index: torch.Tensor
    ) -> torch.Tensor:
        """The canonical computation this wrapper must equal."""
        return self.net.encode_text(input_ids, attention_mask, sentence_index)["global"]


class PatchEncoderGraph(nn.Module):
    """graph-CT patch encoder: ``[N, 1, 32, 32, 32]`` -> ``[N, 128]``."""

    def __init__(self, net: EncoderNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.net.encode_patches(patches)


class GraphNetGraph(nn.Module):
    """graph-CT GCN: patch embeddings ``[nodes, 128]`` + ``edge_index [2, edges]`` -> node embeddings."""

    def __init__(self, net: EncoderNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, patch_embeddings: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.net.encode_graph(patch_embeddings, edge_index)


#: Node count the IGCL graph encoder is exported for (RadGraph reports rarely exceed ~60 entities;
#: dummy and reaction nodes add at most one per entity plus one).
IGCL_GRAPH_NODES = 128


class IGCLGraphDense(nn.Module):
    """IGCL's DRACON graph encoder + projection on graphs padded to a fixed node count.

    ``to_dense_batch`` and RGCN's per-relation scatter are data dependent, so the exported graph
    takes the padded layout of ``radzoo.graphs.dense_graph_inputs`` instead: node features
    ``x [B, N, F]``, per-relation edge counts ``adjacency [B, R, N, N]`` (``A[b, r, i, j]`` = edges
    j -> i of type r), ``node_mask [B, N]`` (real nodes) and ``attend_mask [B, N]`` (positions that
    take part in attention). RGCN's per-relation mean is ``(A_r @ x) / max(deg_r, 1) @ W_r``, plus
    the root term and bias; padded rows are zeroed after the RGCN as ``to_dense_batch`` pads with
    zeros. ``attend_mask == node_mask`` gives each graph's own embedding (``mask_padding=True``);
    ``attend_mask`` = the first ``k`` positions reproduces the original's unmasked padding of a
    batch whose largest graph has ``k`` nodes (``pad_to=k``). Parity is checked against
    ``IGCLNet.encode_graph`` on the sparse graphs for both.
    """

    def __init__(self, net: EncoderNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, x: torch.Tensor, adjacency: torch.Tensor, node_mask: torch.Tensor, attend_mask: torch.Tensor
    ) -> torch.Tensor:
        backbone = self.net.graph_backbone
        h = x
        degree = adjacency.sum(dim=-1, keepdim=True).clamp(min=1.0)
        for conv in backbone.rgcn.layers:
            mean = torch.matmul(adjacency, h.unsqueeze(1)) / degree  # [B, R, N, F]
            h = torch.relu(torch.einsum("brnf,rfo->bno", mean, conv.weight) + h @ conv.root + conv.bias)
        h = h * node_mask.unsqueeze(-1)
        ignore = attend_mask < 0.5
        for layer in backbone.trans.layers:
            attn, _ = nn.MultiheadAttention.forward(
                layer.self_attn, h, h, h.clone(), key_padding_mask=ignore, need_weights=True
            )
            h = layer.norm1(h + attn)
            h = layer.norm2(h + layer.linear2(torch.relu(layer.linear1(h))))
        weights = node_mask.unsqueeze(-1)
        pooled = (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.net.graph_proj(backbone.fcn.layers(pooled))

    def reference(
        self, x: torch.Tensor, adjacency: torch.Tensor, node_mask: torch.Tensor, attend_mask: torch.Tensor
    ) -> torch.Tensor:
        """``IGCLNet.encode_graph`` on the same graphs as sparse torch_geometric batches."""
        xs, edges, types, batch = [], [], [], []
        offset = 0
        for b in range(x.shape[0]):
            n = int(node_mask[b].sum())
            xs.append(x[b, :n])
            r, dst, src = torch.nonzero(adjacency[b, :, :n, :n], as_tuple=True)
            counts = adjacency[b, r, dst, src].long()
            edges.append(torch.stack([src, dst]).repeat_interleave(counts, dim=1) + offset)
            types.append(r.repeat_interleave(counts))
            batch.append(torch.full((n,), b, dtype=torch.long, device=x.device))
            offset += n
        own = bool(torch.equal(attend_mask, node_mask))
        pad_to = None if own else int(attend_mask[0].sum())
        return self.net.encode_graph(
            torch.cat(xs), torch.cat(edges, dim=1), torch.cat(types), torch.cat(batch),
            mask_padding=own, pad_to=pad_to,
        )


# ---- parity inputs ------------------------------------------------------------------------------


def _rng(offset: int) -> np.random.Generator:
    return np.random.default_rng(GOLDEN_SEED + 1000 + offset)


def _text_batch(text_config: dict, batch: int, length: int, seed: int, sentences: bool) -> tuple[np.ndarray, ...]:
    """Token ids with [CLS]/[SEP]-like ends and per-row padding; LoVT also gets sentence indices."""
    rng = _rng(seed)
    length = min(length, int(text_config.get("max_position_embeddings", 512)))
    vocab = int(text_config["vocab_size"])
    ids = rng.integers(5, vocab, size=(batch, length), dtype=np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    index = np.full((batch, length), -1, dtype=np.int64)
    for r in range(batch):
        real = max(3, length - 3 * (r % 3))  # rows 1, 2 ... padded by 3, 6 tokens
        ids[r, 0], ids[r, real - 1] = 2, 3
        ids[r, real:] = 0
        mask[r, real:] = 0
        body = real - 2
        n_sent = 1 + (r % 4)
        index[r, 1 : real - 1] = np.arange(body) * n_sent // max(body, 1)
    return (ids, mask, index) if sentences else (ids, mask)


def _chain_graph(nodes: int) -> np.ndarray:
    src = np.arange(nodes - 1)
    return np.concatenate([np.stack([src, src + 1]), np.stack([src + 1, src])], axis=1).astype(np.int64)


def _random_graph(nodes: int, edges: int, seed: int) -> np.ndarray:
    rng = _rng(seed)
    a = rng.integers(0, nodes, size=edges)
    b = rng.integers(0, nodes, size=edges)
    return np.concatenate([np.stack([a, b]), np.stack([b, a])], axis=1).astype(np.int64)


def _report_graphs(sizes: list[int], features: int, seed: int, pad_to: int | None) -> tuple[np.ndarray, ...]:
    """Dense IGCL graph inputs (``IGCLGraphDense``) for random graphs of these node counts: a
    chain of relation edges (types 0-2) plus a few type-3 (reaction) edges per graph."""
    rng = _rng(seed)
    n_max = IGCL_GRAPH_NODES
    b = len(sizes)
    x = np.zeros((b, n_max, features), dtype=np.float32)
    adj = np.zeros((b, 4, n_max, n_max), dtype=np.float32)
    node = np.zeros((b, n_max), dtype=np.float32)
    for i, n in enumerate(sizes):
        x[i, :n] = rng.standard_normal((n, features))
        for j in range(n - 1):
            adj[i, rng.integers(0, 3), j + 1, j] += 1.0
        for _ in range(n // 2):
            a, c = rng.integers(0, n, size=2)
            adj[i, 3, a, c] += 1.0
            adj[i, 3, c, a] += 1.0
        node[i, :n] = 1.0
    attend = node.copy() if pad_to is None else (np.arange(n_max)[None, :] < pad_to).astype(np.float32).repeat(b, 0)
    return x, adj, node, attend


# ---- the graphs of a model ---------------------------------------------------------------------


def graph_defs(model: ZooModel) -> list[GraphDef]:
    """Every graph ``radzoo export`` can write for this model, in a stable order."""
    net = model.net
    spec = model.spec
    defs: list[GraphDef] = []
    if spec.method == "graphct":
        gold = golden_inputs(model)
        patches2 = _rng(1).uniform(-1.0, 1.0, size=(3, 1, 32, 32, 32)).astype(np.float32)
        defs.append(
            GraphDef(
                name="patch_encoder",
                kind="patch_encoder",
                module=PatchEncoderGraph(net),
                input_names=["patches"],
                output_names=["patch_embeddings"],
                dynamic_axes={"patches": {0: "patches"}, "patch_embeddings": {0: "patches"}},
                parity_inputs=[(gold["patches"],), (patches2,)],
            )
        )
        with torch.inference_mode():
            feats = net.encode_patches(torch.from_numpy(gold["patches"]).to(model.device)).float().cpu().numpy()
        feats2 = _rng(2).standard_normal((13, feats.shape[1])).astype(np.float32)
        defs.append(
            GraphDef(
                name="gnn",
                kind="gnn",
                module=GraphNetGraph(net),
                input_names=["patch_embeddings", "edge_index"],
                output_names=["node_embeddings"],
                dynamic_axes={
                    "patch_embeddings": {0: "nodes"},
                    "edge_index": {1: "edges"},
                    "node_embeddings": {0: "nodes"},
                },
                parity_inputs=[(feats, gold["edge_index"]), (feats2, _random_graph(13, 20, 3))],
            )
        )
        return defs

    image = golden_inputs(model)["image"]
    other = _rng(0).standard_normal((3, *image.shape[1:])).astype(np.float32)
    for output in spec.outputs:
        if output not in net.image_outputs:
            continue
        defs.append(
            GraphDef(
                name=f"image_{output}",
                kind="image",
                module=ImageOutput(net, output),
                input_names=[IMAGE_INPUT],
                output_names=[EMBEDDING],
                dynamic_axes={IMAGE_INPUT: {0: "batch"}, EMBEDDING: {0: "batch"}},
                parity_inputs=[(image,), (other,)],
                output=output,
            )
        )
    text_config = dict(spec.arch_args.get("text_config") or {})
    if spec.method == "prior" and net.has_text:
        module: nn.Module = PriorPromptGlobal(net)
        names = ["input_ids", "attention_mask"]
        sentences = False
    elif spec.method == "lovt":
        module = LoVTReportGlobal(net)
        names = ["input_ids", "attention_mask", "sentence_index"]
        sentences = True
    elif spec.method == "igcl":
        features = int(spec.arch_args["node_features"])
        names = ["x", "adjacency", "node_mask", "attend_mask"]
        defs.append(
            GraphDef(
                name="graph_global",
                kind="graph",
                module=IGCLGraphDense(net),
                input_names=names,
                output_names=[EMBEDDING],
                dynamic_axes={**{n: {0: "batch"} for n in names}, EMBEDDING: {0: "batch"}},
                # own-graph attention on 2 graphs; the original's padding (to 17 nodes) on 3 graphs
                parity_inputs=[_report_graphs([6, 11], features, 20, None), _report_graphs([17, 3, 9], features, 21, 17)],
                extra={"max_nodes": IGCL_GRAPH_NODES},
            )
        )
        return defs
    else:
        return defs
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    defs.append(
        GraphDef(
            name="text_global",
            kind="text",
            module=module,
            input_names=names,
            output_names=[EMBEDDING],
            dynamic_axes={**axes, EMBEDDING: {0: "batch"}},
            parity_inputs=[
                _text_batch(text_config, 2, 12, 10, sentences),
                _text_batch(text_config, 4, 20, 11, sentences),
            ],
        )
    )
    return defs


def reference_outputs(graph: GraphDef, inputs: tuple[np.ndarray, ...], device: torch.device) -> np.ndarray:
    """The canonical torch result for ``inputs`` (``encode_text`` itself for the LoVT wrapper)."""
    tensors = [torch.from_numpy(a).to(device) for a in inputs]
    fn = getattr(graph.module, "reference", graph.module)
    with torch.inference_mode():
        return fn(*tensors).float().cpu().numpy()
