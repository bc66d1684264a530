"""PRIOR's pretraining-only modules (METHODS 3.1; PRIOR ``prior.py``, ``decoders/{image,sentence}.py``).

They live beside the exported :class:`~radzoo.nets.prior.PriorNet` during training and are
dropped from the artifact (the zoo spec has no place for them, as the converter drops them too):

* :func:`simsiam_predictor`: ``Linear(E, E/2) -> ReLU -> Linear(E/2, E)`` for the image-side
  SimSiam loss;
* :func:`sentence_decoder`: a BERT with the text tower's config but ``decoder_layers`` (8) layers,
  ``is_decoder`` and cross-attention, no pooler; it turns ``num_queries`` learned prototype
  queries into sentence prototypes while attending to the local image tokens. Built as in the
  original (``BertModel`` with ``is_decoder=True`` and no attention mask), transformers applies a
  causal mask over the queries, whatever the original's comment says;
* :class:`ImageDecoder`: five blocks of nearest upsampling to 2s, 4s, ..., 32s (s = the token grid
  side; 14..224 at 224 px) followed by two (conv 3x3 without bias + BatchNorm + ReLU), halving the
  channels from 2E, then a 3x3 conv to one channel. Its input is the channel-dropped local image
  tokens concatenated with the text-attended tokens, each reshaped ``[B, L, E] -> [B, E, s, s]``
  by a plain view (PRIOR's quirk).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def simsiam_predictor(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(inplace=True), nn.Linear(dim // 2, dim))


def sentence_decoder(text_config: dict[str, Any], layers: int, dim: int) -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = dict(text_config)
    if int(cfg["hidden_size"]) != dim:
        cfg.update(hidden_size=dim, intermediate_size=4 * dim)
    config = BertConfig(**cfg)
    config.num_hidden_layers = layers
    config.is_decoder = True
    config.add_cross_attention = True
    config.use_cache = False
    return BertModel(config, add_pooling_layer=False)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.conv1 = _conv_bn_relu(cin, cout)
        self.conv2 = _conv_bn_relu(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(F.interpolate(x, self.size, mode="nearest")))


class ImageDecoder(nn.Module):
    """``(image tokens [B, E, s, s], text-attended tokens [B, E, s, s]) -> image [B, 1, 32s, 32s]``."""

    def __init__(self, dim: int, grid: int, dropout: float = 0.5, blocks: int = 5) -> None:
        super().__init__()
        self.image_dropout = nn.Dropout2d(dropout)
        channels = [2 * dim // 2**i for i in range(blocks + 1)]
        self.blocks = nn.ModuleList(
            DecoderBlock(channels[i], channels[i + 1], grid * 2 ** (i + 1)) for i in range(blocks)
        )
        self.output_head = nn.Conv2d(channels[-1], 1, 3, padding=1)

    def forward(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self.image_dropout(image_tokens), text_tokens], dim=1)
        for block in self.blocks:
            z = block(z)
        return self.output_head(z)
