"""Initial weights for the report encoder: a Hugging Face BERT directory or a zoo model.

``text_init`` is one of:

* ``random``: the tower is built from its config (``text_preset``) with seeded random weights;
* a local Hugging Face BERT directory (``config.json`` + ``model.safetensors``, e.g. a
  Bio_ClinicalBERT download): its config defines the tower and its weights are loaded strictly
  (``bert.`` prefixes and the ``cls.*`` pre-training heads of ``BertForPreTraining`` files are
  dropped; a missing pooler, as in ``BertForMaskedLM`` files, stays random and is said so: neither
  LoVT nor PRIOR uses it);
* a zoo model name or artifact directory with a text tower: opened through ``radzoo.load`` and its
  ``text_backbone`` copied, together with the tokenizer it carries.

Only safetensors are read; a directory holding only ``pytorch_model.bin`` is refused with a hint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radzoo.errors import InputError

log = logging.getLogger(__name__)

#: BertConfig fields a text tower's spec keeps (everything else takes BertConfig's defaults).
CONFIG_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "hidden_act",
    "layer_norm_eps",
)


@dataclass
class TextInit:
    """Where the text tower starts: its BertConfig dict, weights (or None) and a tokenizer dir."""

    source: str
    config: dict[str, Any]
    state: dict[str, torch.Tensor] | None = None
    tokenizer_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


def _is_hf_bert(directory: Path) -> bool:
    cfg = directory / "config.json"
    if not cfg.is_file():
        return False
    try:
        data = json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "bert"


def _read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single), device="cpu")
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(directory / shard), device="cpu"))
        return state
    if (directory / "pytorch_model.bin").is_file():
        raise InputError(
            f"{directory} holds only pytorch_model.bin; radzoo reads safetensors only. Convert it once with "
            "transformers (BertModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True))"
        )
    raise InputError(f"{directory} has no model.safetensors")


def bert_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A HF BERT checkpoint's keys as ``BertModel`` keys (prefix ``bert.`` and heads ``cls.*`` dropped)."""
    out = {}
    for key, value in state.items():
        if key.startswith("cls.") or key.endswith("embeddings.position_ids"):
            continue
        out[key[len("bert.") :] if key.startswith("bert.") else key] = value
    return out


def resolve_text_init(text_init: str, preset_config: dict[str, Any]) -> TextInit:
    """Read ``text_init`` (see the module docstring) without building any network yet."""
    if text_init in ("", "random"):
        return TextInit("random", dict(preset_config))
    path = Path(text_init).expanduser()
    if path.is_dir() and _is_hf_bert(path):
        data = json.loads((path / "config.json").read_text())
        missing = [k for k in CONFIG_FIELDS if k not in data and k not in ("hidden_act", "layer_norm_eps", "type_vocab_size")]
        if missing:
            raise InputError(f"{path / 'config.json'} lacks BERT fields {missing}")
        config = {k: data[k] for k in CONFIG_FIELDS if k in data}
        state = bert_keys(_read_safetensors(path))
        tok = path if any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt")) else None
        return TextInit(f"huggingface:{path}", config, state, tok)
    from radzoo.resolve import load

    try:
        model = load(text_init, device="cpu", runtime="torch")
    except Exception as exc:  # noqa: BLE001 - any failure to open is a bad text_init value
        raise InputError(
            f"text_init {text_init!r} is neither 'random', a Hugging Face BERT directory (config.json with "
            f"model_type bert + model.safetensors) nor a zoo model with a text tower: {exc}"
        ) from exc
    if "text" not in model.spec.capabilities:
        raise InputError(f"text_init {text_init!r} is a {model.spec.method} model without a text tower")
    config = dict(model.spec.arch_args["text_config"])
    state = {k[len("text_backbone.") :]: v for k, v in model.net.state_dict().items() if k.startswith("text_backbone.")}
    return TextInit(f"zoo:{text_init}", config, state, model.assets.get("tokenizer"))


def load_text_weights(backbone: nn.Module, init: TextInit) -> list[str]:
    """Copy ``init.state`` into ``backbone`` strictly (only the pooler may be absent); returns notes."""
    from radzoo.zoo.weights import load_strict

    if init.state is None:
        return []
    expected = backbone.state_dict()
    state = dict(init.state)
    notes = []
    pooler = [k for k in expected if k.startswith("pooler.")]
    if pooler and not any(k in state for k in pooler):
        state.update({k: expected[k] for k in pooler})
        notes.append(f"{init.source} has no pooler weights; the (unused) pooler stays randomly initialised")
    load_strict(backbone, state, f"text_init {init.source}")
    return notes
