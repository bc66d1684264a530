"""LoVT (METHODS 2.1): ResNet-50 + mean-query attention pool + BatchNorm projections; BERT report tower."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from radzoo.nets.base import EncoderNet
from radzoo.nets.heads import ProjectionMLP
from radzoo.nets.pools import MeanQueryAttentionPool
from radzoo.nets.text import build_bert
from radzoo.nets.trunks import TRUNK_DIMS, build_trunk, resnet_feature_map


class SymmetricCrossAttention(nn.Module):
    """LoVT ``ll_attention``: shared key/value projections, one score matrix used both ways.

    Scores ``K(a) K(b)^T / sqrt(d)``; region->sentence attention is the softmax over sentences
    (padded sentences masked), sentence->region the softmax over regions. Attended values go
    through ``output_projection`` and ``norm`` (BatchNorm1d over channels). The key and value
    projections are shared between modalities as in the LoVT_100 config; the exact score form
    is our reading of the code (METHODS 2.1).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.key_projection = nn.Linear(dim, dim)
        self.value_projection = nn.Linear(dim, dim)
        self.output_projection = nn.Linear(dim, dim)
        self.norm = nn.BatchNorm1d(dim)
        self.scale = 1.0 / math.sqrt(dim)

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.output_projection(x).transpose(1, 2)).transpose(1, 2)

    def forward(
        self, za: torch.Tensor, zb: torch.Tensor, mask_b: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        scores = self.key_projection(za) @ self.key_projection(zb).transpose(1, 2) * self.scale  # [B, La, Lb]
        scores_ab = scores if mask_b is None else scores.masked_fill(~mask_b[:, None, :], float("-inf"))
        attn_a2b = torch.softmax(scores_ab, dim=-1)
        attn_b2a = torch.softmax(scores.transpose(1, 2), dim=-1)
        if mask_b is not None:  # padded sentences attend to nothing (LoVT multiplies by the query mask)
            attn_b2a = attn_b2a * mask_b[:, :, None].to(attn_b2a.dtype)
        return {
            "b2a": self._out(attn_a2b @ self.value_projection(zb)),  # report-attended image regions
            "a2b": self._out(attn_b2a @ self.value_projection(za)),  # image-attended sentences
            "attn_a2b": attn_a2b,
            "attn_b2a": attn_b2a,
            "scores": scores,
        }


class LoVTNet(EncoderNet):
    """LoVT with canonical names. Outputs: ``trunk`` (mean-pooled layer4, 2048), ``pooled`` (yg_a,
    attention-pooled, 2048; radzoo's image embedding) and ``global`` (zg_a, 512, joint space)."""

    def __init__(
        self,
        trunk: str = "resnet50",
        in_chans: int = 3,
        proj_dim: int = 512,
        proj_hidden: int = 2048,
        pool_heads: int = 8,
        text_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if text_config is None:
            raise ValueError("LoVTNet needs text_config (a BertConfig dict)")
        width = TRUNK_DIMS[trunk]
        hidden = int(text_config["hidden_size"])
        self.image_backbone = build_trunk(trunk, in_chans)
        self.image_pool = MeanQueryAttentionPool(width, pool_heads)
        self.image_proj_global = ProjectionMLP(width, proj_hidden, proj_dim)
        self.image_proj_local = ProjectionMLP(width, proj_hidden, proj_dim, per_token=True)
        self.text_backbone = build_bert(text_config)
        self.text_pool = MeanQueryAttentionPool(hidden, pool_heads)
        self.text_proj_global = ProjectionMLP(hidden, proj_hidden, proj_dim)
        self.text_proj_local = ProjectionMLP(hidden, proj_hidden, proj_dim, per_token=True)
        self.cross_attention = SymmetricCrossAttention(proj_dim)
        self.has_text = True
        self.image_outputs = {"trunk": width, "pooled": width, "global": proj_dim}

    # ---- image ---------------------------------------------------------------------------
    def image_features(self, x: torch.Tensor, output: str = "pooled") -> torch.Tensor:
        self.check_output(output)
        fmap = resnet_feature_map(self.image_backbone, x)
        if output == "trunk":
            return fmap.mean(dim=(2, 3))
        pooled, _ = self.image_pool.pool(fmap.flatten(2).transpose(1, 2))
        return pooled if output == "pooled" else self.image_proj_global(pooled)

    def encode_image(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """yg_a, zg_a, the 49 region tokens (yl_a, row-major h,w) and their projections zl_a."""
        fmap = resnet_feature_map(self.image_backbone, x)
        tokens = fmap.flatten(2).transpose(1, 2)
        pooled, weights = self.image_pool.pool(tokens)
        return {
            "pooled": pooled,
            "global": self.image_proj_global(pooled),
            "local": self.image_proj_local(tokens),
            "local_weights": weights,
            "grid": torch.tensor(fmap.shape[2:]),
        }

    # ---- text ----------------------------------------------------------------------------
    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sentence_index: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Report encoding (METHODS 2.1): BERT over the joint sequence, sentence max-pooling.

        ``sentence_index`` ``[B, T]`` gives each token's 0-based sentence, -1 for [CLS]/[SEP]/pad.
        Returns yl_b (sentences), their mask, the pool's attention weights over them, yg_b, zg_b
        (512) and zl_b.
        """
        hidden = self.text_backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        n_sent = int(sentence_index.max().item()) + 1 if sentence_index.numel() else 0
        n_sent = max(n_sent, 1)
        member = sentence_index[:, None, :] == torch.arange(n_sent, device=hidden.device)[None, :, None]
        filled = hidden[:, None, :, :].masked_fill(~member[..., None], float("-inf"))
        sentences = filled.amax(dim=2)  # [B, S, H]
        mask = member.any(dim=2)
        sentences = sentences.masked_fill(~mask[..., None], 0.0)
        pooled, weights = self.text_pool.pool(sentences, mask, padded_mean=True)
        return {
            "sentences": sentences,
            "mask": mask,
            "local_weights": weights,
            "pooled": pooled,
            "global": self.text_proj_global(pooled),
            "local": self.text_proj_local(sentences),
        }
