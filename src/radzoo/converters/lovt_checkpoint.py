"""LoVT Lightning 1.4.9 ``.ckpt`` (METHODS 2.2). No weights were published: this converts users' own runs.

KEEP   ``model_a.encoder.feature_extractor.backbone_layers.`` -> ``image_backbone.``
       ``model_a.encoder.global_aggregator.attention.``      -> ``image_pool.``
       ``model_a.project_global.`` / ``model_a.project_local.`` -> ``image_proj_global.`` / ``image_proj_local.``
       ``model_b.encoder.language_model.``                    -> ``text_backbone.`` (DROP ``embeddings.position_ids``)
       ``model_b.encoder.global_aggregator.attention.``       -> ``text_pool.``
       ``model_b.project_global.`` / ``model_b.project_local.`` -> ``text_proj_global.`` / ``text_proj_local.``
       ``ll_attention.``                                      -> ``cross_attention.``
DROP   ``loss_module.``, ``val_metrics.``, ``chexpert_bin_scan.``, ``chexpert_bin_report.``

Real files key ``callbacks`` by class objects and pickle an OmegaConf config: they need
``--trust-pickle`` (unknown classes are stubbed, never imported).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radzoo.converters.conversion import Converted
from radzoo.converters.pickles import open_checkpoint, state_dict_of
from radzoo.converters.remap import Rule, apply_rules, require_keys
from radzoo.converters.tokenizer_files import check_tokenizer
from radzoo.zoo.registry import get_spec
from radzoo.zoo.spec import ModelSpec

FORMAT = "lovt"
VERSION = "1"

KEEP = [
    Rule("model_a.encoder.feature_extractor.backbone_layers.", "image_backbone."),
    Rule("model_a.encoder.global_aggregator.attention.", "image_pool."),
    Rule("model_a.project_global.", "image_proj_global."),
    Rule("model_a.project_local.", "image_proj_local."),
    Rule("model_b.encoder.language_model.", "text_backbone.", drop_suffix=("embeddings.position_ids",)),
    Rule("model_b.encoder.global_aggregator.attention.", "text_pool."),
    Rule("model_b.project_global.", "text_proj_global."),
    Rule("model_b.project_local.", "text_proj_local."),
    Rule("ll_attention.", "cross_attention."),
]
DROP = ["loss_module.", "val_metrics.", "chexpert_bin_scan.", "chexpert_bin_report."]
WORD_EMBEDDINGS = "model_b.encoder.language_model.embeddings.word_embeddings.weight"


def convert(
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
    state = state_dict_of(obj, path, location="state_dict")
    what = f"LoVT checkpoint {path.name}"
    require_keys(state, ["model_a.encoder.feature_extractor.backbone_layers.", "model_b.encoder.language_model."], what=what)
    remapped = apply_rules(state, KEEP, DROP, what=what)
    rows = int(state[WORD_EMBEDDINGS].shape[0]) if WORD_EMBEDDINGS in state else -1
    tok = check_tokenizer(tokenizer, rows, FORMAT)
    base = spec or get_spec("lovt_resnet50")
    args = {**dict(base.arch_args), **dict(arch_args or {})}
    return Converted.of_file(
        path, base, remapped, module=__name__, version=VERSION, format=FORMAT, name=name, arch_args=args,
        tokenizer=tok,
        details={"pytorch_lightning_version": obj.get("pytorch-lightning_version"), "epoch": obj.get("epoch")},
    )
