"""Shared helpers for converter tests: tiny tower blocks and references from raw keys."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


def tiny_block(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict())


def unit_block(manifest: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """Every tensor under ``prefix`` at shape 1x..x1: for DROPPED modules only (keeps files small)."""
    return {k[len(prefix):]: torch.empty([1] * len(v["shape"])) for k, v in manifest["tensors"].items() if k.startswith(prefix)}


def resnet50_feature_map(raw: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, in_chans: int) -> torch.Tensor:
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity()
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
    model.load_state_dict({k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}, strict=True)
    model.eval()
    body = nn.Sequential(*list(model.children())[:-2])  # up to layer4
    with torch.inference_mode():
        return body(x)


def clip_attention_pool(raw: dict[str, torch.Tensor], p: str, fmap: torch.Tensor, heads: int) -> torch.Tensor:
    """CLIP's AttentionPool2d written out with F.multi_head_attention_forward (token 0 output)."""
    x = fmap.flatten(2).permute(2, 0, 1)  # [HW, N, C]
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    x = x + raw[p + "positional_embedding"][:, None, :]
    c = x.shape[-1]
    out, _ = F.multi_head_attention_forward(
        query=x[:1], key=x, value=x, embed_dim_to_check=c, num_heads=heads,
        q_proj_weight=raw[p + "q_proj.weight"], k_proj_weight=raw[p + "k_proj.weight"], v_proj_weight=raw[p + "v_proj.weight"],
        in_proj_weight=None, in_proj_bias=torch.cat([raw[p + "q_proj.bias"], raw[p + "k_proj.bias"], raw[p + "v_proj.bias"]]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=raw[p + "c_proj.weight"], out_proj_bias=raw[p + "c_proj.bias"],
        use_separate_proj_weight=True, training=False, need_weights=False,
    )
    return out[0]
