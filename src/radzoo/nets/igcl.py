"""IGCL (METHODS 4.1): CLIP ViT-B/32 image tower + projection; DRACON graph encoder (PyG RGCN)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch_geometric.nn import RGCNConv
from torch_geometric.utils import to_dense_batch
from transformers import CLIPVisionConfig, CLIPVisionModel

from radzoo.nets.base import EncoderNet


def build_clip_vision(config: Mapping[str, Any]) -> nn.Module:
    """CLIP vision transformer whose keys start at ``embeddings.`` under every transformers version.

    transformers 5 removed the ``vision_model.`` level from ``CLIPVisionModel`` (METHODS 0.4);
    under transformers 4 we take its ``vision_model`` child, which has the same keys.
    """
    model = CLIPVisionModel(CLIPVisionConfig(**dict(config)))
    return getattr(model, "vision_model", model)


class _Layers(nn.Module):
    """Holder giving DRACON's ``<block>.layers.<i>`` key layout."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers = layers


class DraconEncoder(nn.Module):
    """DRACON: RGCN stack -> one post-norm transformer layer per graph (no padding mask, as the
    original) -> mean over real nodes -> FC layers. Keys: ``rgcn.layers.*``, ``trans.layers.*``,
    ``fcn.layers.*``."""

    def __init__(
        self,
        node_features: int = 772,
        num_relations: int = 4,
        graph_layers: int = 2,
        graph_hidden: int = 512,
        trans_layers: int = 1,
        attn_heads: int = 2,
        trans_ff: int = 1024,
        fc_layers: int = 2,
    ) -> None:
        super().__init__()
        dims = [node_features] + [graph_hidden] * graph_layers
        self.rgcn = _Layers(
            nn.ModuleList(RGCNConv(dims[i], dims[i + 1], num_relations) for i in range(graph_layers))
        )
        self.trans = _Layers(
            nn.ModuleList(
                nn.TransformerEncoderLayer(graph_hidden, attn_heads, trans_ff, dropout=0.1, batch_first=True)
                for _ in range(trans_layers)
            )
        )
        fc: list[nn.Module] = []
        for _ in range(fc_layers):
            fc += [nn.Linear(graph_hidden, graph_hidden), nn.ReLU()]
        self.fcn = _Layers(nn.Sequential(*fc))

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_type: torch.Tensor,
        batch: torch.Tensor,
        *,
        mask_padding: bool = False,
        pad_to: int | None = None,
    ) -> torch.Tensor:
        """Graph vectors ``[num_graphs, graph_hidden]``.

        By default the original's quirk: graphs are padded to the batch's largest graph and the
        zero padding nodes take part in attention, so a graph's vector depends on its batch.
        ``pad_to`` pads to that many nodes instead (reproducing a batch whose largest graph had
        ``pad_to`` nodes); ``mask_padding=True`` keeps padding out of attention, which equals the
        original on a batch of one graph and makes each graph's vector independent of its batch.
        """
        for conv in self.rgcn.layers:
            x = torch.relu(conv(x, edge_index, edge_type))
        if pad_to is not None:
            largest = int(torch.bincount(batch).max()) if batch.numel() else 0
            if pad_to < largest:
                raise ValueError(f"pad_to={pad_to} is smaller than the largest graph ({largest} nodes)")
        dense, real = to_dense_batch(x, batch, max_num_nodes=pad_to)
        for layer in self.trans.layers:
            dense = layer(dense, src_key_padding_mask=~real) if mask_padding else layer(dense)
        real_f = real.to(dense.dtype).unsqueeze(-1)
        pooled = (dense * real_f).sum(1) / real_f.sum(1).clamp_min(1.0)
        return self.fcn.layers(pooled)


class IGCLNet(EncoderNet):
    """IGCL with canonical names: ``image_backbone`` (CLIP vision), ``image_proj`` (768x768, no bias),
    ``graph_backbone`` (DRACON), ``graph_proj`` (512->768, no bias), ``logit_scale``.

    Outputs: ``trunk`` (CLIP pooler output: post-LayerNorm CLS) and ``global`` (``trunk @ proj``,
    the IGCL embedding, unnormalised as the linear probe uses it). No text tower: zero-shot would
    need a RadGraph graph prompt (METHODS 4.5).
    """

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        embed_dim: int = 768,
        node_features: int = 772,
        num_relations: int = 4,
        graph_layers: int = 2,
        graph_hidden: int = 512,
        trans_layers: int = 1,
        attn_heads: int = 2,
        trans_ff: int = 1024,
        fc_layers: int = 2,
    ) -> None:
        super().__init__()
        width = int(vision_config["hidden_size"])
        self.image_backbone = build_clip_vision(vision_config)
        self.image_proj = nn.Linear(width, embed_dim, bias=False)
        self.graph_backbone = DraconEncoder(
            node_features, num_relations, graph_layers, graph_hidden, trans_layers, attn_heads, trans_ff, fc_layers
        )
        self.graph_proj = nn.Linear(graph_hidden, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.659260036932778))  # ln(1/0.07)
        self.image_outputs = {"trunk": width, "global": embed_dim}
        self.has_graph_tower = True

    def image_features(self, x: torch.Tensor, output: str = "global") -> torch.Tensor:
        self.check_output(output)
        pooled = self.image_backbone(pixel_values=x).pooler_output
        return pooled if output == "trunk" else self.image_proj(pooled)

    def encode_graph(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_type: torch.Tensor,
        batch: torch.Tensor,
        *,
        mask_padding: bool = False,
        pad_to: int | None = None,
    ) -> torch.Tensor:
        """Graph embedding (768) of a batch of report graphs; ``edge_type`` = argmax of the edge
        one-hot. ``mask_padding`` / ``pad_to``: see ``DraconEncoder.forward``."""
        return self.graph_proj(
            self.graph_backbone(x, edge_index, edge_type, batch, mask_padding=mask_padding, pad_to=pad_to)
        )
