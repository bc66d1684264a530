"""IGCL plain state dict (METHODS 4.2). No weights were published: this converts users' own runs.

KEEP   ``visual.encoder.model.vision_model.`` -> ``image_backbone.`` (transformers-5 CLIPVisionModel
       layout; DROP ``embeddings.position_ids``)
       ``visual.proj`` -> ``image_proj.weight`` TRANSPOSED (raw ``feat @ proj`` -> ``Linear``)
       ``gnn.encoder.`` -> ``graph_backbone.``
       ``gnn.proj`` -> ``graph_proj.weight`` TRANSPOSED
       ``logit_scale`` unchanged
DROP   nothing. ``fc_layers`` (1 in the evaluation loader, 2 in training) is read from the keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radzoo.converters.conversion import Converted
from radzoo.converters.pickles import open_checkpoint, state_dict_of
from radzoo.converters.remap import Rule, apply_rules, require_keys
from radzoo.zoo.registry import get_spec
from radzoo.zoo.spec import ModelSpec

FORMAT = "igcl"
VERSION = "1"

KEEP = [
    Rule("visual.encoder.model.vision_model.", "image_backbone.", drop_suffix=("embeddings.position_ids",)),
    Rule("visual.proj", "image_proj.weight", exact=True, transpose=True),
    Rule("gnn.encoder.", "graph_backbone."),
    Rule("gnn.proj", "graph_proj.weight", exact=True, transpose=True),
    Rule("logit_scale", "logit_scale", exact=True),
]
_FC = re.compile(r"^gnn\.encoder\.fcn\.layers\.(\d+)\.weight$")


def fc_layers_of(state: Mapping[str, Any]) -> int:
    """Number of ``Linear`` layers in DRACON's ``fcn`` (ReLUs at odd indices hold no weights)."""
    return sum(1 for k in state if _FC.match(k))


def convert(
    path: str | Path,
    *,
    name: str | None = None,
    spec: ModelSpec | None = None,
    arch_args: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
) -> Converted:
    path = Path(path)
    obj = open_checkpoint(path, trust_pickle=trust_pickle)
    state = state_dict_of(obj, path, location=None)
    what = f"IGCL checkpoint {path.name}"
    require_keys(state, ["visual.encoder.model.vision_model.", "visual.proj", "gnn.encoder.", "gnn.proj"], what=what)
    remapped = apply_rules(state, KEEP, [], what=what)
    base = spec or get_spec("igcl_vitb32")
    args = {**dict(base.arch_args), **dict(arch_args or {}), "fc_layers": fc_layers_of(state)}
    return Converted.of_file(
        path, base, remapped, module=__name__, version=VERSION, format=FORMAT, name=name, arch_args=args,
        details={"fc_layers": args["fc_layers"]},
    )
