"""The tokenizer that travels inside the artifact (``tokenizer/``), loaded offline.

Only a local directory is ever handed to transformers (``local_files_only=True``), so a missing
file is an error here, never a download.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from radzoo.errors import ArtifactError, CapabilityError

log = logging.getLogger(__name__)


@dataclass
class Tokens:
    """A tokenised batch plus the human-readable notes about prompts that were cut."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: list[str]


def load_tokenizer(model: Any) -> Any:
    """The model's tokenizer (cached on the model). Raises when the artifact carries none."""
    cached = model._cache.get("tokenizer")
    if cached is not None:
        return cached
    path = model.assets.get("tokenizer")
    if path is None:
        raise CapabilityError(
            f"model {model.name!r} has no tokenizer: its artifact lacks a tokenizer/ directory. Rebuild "
            "it with `radzoo build MODEL --tokenizer DIR` / radzoo.build(..., tokenizer=DIR) or convert "
            "with --tokenizer DIR"
        )
    path = Path(path)
    if not path.is_dir() or not any((path / f).is_file() for f in ("tokenizer_config.json", "vocab.txt", "tokenizer.json")):
        raise ArtifactError(f"{path}: not a tokenizer directory (expected vocab.txt / tokenizer_config.json)")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path.resolve()), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot load the tokenizer in {path}: {exc}") from exc
    vocab = int(model.spec.arch_args.get("text_config", {}).get("vocab_size", len(tok)))
    if len(tok) > vocab:
        raise ArtifactError(
            f"{path}: tokenizer has {len(tok)} tokens but the text tower's embedding has {vocab} rows"
        )
    model._cache["tokenizer"] = tok
    return tok


def max_length(model: Any) -> int:
    """Prompt length limit: the spec's ``text.max_length`` capped by the tower's positions."""
    text_cfg = model.spec.arch_args.get("text_config", {})
    limit = int(model.spec.text.get("max_length") or text_cfg.get("max_position_embeddings", 512))
    return min(limit, int(text_cfg.get("max_position_embeddings", limit)))


def _shorten(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def tokenize(tokenizer: Any, texts: list[str], length: int, *, pad_to_length: bool = True) -> Tokens:
    """Tokenise with [CLS]/[SEP], truncating at ``length`` and recording which texts were cut.

    ``pad_to_length`` pads every row to ``length`` as PRIOR does (its prompt pooling takes
    ``[:, 1:-1]``, so padding decides whether [SEP] is kept, METHODS 3.5).
    """
    truncated = []
    for text in texts:
        n = len(tokenizer(text, add_special_tokens=True)["input_ids"])
        if n > length:
            msg = f"prompt {_shorten(text)!r} has {n} tokens; truncated to the maximum length {length}"
            log.warning(msg)
            truncated.append(msg)
    enc = tokenizer(
        texts,
        padding="max_length" if pad_to_length else "longest",
        truncation=True,
        max_length=length,
        return_tensors="pt",
    )
    return Tokens(enc["input_ids"], enc["attention_mask"], truncated)
