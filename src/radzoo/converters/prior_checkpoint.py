"""PRIOR (METHODS 3.2): the image-only release and the whole image-text model.

``prior_image`` (``prior_resnet50.pt``): a flat torchvision ResNet-50 state dict, 1-channel conv1,
no ``fc``. KEEP every key -> ``image_backbone.*``. The release has no attention pool, so the
artifact offers only the mean-pooled trunk (2048); no head is invented.

``prior_full`` (Lightning 1.5.9 ``.ckpt``, or the same dict flat):
KEEP   ``image_encoder.encoder.`` -> ``image_backbone.``; ``image_encoder.atten_pool.`` -> ``image_pool.``;
       ``global_image_projection.`` / ``local_image_projection.`` -> ``image_proj_global.`` / ``image_proj_local.``;
       ``text_encoder.encoder.`` -> ``text_backbone.`` (DROP ``embeddings.position_ids``);
       ``local_text_projection.`` -> ``text_proj_local.``; ``global_text_attention.`` -> ``text_pool.``;
       ``sentence_bank.``, ``local_cross_attention.``, ``logit_scale``, ``local_logit_scale`` unchanged
DROP   ``sentence_decoder.``, ``image_decoder.``, ``prototype_queries``, ``predictor.``,
       ``global_text_projection.`` (pretraining only / unused)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radzoo.converters.conversion import Converted
from radzoo.converters.pickles import open_checkpoint, state_dict_of
from radzoo.converters.remap import Rule, apply_rules, require_keys
from radzoo.converters.tokenizer_files import check_tokenizer
from radzoo.errors import InputError
from radzoo.zoo.registry import get_spec
from radzoo.zoo.spec import ModelSpec

FORMAT_IMAGE = "prior_image"
FORMAT_FULL = "prior_full"
VERSION = "1"

IMAGE_KEEP = [Rule("", "image_backbone.")]

FULL_KEEP = [
    Rule("image_encoder.encoder.", "image_backbone."),
    Rule("image_encoder.atten_pool.", "image_pool."),
    Rule("global_image_projection.", "image_proj_global."),
    Rule("local_image_projection.", "image_proj_local."),
    Rule("text_encoder.encoder.", "text_backbone.", drop_suffix=("embeddings.position_ids",)),
    Rule("local_text_projection.", "text_proj_local."),
    Rule("global_text_attention.", "text_pool."),
    Rule("sentence_bank.", "sentence_bank."),
    Rule("local_cross_attention.", "local_cross_attention."),
    Rule("logit_scale", "logit_scale", exact=True),
    Rule("local_logit_scale", "local_logit_scale", exact=True),
]
FULL_DROP = ["sentence_decoder.", "image_decoder.", "predictor.", "global_text_projection."]
FULL_DROP_EXACT = ["prototype_queries"]
WORD_EMBEDDINGS = "text_encoder.encoder.embeddings.word_embeddings.weight"


def is_full(state: Mapping[str, Any]) -> bool:
    """Within PRIOR only: the whole model has ``image_encoder.`` keys, the image release does not."""
    return any(k.startswith("image_encoder.") for k in state)


def convert_image(
    path: str | Path, *, name: str | None = None, spec: ModelSpec | None = None, trust_pickle: bool = False
) -> Converted:
    path = Path(path)
    obj = open_checkpoint(path, trust_pickle=trust_pickle)
    state = state_dict_of(obj, path, location=None)
    what = f"PRIOR image-encoder file {path.name}"
    if is_full(state):
        raise InputError(f"{path} is a whole PRIOR image-text checkpoint, not the image-only release: use format prior_full")
    require_keys(state, ["conv1.weight", "layer4."], what=what)
    remapped = apply_rules(state, IMAGE_KEEP, [], what=what)
    base = spec or get_spec("prior_resnet50")
    return Converted.of_file(
        path, base, remapped, module=__name__, version=VERSION, format=FORMAT_IMAGE, name=name,
        notes=["image-only release: no attention-pool weights, so only the mean-pooled trunk (2048) is offered"],
    )


def convert_full(
    path: str | Path,
    *,
    tokenizer: str | Path | None = None,
    name: str | None = None,
    spec: ModelSpec | None = None,
    arch_args: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
) -> Converted:
    path = Path(path)
    obj = open_checkpoint(path, trust_pickle=trust_pickle)
    state = state_dict_of(obj, path, location="state_dict", optional_wrapper=True)
    what = f"PRIOR image-text checkpoint {path.name}"
    require_keys(state, ["image_encoder.encoder.", "image_encoder.atten_pool.", "text_encoder.encoder."], what=what)
    remapped = apply_rules(state, FULL_KEEP, FULL_DROP, drop_exact=FULL_DROP_EXACT, what=what)
    rows = int(state[WORD_EMBEDDINGS].shape[0]) if WORD_EMBEDDINGS in state else -1
    tok = check_tokenizer(tokenizer, rows, FORMAT_FULL)
    base = spec or get_spec("prior_resnet50_imagetext")
    args = {**dict(base.arch_args), **dict(arch_args or {})}
    return Converted.of_file(
        path, base, remapped, module=__name__, version=VERSION, format=FORMAT_FULL, name=name, arch_args=args,
        tokenizer=tok,
        details={"lightning_wrapped": "state_dict" in obj, "pytorch_lightning_version": obj.get("pytorch-lightning_version")},
    )


def convert(path: str | Path, **kwargs: Any) -> Converted:
    """``radzoo convert prior``: the whole model or the image-only release (told apart by PRIOR's own keys)."""
    path = Path(path)
    obj = open_checkpoint(path, trust_pickle=kwargs.get("trust_pickle", False))
    state = state_dict_of(obj, path, location="state_dict", optional_wrapper=True)
    if is_full(state):
        return convert_full(path, **kwargs)
    kwargs.pop("tokenizer", None)
    kwargs.pop("arch_args", None)
    return convert_image(path, **kwargs)
