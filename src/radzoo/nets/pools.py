"""Learned pooling over token sets: the CLIP-style pools of PRIOR and the mean-query MHA pool of LoVT."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _QKVCPool(nn.Module):
    """Mean token prepended, multi-head attention with separate q/k/v/c projections; token 0 out.

    Only the output of token 0 is needed, so only that query row is computed (identical result
    to running full self-attention and taking token 0).
    """

    def __init__(self, embed_dim: int, num_heads: int, output_dim: int | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)

    def _attend(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        # tokens: [B, 1 + L, D]; key_padding_mask: [B, 1 + L] True where padded
        b, n, d = tokens.shape
        h = self.num_heads
        q = self.q_proj(tokens[:, :1]).view(b, 1, h, d // h).transpose(1, 2)
        k = self.k_proj(tokens).view(b, n, h, d // h).transpose(1, 2)
        v = self.v_proj(tokens).view(b, n, h, d // h).transpose(1, 2)
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(out.transpose(1, 2).reshape(b, 1, d))[:, 0]


class AttentionPool2d(_QKVCPool):
    """PRIOR's image ``atten_pool`` (CLIP AttentionPool2d): flattened (permuted) map + positional embedding."""

    def __init__(self, spatial: int, embed_dim: int, num_heads: int, output_dim: int | None = None) -> None:
        super().__init__(embed_dim, num_heads, output_dim)
        self.positional_embedding = nn.Parameter(torch.randn(spatial * spatial + 1, embed_dim) / embed_dim**0.5)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        tokens = fmap.flatten(2).transpose(1, 2)  # [B, HW, C], row-major positions
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self.positional_embedding[None].to(tokens.dtype)
        return self._attend(tokens, None)


class SentenceAttentionPool(_QKVCPool):
    """PRIOR's ``global_text_attention``: the same pool over sentence vectors, no positional embedding."""

    def forward(self, sentences: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # sentences [B, S, D]; mask [B, S] True for real sentences
        if mask is None:
            mean = sentences.mean(dim=1, keepdim=True)
            return self._attend(torch.cat([mean, sentences], dim=1), None)
        m = mask.to(sentences.dtype).unsqueeze(-1)
        mean = (sentences * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)
        pad = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)
        return self._attend(torch.cat([mean, sentences], dim=1), pad)


class MeanQueryAttentionPool(nn.MultiheadAttention):
    """LoVT's ``GlobalAvgAttentionAggregator``: query = token mean, MHA over the tokens.

    A subclass of ``nn.MultiheadAttention`` so its keys are exactly LoVT's ``attention.*`` keys
    (``in_proj_weight``, ``out_proj.*``). Returns the pooled vector and the head-averaged
    attention weights (LoVT's local weights). For text, LoVT computes the query as the mean over
    the *padded* sentence axis with padded rows zeroed (METHODS 2.6); ``padded_mean=True`` keeps
    that quirk.
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__(embed_dim, num_heads, batch_first=True)

    def pool(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None, padded_mean: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if mask is None:
            query = tokens.mean(dim=1, keepdim=True)
            key_padding_mask = None
        else:
            zeroed = tokens * mask.to(tokens.dtype).unsqueeze(-1)
            if padded_mean:
                query = zeroed.sum(dim=1, keepdim=True) / tokens.shape[1]
            else:
                query = zeroed.sum(dim=1, keepdim=True) / mask.sum(1).clamp_min(1)[:, None, None]
            key_padding_mask = ~mask
        out, weights = super().forward(
            query, tokens, tokens, key_padding_mask=key_padding_mask, need_weights=True
        )
        return out[:, 0], weights[:, 0]
