"""torchvision CNN trunks with their heads removed, so state_dict keys equal torchvision's minus the head."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

#: Pooled feature width of each supported trunk (METHODS 1.1).
TRUNK_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "densenet121": 1024, "mnasnet1_0": 1280}


def build_trunk(name: str, in_chans: int = 3) -> nn.Module:
    """A torchvision classifier with ``fc``/``classifier`` = Identity; ``in_chans`` 1 gives PRIOR's conv1."""
    if name not in TRUNK_DIMS:
        raise ValueError(f"unknown trunk {name!r}; supported: {sorted(TRUNK_DIMS)}")
    model = getattr(torchvision.models, name)(weights=None)
    if name.startswith("resnet"):
        model.fc = nn.Identity()
        if in_chans != 3:
            model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    elif name.startswith("densenet"):
        model.classifier = nn.Identity()
        if in_chans != 3:
            model.features.conv0 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    else:  # MNASNet: layers -> spatial mean -> classifier
        model.classifier = nn.Identity()
        if in_chans != 3:
            model.layers[0] = nn.Conv2d(in_chans, 32, kernel_size=3, stride=2, padding=1, bias=False)
    return model


def resnet_feature_map(trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer4 map ``[B, C, H/32, W/32]`` of a torchvision ResNet (no pooling)."""
    x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    x = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(x))))
    return x
