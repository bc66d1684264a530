"""graph-CT "Context Matters" (METHODS 5.1): 3D patch encoder and the GCN over the atlas patch graph."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import BatchNorm, GCNConv

from radzoo.nets.base import EncoderNet


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, 3, padding=1), nn.BatchNorm3d(c_out), nn.ELU()]


def _downsample(c_in: int, c_out: int) -> nn.Sequential:
    """3 x [Conv3d -> BatchNorm3d -> ELU]; the last conv has stride 2 (keys 0,1,3,4,6,7)."""
    layers = _block(c_in, c_out) + _block(c_out, c_out) + _block(c_out, c_out)
    layers[6] = nn.Conv3d(c_out, c_out, 3, stride=2, padding=1)
    return nn.Sequential(*layers)


class PatchEncoder3D(nn.Module):
    """``Encoder(128)`` trunk: ``[N, 1, 32, 32, 32]`` normalised HU -> ``[N, 128]``."""

    def __init__(self, feature_dim: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(8)
        self.conv2 = nn.Conv3d(8, 8, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm3d(8)
        self.downsample1 = _downsample(8, 16)
        self.downsample2 = _downsample(16, 32)
        self.downsample3 = _downsample(32, 64)
        self.conv3 = nn.Conv3d(64, feature_dim, 3, padding=1)
        self.bn3 = nn.BatchNorm3d(feature_dim)
        self.conv4 = nn.Conv3d(feature_dim, feature_dim, 3, stride=2, padding=1)
        self.bn4 = nn.BatchNorm3d(feature_dim)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        x = self.downsample3(self.downsample2(self.downsample1(x)))
        x = self.act(self.bn3(self.conv3(x)))
        x = self.act(self.bn4(self.conv4(x)))
        return x.flatten(1)


class GraphNet(nn.Module):
    """Inference ``GraphNet``: GCNConv -> torch_geometric BatchNorm -> ELU; returns node embeddings."""

    def __init__(self, feature_dim: int = 128) -> None:
        super().__init__()
        self.conv1 = GCNConv(feature_dim, feature_dim)
        self.bn1 = BatchNorm(feature_dim)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn1(self.conv1(x, edge_index)))


class GraphCTNet(EncoderNet):
    """``patch_encoder`` + ``gnn`` (+ optional ``patch_proj`` MoCo head over [feature, location]).

    Outputs: ``patch`` (per-patch conv feature, 128), ``node`` (after the GCN, 128) and
    ``subject`` (mean of the node embeddings, 128). The CT pipeline (``radzoo.ct``) builds the
    patches and the graph; this module only computes.
    """

    def __init__(self, feature_dim: int = 128, num_patches: int = 581, with_patch_proj: bool = False) -> None:
        super().__init__()
        self.num_patches = num_patches
        self.patch_encoder = PatchEncoder3D(feature_dim)
        self.gnn = GraphNet(feature_dim)
        self.patch_proj = (
            nn.Sequential(nn.Linear(feature_dim + 3, feature_dim + 3), nn.ReLU(), nn.Linear(feature_dim + 3, feature_dim))
            if with_patch_proj
            else None
        )
        self.image_outputs = {}
        self.feature_dim = feature_dim

    @property
    def output_widths(self) -> dict[str, int]:
        """``patch`` / ``node`` / ``subject`` embeddings, all ``feature_dim`` wide."""
        return {"patch": self.feature_dim, "node": self.feature_dim, "subject": self.feature_dim}

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 32, 32, 32]`` normalised patches -> ``[N, 128]`` (the first 128 dims before the location concat)."""
        return self.patch_encoder(patches)

    def encode_graph(self, patch_embeddings: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Node embeddings ``[581, 128]`` from patch embeddings and the thresholded overlap graph."""
        return self.gnn(patch_embeddings, edge_index)

    def forward(self, patches: torch.Tensor, edge_index: torch.Tensor) -> dict[str, torch.Tensor]:
        patch = self.encode_patches(patches)
        node = self.encode_graph(patch, edge_index)
        return {"patch": patch, "node": node, "subject": node.mean(dim=0)}
