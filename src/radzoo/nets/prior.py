"""PRIOR (METHODS 3.1): 1-channel ResNet-50, attention pool, projections, BERT, SPB, local cross-attention."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from radzoo.nets.base import EncoderNet
from radzoo.nets.pools import AttentionPool2d, SentenceAttentionPool
from radzoo.nets.text import build_bert
from radzoo.nets.trunks import TRUNK_DIMS, build_trunk, resnet_feature_map

#: Gumbel-softmax temperature of the sentence prototype bank (METHODS 3.1).
SPB_TAU = 0.9


class SentencePrototypeBank(nn.Module):
    """SPB: ``embed`` = prototypes ``[K, D]``; soft assignment then mixture of prototypes.

    The original draws Gumbel noise even at test time; ``quantize`` uses the noise-free limit
    ``softmax(x E^T / tau) E`` unless a ``generator`` is passed (stochastic-compatible mode).
    """

    def __init__(self, num_prototypes: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_prototypes, dim)

    def quantize(
        self, x: torch.Tensor, tau: float = SPB_TAU, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        logits = x @ self.embed.weight.t()
        if generator is not None:
            u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
            logits = logits - torch.log(-torch.log(u.clamp_min(1e-20)).clamp_min(1e-20))
        return torch.softmax(logits / tau, dim=-1) @ self.embed.weight


class LocalCrossAttention(nn.Module):
    """PRIOR's ``local_cross_attention``: per-modality q/k/v, scaled scores through a *sigmoid*.

    Modality 1 = image tokens, modality 2 = sentences. Returns (text-attended image tokens,
    image-attended sentences, image->text map ``[B, L1, L2]``, text->image map ``[B, L2, L1]``).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        for name in ("query1", "key1", "value1", "query2", "key2", "value2"):
            setattr(self, name, nn.Linear(dim, dim))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        q1, k1, v1 = self.query1(x1), self.key1(x1), self.value1(x1)
        q2, k2, v2 = self.query2(x2), self.key2(x2), self.value2(x2)
        a12 = torch.sigmoid(q1 @ k2.transpose(-1, -2) * self.scale)
        a21 = torch.sigmoid(q2 @ k1.transpose(-1, -2) * self.scale)
        return a12 @ v2, a21 @ v1, a12, a21


class PriorNet(EncoderNet):
    """PRIOR with canonical module names. ``image_only=True`` is the ``prior_resnet50.pt`` release:
    the trunk alone, offering only the mean-pooled layer4 feature (no missing head is invented)."""

    def __init__(
        self,
        trunk: str = "resnet50",
        in_chans: int = 1,
        image_only: bool = False,
        embed_dim: int = 768,
        num_prototypes: int = 512,
        pool_heads: int = 8,
        spatial: int = 7,
        text_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        width = TRUNK_DIMS[trunk]
        self.image_backbone = build_trunk(trunk, in_chans)
        self.image_outputs = {"trunk": width}
        self.has_text = not image_only
        if image_only:
            return
        if text_config is None:
            raise ValueError("PriorNet(image_only=False) needs text_config (a BertConfig dict)")
        hidden = int(text_config["hidden_size"])
        self.image_pool = AttentionPool2d(spatial, width, pool_heads)
        self.image_proj_global = nn.Linear(width, embed_dim)
        self.image_proj_local = nn.Linear(width, embed_dim)
        self.text_backbone = build_bert(text_config)
        self.text_proj_local = nn.Linear(hidden, embed_dim)
        self.text_pool = SentenceAttentionPool(embed_dim, pool_heads)
        self.sentence_bank = SentencePrototypeBank(num_prototypes, embed_dim)
        self.local_cross_attention = LocalCrossAttention(embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.01)))
        self.local_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.01)))
        self.image_outputs.update({"pooled": width, "global": embed_dim})

    # ---- image ---------------------------------------------------------------------------
    def image_features(self, x: torch.Tensor, output: str = "global") -> torch.Tensor:
        self.check_output(output)
        fmap = resnet_feature_map(self.image_backbone, x)
        if output == "trunk":
            return fmap.mean(dim=(2, 3))
        pooled = self.image_pool(fmap)
        return pooled if output == "pooled" else self.image_proj_global(pooled)

    def encode_image(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Global embedding (768) and the 49 local tokens (768 each) used by zero-shot and grounding.

        Local tokens keep PRIOR's view-without-permute reshape (METHODS 3.6 quirk 1): token i is
        the flat slice ``[C*i, C*(i+1))`` of the contiguous (C, H, W) map.
        """
        fmap = resnet_feature_map(self.image_backbone, x)
        b, c = fmap.shape[:2]
        local = fmap.contiguous().view(b, -1, c)
        return {
            "global": self.image_proj_global(self.image_pool(fmap)),
            "local": self.image_proj_local(local),
        }

    # ---- text ----------------------------------------------------------------------------
    def encode_prompts(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """PRIOR's zero-shot prompt embedding (METHODS 3.5): one prompt = one sentence.

        BERT -> ``last_hidden_state[:, 1:-1]`` -> keep positions with mask 1 (drops [CLS], keeps
        [SEP] when padding follows) -> ``text_proj_local`` -> mean = sentence ``s`` -> SPB -> ``q``
        -> ``text_pool`` over the single vector -> global ``g``.
        """
        hidden = self.text_backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        tokens = self.text_proj_local(hidden[:, 1:-1])
        keep = attention_mask[:, 1:-1].to(tokens.dtype).unsqueeze(-1)
        sentence = (tokens * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        quantized = self.sentence_bank.quantize(sentence, generator=generator)
        global_ = self.text_pool(quantized[:, None, :])
        return {"sentence": sentence, "quantized": quantized, "global": global_}
