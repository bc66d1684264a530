"""``zero_shot(model, images, labels, prompts)``: one contract over the image-text models.

The method modules (``prior``, ``lovt``) hold the rules; this module resolves labels and prompts,
caches prompt embeddings on the model, batches images and packs the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

from radzoo.errors import InputError
from radzoo.zeroshot import lovt_scoring as lovt
from radzoo.zeroshot import prior_scoring as prior
from radzoo.zeroshot.prompts import PromptSet, prompt_sets, require_text, resolve_prompts
from radzoo.zeroshot.result_types import PromptRef, ZeroShotResult
from radzoo.zoo.text_tokenizer import load_tokenizer, max_length, tokenize

_RULES: dict[str, ModuleType] = {"prior": prior, "lovt": lovt}


def rules_for(model: Any) -> ModuleType:
    """The method module of an image-text model, or a ``CapabilityError`` that says why not."""
    require_text(model.spec)
    return _RULES[model.spec.method]


def tokenize_texts(model: Any, texts: list[str]) -> tuple[Any, torch.Tensor | None]:
    """Tokens (and LoVT's sentence index) for a list of prompts, on the model's device."""
    tok = load_tokenizer(model)
    length = max_length(model)
    if model.spec.method == "lovt":
        tokens, index = lovt.tokenize_reports(tok, texts, length)
        index = index.to(model.device)
    else:
        tokens, index = tokenize(tok, texts, length, pad_to_length=True), None
    tokens.input_ids = tokens.input_ids.to(model.device)
    tokens.attention_mask = tokens.attention_mask.to(model.device)
    return tokens, index


def encode_prompts(
    model: Any, texts: Sequence[str], prompt_set: str = "", seed: int | None = None, *, cache: bool = True
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Prompt embeddings, cached in ``model._cache`` by prompt set (name@version) + exact texts.

    ``seed`` (PRIOR only) selects the stochastic-compatible SPB with a seeded Gumbel draw.
    ``cache=False`` for arbitrary texts (``Model.embed_text``), which would only grow the cache.
    """
    rules = rules_for(model)
    texts = list(texts)
    if not texts:
        raise InputError("no prompts to encode")
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"prompts must be non-empty strings, got {t!r}")
    key = ("zero_shot.prompts", rules.RULE, prompt_set, tuple(texts), seed)
    hit = model._cache.get(key) if cache else None
    if hit is not None:
        return hit
    tokens, index = tokenize_texts(model, texts)
    # no_grad, not inference_mode: cached embeddings are reused by grounding under autograd
    with torch.no_grad():
        if rules is lovt:
            emb = lovt.encode_texts(model.net, tokens, index)
        else:
            gen = None
            if seed is not None:
                gen = torch.Generator(device=model.device).manual_seed(int(seed))
            emb = prior.encode_texts(model.net, tokens, generator=gen)
    value = ({k: v.detach() for k, v in emb.items()}, list(tokens.truncated))
    if cache:
        model._cache[key] = value
    return value


def _plan(pset: PromptSet, labels: list[str], mode: str) -> tuple[list[PromptRef], list[list[list[int]]]]:
    """All prompts (deduplicated) and, per decision, the prompt-index groups it compares.

    Single-label: one decision over all labels. Multi-label: one decision per label over
    (positive prompts, negative prompts).
    """
    refs: list[PromptRef] = []
    where: dict[PromptRef, int] = {}

    def index(label: str, polarity: str, text: str) -> int:
        ref = PromptRef(label, polarity, text)
        if ref not in where:
            where[ref] = len(refs)
            refs.append(ref)
        return where[ref]

    owners: dict[str, set[str]] = {}
    for lab in labels:
        for t in pset.positives(lab):
            owners.setdefault(t, set()).add(lab)
    shared = sorted(t for t, labs in owners.items() if len(labs) > 1)
    if shared:
        raise InputError(f"the same prompt serves several labels: {shared[:3]}; give each label its own words")
    pos = {lab: [index(lab, "positive", t) for t in pset.positives(lab)] for lab in labels}
    if mode == "single-label":
        return refs, [[pos[lab] for lab in labels]]
    decisions = []
    for lab in labels:
        neg = [index(lab, "negative", t) for t in pset.negatives_for(lab)]
        if set(pset.negatives_for(lab)) & set(pset.positives(lab)):
            raise InputError(f"label {lab!r}: a prompt is both positive and negative")
        decisions.append([pos[lab], neg])
    return refs, decisions


def zero_shot(
    model: Any,
    images: Any,
    labels: Sequence[str] | None = None,
    prompts: Any = None,
    *,
    mode: str | None = None,
    batch_size: int = 16,
    seed: int | None = None,
) -> ZeroShotResult:
    """Per-image, per-label probabilities of an image-text model.

    ``labels`` default to the prompt set's classes. ``prompts``: see
    :func:`radzoo.zeroshot.prompts.resolve_prompts`. ``mode`` ``"single-label"`` (softmax over the
    labels, PRIOR's 5x200 protocol) or ``"multi-label"`` (each label's positive vs negative
    prompts); default: the prompt set's mode.
    """
    rules = rules_for(model)
    default, sets = prompt_sets(model.config, model.spec)
    pset, chosen, mode = resolve_prompts(prompts, labels, mode, sets, default)
    refs, decisions = _plan(pset, chosen, mode)
    text_emb, truncated = encode_prompts(model, [r.text for r in refs], pset.key, seed)

    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise InputError("no images given")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = model.prepare(items[start : start + batch_size]).to(model.device)
            scores = rules.prompt_scores(model.net, rules.encode_images(model.net, batch), text_emb)
            for k, v in scores.items():
                parts.setdefault(k, []).append(v.float().cpu())
        per_prompt = {k: torch.cat(v) for k, v in parts.items()}
        raw_cols, prob_cols = [], []
        for groups in decisions:
            raw, prob = rules.combine(per_prompt, groups)
            if mode == "single-label":
                raw_cols, prob_cols = [raw], [prob]
            else:
                raw_cols.append(raw[:, :1])
                prob_cols.append(prob[:, :1])
    return ZeroShotResult(
        labels=chosen,
        probabilities=torch.cat(prob_cols, dim=1).numpy().astype(np.float64),
        scores=torch.cat(raw_cols, dim=1).numpy().astype(np.float64),
        prompt_scores={k: v.numpy().astype(np.float64) for k, v in per_prompt.items()},
        prompts=refs,
        rule=rules.RULE,
        mode=mode,
        prompt_set=pset.key,
        truncated=truncated,
    )
