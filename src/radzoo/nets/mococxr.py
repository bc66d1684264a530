"""MoCo-CXR (METHODS 1.1): a torchvision trunk; embedding = pooled trunk features; optional MoCo head."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from radzoo.nets.base import EncoderNet
from radzoo.nets.heads import moco_mlp_head
from radzoo.nets.trunks import TRUNK_DIMS, build_trunk


class MoCoCXRNet(EncoderNet):
    """``image_backbone`` = torchvision ``trunk`` (head = Identity); ``image_proj`` = 128-d MLP head if kept.

    Outputs: ``trunk`` (global-average-pooled features, 512/2048/1024) and, when the head is
    present, ``proj`` (the L2-normalised 128-d contrastive embedding).
    """

    def __init__(self, trunk: str = "resnet50", in_chans: int = 3, proj_dim: int | None = None) -> None:
        super().__init__()
        dim = TRUNK_DIMS[trunk]
        self.image_backbone = build_trunk(trunk, in_chans)
        self.image_proj = moco_mlp_head(dim, proj_dim) if proj_dim else None
        self.image_outputs = {"trunk": dim}
        if proj_dim:
            self.image_outputs["proj"] = proj_dim

    def image_features(self, x: torch.Tensor, output: str = "trunk") -> torch.Tensor:
        self.check_output(output)
        feats = self.image_backbone(x)
        if output == "trunk":
            return feats
        return F.normalize(self.image_proj(feats), dim=-1)
