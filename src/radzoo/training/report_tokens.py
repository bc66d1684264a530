"""Reports as model input: each method's sentence augmentation and tokenised batch layout.

* LoVT (lovt ``report_transforms.py`` / ``report_encoder.py``): sentences are shuffled by random
  swaps (a geometric number of swaps, ``swap_prob`` 0.6, no sentence sampling); each sentence is
  tokenised without special tokens, sentences are concatenated while they fit into
  ``max_length - 2`` word pieces (a first sentence that alone is too long is cut; later ones that
  do not fit are dropped), then ``[CLS] ... [SEP]`` is added. ``sentence_index`` holds each
  position's 0-based sentence, -1 for special tokens and padding.
* PRIOR (PRIOR ``mimiccxr.py`` / ``language.py``): sentences (impression first, then findings) are
  shuffled and concatenated **without a separator**, tokenised with special tokens, padded to
  ``max_length`` (256) and cut to it; ``sentence_index`` gives 1-based sentence numbers laid out by
  re-tokenising each sentence alone and counting its word pieces from position 1 (-1 for [CLS],
  padding and whatever falls outside), exactly as the original, boundary effects included.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from radzoo.training.pairs import collate_images


def random_swaps(swap_prob: float = 0.6) -> Any:
    """LoVT's ``RandomIndexSwapper``: ``Geometric(p = 1 - swap_prob)`` swaps of two random positions."""
    log_q = math.log(swap_prob) if 0 < swap_prob < 1 else None

    def augment(sentences: list[str], generator: torch.Generator) -> list[str]:
        if log_q is None or len(sentences) < 2:
            return sentences
        u = float(torch.rand((), generator=generator, dtype=torch.float64).clamp_min(1e-300))
        n_swaps = int(math.floor(math.log(u) / log_q))  # failures before the first success
        out = list(sentences)
        for a, b in torch.randint(len(out), (n_swaps, 2), generator=generator).tolist():
            out[a], out[b] = out[b], out[a]
        return out

    return augment


def shuffle_sentences(sentences: list[str], generator: torch.Generator) -> list[str]:
    """PRIOR's ``SentenceShuffle``: a uniformly random order."""
    return [sentences[i] for i in torch.randperm(len(sentences), generator=generator).tolist()]


def _pad(rows: list[list[int]], fill: int, width: int | None = None) -> torch.Tensor:
    width = width or max(len(r) for r in rows)
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r[:width], dtype=torch.long)
    return out


class LoVTCollator:
    """Batch of ``{"image", "sentences"}`` items -> images + LoVT's joint-sentence token layout."""

    def __init__(self, tokenizer: Any, max_length: int = 512) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def encode(self, sentences: list[str]) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        room = self.max_length - 2
        ids: list[int] = []
        index: list[int] = []
        encoded = tok(list(sentences), add_special_tokens=False, truncation=True, max_length=room)["input_ids"]
        for s, pieces in enumerate(encoded):
            if len(ids) + len(pieces) <= room:
                ids += pieces
                index += [s] * len(pieces)
            elif not ids:
                ids, index = pieces[:room], [s] * min(len(pieces), room)
                break
            else:
                break
        return [tok.cls_token_id, *ids, tok.sep_token_id], [-1, *index, -1]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        images, replaced = collate_images(items)
        rows, index = zip(*(self.encode(it["sentences"]) for it in items), strict=True)
        input_ids = _pad(list(rows), int(self.tokenizer.pad_token_id))
        mask = _pad([[1] * len(r) for r in rows], 0)
        return {
            "image": images,
            "input_ids": input_ids,
            "attention_mask": mask,
            "sentence_index": _pad(list(index), -1),
            "replaced": torch.tensor(replaced),
        }


class PriorCollator:
    """Batch of ``{"image", "sentences"}`` items -> images + PRIOR's fixed-length token layout."""

    def __init__(self, tokenizer: Any, max_length: int = 256) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def encode(self, sentences: list[str]) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        joined = "".join(sentences)
        ids = tok(joined, add_special_tokens=True)["input_ids"]
        width = max(len(ids), self.max_length)  # padded to max_length, never truncated before the cut
        index = [-1] * width
        start = 1
        for s, sentence in enumerate(sentences):
            n = len(tok(sentence, add_special_tokens=True)["input_ids"]) - 2
            index[start : start + n] = [s + 1] * len(index[start : start + n])
            start += n
        return ids[: self.max_length], index[: self.max_length]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        images, replaced = collate_images(items)
        rows, index = zip(*(self.encode(it["sentences"]) for it in items), strict=True)
        return {
            "image": images,
            "input_ids": _pad(list(rows), int(self.tokenizer.pad_token_id), self.max_length),
            "attention_mask": _pad([[1] * len(r) for r in rows], 0, self.max_length),
            "sentence_index": _pad(list(index), -1, self.max_length),
            "replaced": torch.tensor(replaced),
        }
