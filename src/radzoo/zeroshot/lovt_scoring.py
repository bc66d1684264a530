"""LoVT as image-report retrieval scoring, and its region-sentence grounding map.

LoVT has no zero-shot protocol (METHODS 2.5). radzoo treats every prompt as a short report and
scores a label by the cosine between the joint embeddings zg_a (image) and zg_b (report) divided
by LoVT's global NT-Xent temperature 0.1 (METHODS 2.4), max over the label's prompts, softmax
over labels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from radzoo.errors import InputError
from radzoo.zoo.text_tokenizer import Tokens

log = logging.getLogger(__name__)

RULE = "lovt-retrieval-cosine"
TEMPERATURE = 0.1

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a report (LoVT encodes each sentence separately, METHODS 2.1)."""
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p]


def tokenize_reports(tokenizer: Any, reports: Sequence[str], length: int) -> tuple[Tokens, torch.Tensor]:
    """LoVT's joint sentence encoding input: per report, each sentence's word pieces without
    special tokens, concatenated, then [CLS] ... [SEP]; ``sentence_index`` gives each position's
    0-based sentence (-1 for [CLS]/[SEP]/padding). Reports longer than ``length`` are cut."""
    rows, index_rows, truncated = [], [], []
    for report in reports:
        sentences = split_sentences(report)
        if not sentences:
            raise InputError(f"text {report!r} has no words to encode")
        ids: list[int] = []
        idx: list[int] = []
        for s_i, sentence in enumerate(sentences):
            pieces = tokenizer(sentence, add_special_tokens=False)["input_ids"]
            ids += pieces
            idx += [s_i] * len(pieces)
        if len(ids) + 2 > length:
            short = report if len(report) <= 60 else report[:57] + "..."
            msg = f"text {short!r} has {len(ids) + 2} tokens; truncated to the maximum length {length}"
            log.warning(msg)
            truncated.append(msg)
            ids, idx = ids[: length - 2], idx[: length - 2]
        rows.append([tokenizer.cls_token_id, *ids, tokenizer.sep_token_id])
        index_rows.append([-1, *idx, -1])
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), int(tokenizer.pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    sentence_index = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, (r, x) in enumerate(zip(rows, index_rows, strict=True)):
        input_ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
        sentence_index[i, : len(x)] = torch.tensor(x)
    return Tokens(input_ids, mask, truncated), sentence_index


def encode_texts(net: Any, tokens: Tokens, sentence_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """zg_b per prompt. Prompts with different sentence counts are encoded one at a time, because
    LoVT's text pool query divides by the batch's largest sentence count (METHODS 2.6)."""
    counts = sentence_index.amax(dim=1)
    if bool((counts == counts[0]).all()):
        out = net.encode_text(tokens.input_ids, tokens.attention_mask, sentence_index)
        return {"global": out["global"]}
    rows = []
    for i in range(tokens.input_ids.shape[0]):
        n = int(tokens.attention_mask[i].sum())
        out = net.encode_text(tokens.input_ids[i : i + 1, :n], tokens.attention_mask[i : i + 1, :n], sentence_index[i : i + 1, :n])
        rows.append(out["global"])
    return {"global": torch.cat(rows)}


def encode_images(net: Any, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    return net.encode_image(batch)


def prompt_scores(net: Any, image: dict[str, torch.Tensor], text: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``global``: cos(zg_a, zg_b) / 0.1, [N images, P prompts]."""
    return {"global": F.normalize(image["global"], dim=-1) @ F.normalize(text["global"], dim=-1).t() / TEMPERATURE}


def combine(scores: dict[str, torch.Tensor], groups: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-label score = max over its prompts, softmax over the labels)."""
    g = torch.stack([scores["global"][:, list(idx)].amax(dim=1) for idx in groups], dim=1)
    return g, torch.softmax(g, dim=1)


def ground(net: Any, batch: torch.Tensor, tokens: Tokens, sentence_index: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    """A [h, w] map: per region, cos(zl_a, zl_b2a), LoVT's local alignment between a region and its
    report-attended vector after the cross-attention; plus the per-sentence score maps."""
    image = net.encode_image(batch)
    text = net.encode_text(tokens.input_ids, tokens.attention_mask, sentence_index)
    attended = net.cross_attention(image["local"], text["local"], text["mask"])
    sim = F.cosine_similarity(image["local"], attended["b2a"], dim=-1)[0]  # [regions]
    h, w = (int(v) for v in image["grid"])
    n_sent = int(text["mask"][0].sum())
    per_sentence = attended["scores"][0, :, :n_sent].t().reshape(n_sent, h, w)
    return sim.reshape(h, w), {"method": "lovt-region-alignment", "sentence_scores": per_sentence}
