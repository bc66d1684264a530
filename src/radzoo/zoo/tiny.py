"""Tiny random-weight models for tests and benchmarks, explicitly named ``tiny-random-*``.

They keep each method's structure and preprocessing *kind* but shrink widths and the input size
so the whole suite runs on two CPU cores. They are never part of the registry, and artifacts
built from them are marked ``random_init``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from radzoo.zoo.registry import (
    IGCL_PREPROCESS,
    LOVT_PREPROCESS,
    MOCOCXR_PREPROCESS,
    PRIOR_ZEROSHOT_PREPROCESS,
    get_spec,
)
from radzoo.zoo.spec import ModelSpec, Preprocess

TINY_TEXT_CONFIG = {
    "vocab_size": 512,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}

#: The node-feature BERT of ``tiny-random-igcl`` (IGCL node features = hidden 16 + 4 label bits = 20).
TINY_NODE_TEXT_CONFIG = {
    **TINY_TEXT_CONFIG,
    "hidden_size": 16,
    "intermediate_size": 32,
}


def _shrink(pre: Preprocess, size: int) -> Preprocess:
    """Same steps, every spatial size scaled to ``size`` (the IGCL canvas keeps its 320:224 ratio)."""
    steps = []
    for step in pre.steps:
        s = dict(step)
        if s["op"] in ("resize", "center_crop", "pad_center"):
            ref = s["size"]
            first = ref[0] if isinstance(ref, list) else ref
            scaled = round(size * first / 224) if pre is IGCL_PREPROCESS else size
            s["size"] = [scaled, scaled] if isinstance(ref, list) else scaled
        steps.append(s)
    return Preprocess(pre.input, tuple(steps), notes=f"tiny test variant ({size} px) of: {pre.notes}")


def tiny_specs() -> dict[str, ModelSpec]:
    """One tiny spec per method (graph-CT keeps its real, already small, patch network)."""
    moco = get_spec("mococxr_resnet18")
    prior = get_spec("prior_resnet50_imagetext")
    lovt = get_spec("lovt_resnet50")
    igcl = get_spec("igcl_vitb32")
    graphct = get_spec("graphct_copdgene")
    specs = [
        moco.with_(
            name="tiny-random-mococxr",
            arch_args={"trunk": "resnet18", "proj_dim": 128},
            outputs={"trunk": 512, "proj": 128},
            preprocess=_shrink(MOCOCXR_PREPROCESS, 64),
            sources=(),
            hub_repo="radzoo-test/tiny-random-mococxr",
            hub_revision="v1",
        ),
        prior.with_(
            name="tiny-random-prior",
            arch_args={
                "trunk": "resnet18",
                "in_chans": 1,
                "image_only": False,
                "embed_dim": 32,
                "num_prototypes": 16,
                "pool_heads": 2,
                "spatial": 2,
                "text_config": TINY_TEXT_CONFIG,
            },
            outputs={"trunk": 512, "pooled": 512, "global": 32},
            preprocess=_shrink(PRIOR_ZEROSHOT_PREPROCESS, 64),
            sources=(),
            hub_repo=None,
            text={**prior.text, "max_length": 32},
        ),
        lovt.with_(
            name="tiny-random-lovt",
            arch_args={
                "trunk": "resnet18",
                "proj_dim": 32,
                "proj_hidden": 64,
                "pool_heads": 2,
                "text_config": TINY_TEXT_CONFIG,
            },
            outputs={"trunk": 512, "pooled": 512, "global": 32},
            preprocess=_shrink(LOVT_PREPROCESS, 64),
            hub_repo=None,
            text={**lovt.text, "max_length": 64},
        ),
        igcl.with_(
            name="tiny-random-igcl",
            arch_args={
                "vision_config": {
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_hidden_layers": 1,
                    "num_attention_heads": 2,
                    "image_size": 64,
                    "patch_size": 32,
                    "hidden_act": "quick_gelu",
                    "num_channels": 3,
                },
                "embed_dim": 32,
                "node_features": 20,
                "num_relations": 4,
                "graph_layers": 2,
                "graph_hidden": 16,
                "trans_layers": 1,
                "attn_heads": 2,
                "trans_ff": 32,
                "fc_layers": 2,
            },
            outputs={"trunk": 32, "global": 32},
            preprocess=_shrink(IGCL_PREPROCESS, 64),
            hub_repo=None,
        ),
        graphct.with_(name="tiny-random-graphct", sources=(), hub_repo=None),
    ]
    return {s.name: s.with_(description=f"TEST ONLY, random weights. {s.description}") for s in specs}


def write_test_vocab(directory: str | Path, vocab_size: int = TINY_TEXT_CONFIG["vocab_size"], lowercase: bool = False) -> Path:
    """A synthetic WordPiece vocabulary (special tokens, characters, then generated pieces) plus
    the tokenizer config, so BERT tokenizers can be built offline. Returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_letters + string.digits + string.punctuation)
    pieces: list[str] = specials + chars + ["##" + c for c in string.ascii_letters + string.digits]
    words = [
        "is", "observed", "no", "there", "the", "of", "and", "with", "lung", "lungs", "heart", "pleural",
        "effusion", "atelectasis", "cardiomegaly", "consolidation", "edema", "pneumothorax", "normal",
        "right", "left", "chest", "size", "opacity", "findings", "impression", "seen", "not", "mild",
    ]
    for w in words:
        for form in (w, w.capitalize()):
            if form not in pieces:
                pieces.append(form)
    i = 0
    while len(pieces) < vocab_size:
        pieces.append(f"##x{i}")
        i += 1
    pieces = pieces[:vocab_size]
    (directory / "vocab.txt").write_text("\n".join(pieces) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": lowercase,
                "model_max_length": TINY_TEXT_CONFIG["max_position_embeddings"],
                "unk_token": "[UNK]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "mask_token": "[MASK]",
            },
            indent=2,
        )
    )
    return directory
