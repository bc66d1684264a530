"""The tokenizer that travels inside the artifact (``tokenizer/``), loaded offline.

Only a local directory is ever handed to transformers (``local_files_only=True``), so a missing
file is an error here, never a download.

Casing is decided here, once (``lowercase_choice``): LoVT and PRIOR lower-case text whatever the
stored tokenizer config says, as their original pipelines did (METHODS 0.6).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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


#: Methods whose original pipelines fed LOWER-CASED text to a cased vocabulary (METHODS 0.6): both
#: loaded Bio_ClinicalBERT from the Hub, whose repo ships no tokenizer_config.json, so BERT's
#: default ``do_lower_case=True`` applied (PRIOR chexpert_zls.py:45, LoVT language_model_loader.py;
#: EmilyAlsentzer/clinicalBERT issue #26).
LOWERCASE_METHODS = frozenset({"lovt", "prior"})


def lowercase_choice(spec: Any) -> bool | None:
    """The casing radzoo enforces for ``spec``'s tokenizer: True/False, or None to let the stored
    tokenizer config decide. ``spec.text["lowercase"]`` (recorded in the artifact) wins; without it
    the method decides (LoVT/PRIOR: True)."""
    return _choice(spec.method, spec.text)


def _choice(method: str, text: Mapping[str, Any]) -> bool | None:
    recorded = text.get("lowercase")
    if recorded is not None:
        return bool(recorded)
    return True if method in LOWERCASE_METHODS else None


def casing_note(method: str, text: Mapping[str, Any]) -> str | None:
    """One sentence for the model card about how text is cased before tokenisation."""
    choice = _choice(method, text)
    if choice is None:
        return None
    if choice and method in LOWERCASE_METHODS:
        return ("Text is lower-cased before tokenisation, whatever the stored tokenizer config says, as the "
                "original pipelines did: Bio_ClinicalBERT's Hub repo has no tokenizer_config.json, so BERT's "
                "default do_lower_case=True applied to its cased vocabulary.")
    return f"Text is {'lower-cased' if choice else 'kept in its case'} before tokenisation (recorded in the spec)."


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

    lower = lowercase_choice(model.spec)
    kwargs = {} if lower is None else {"do_lower_case": lower}
    try:
        tok = AutoTokenizer.from_pretrained(str(path.resolve()), local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot load the tokenizer in {path}: {exc}") from exc
    if lower and tok.tokenize("A") != tok.tokenize("a"):
        raise ArtifactError(
            f"{path}: model {model.name!r} must tokenize lower-case text (METHODS 0.6) but its "
            f"{type(tok).__name__} ignores do_lower_case; store a BERT WordPiece tokenizer"
        )
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
