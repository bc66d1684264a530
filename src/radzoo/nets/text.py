"""BERT text towers built offline from a config dict (never ``from_pretrained`` on a hub name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def build_bert(config: Mapping[str, Any]) -> nn.Module:
    """A ``BertModel`` with pooler (the originals' checkpoints include ``pooler.*``)."""
    from transformers import BertConfig, BertModel  # only text-bearing models pay for this import

    cfg = BertConfig(**dict(config))
    return BertModel(cfg, add_pooling_layer=True)
