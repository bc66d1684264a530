"""graph-CT patch + graph ``.pth.tar`` pair (METHODS 5.2). Both are DDP-wrapped MoCo dicts.

Patch file:
KEEP   ``module.encoder_q.*`` minus ``fc.*``   -> ``patch_encoder.*``
KEEP   ``module.encoder_q.fc.*``               -> ``patch_proj.*`` (only with keep_head)
DROP   ``module.encoder_k.*``, ``module.queue`` (1.2 GB per-landmark queue), ``module.queue_ptr``
The patch file is memory-mapped (``torch.load(mmap=True)``): the queue's pages are never read,
so it costs no RAM, and only the kept tensors are copied out before the mapping is released.

Graph file: one of three torch_geometric layouts, told apart by their distinct key names:
``pyg<=1.6.0``     ``conv1.weight`` [in,out] (TRANSPOSE), ``conv1.bias``, flat ``bn1.*``
``pyg1.6.1-1.7.x`` ``conv1.weight`` [in,out] (TRANSPOSE), ``conv1.bias``, ``bn1.module.*``
``pyg>=2.0``       ``conv1.lin.weight`` [out,in] (copy), ``conv1.bias``, ``bn1.module.*``
all -> ``gnn.conv1.lin.weight``, ``gnn.conv1.bias``, ``gnn.bn1.module.*``;
DROP ``module.encoder_q.fc.*``, ``module.encoder_k.*``, ``module.queue``, ``module.queue_ptr``.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radzoo.converters.conversion import Converted, SourceFile
from radzoo.converters.pickles import open_checkpoint, state_dict_of
from radzoo.converters.remap import Rule, apply_rules, require_keys
from radzoo.errors import WeightsError
from radzoo.zoo.registry import get_spec
from radzoo.zoo.spec import ModelSpec
from radzoo.zoo.weights import sha256_file

FORMAT = "graph_ct"
VERSION = "1"

_Q = "module.encoder_q."
_DROP_EXACT = ["module.queue", "module.queue_ptr"]

GRAPH_LAYOUTS: dict[str, list[Rule]] = {
    "pyg<=1.6.0": [
        Rule(_Q + "conv1.weight", "gnn.conv1.lin.weight", exact=True, transpose=True),
        Rule(_Q + "conv1.bias", "gnn.conv1.bias", exact=True),
        Rule(_Q + "bn1.", "gnn.bn1.module."),
    ],
    "pyg1.6.1-1.7.x": [
        Rule(_Q + "conv1.weight", "gnn.conv1.lin.weight", exact=True, transpose=True),
        Rule(_Q + "conv1.bias", "gnn.conv1.bias", exact=True),
        Rule(_Q + "bn1.module.", "gnn.bn1.module."),
    ],
    "pyg>=2.0": [
        Rule(_Q + "conv1.lin.weight", "gnn.conv1.lin.weight", exact=True),
        Rule(_Q + "conv1.bias", "gnn.conv1.bias", exact=True),
        Rule(_Q + "bn1.module.", "gnn.bn1.module."),
    ],
}


def graph_layout(state: Mapping[str, Any]) -> str:
    """Which torch_geometric version wrote the graph file (by its distinct key names)."""
    if _Q + "conv1.lin.weight" in state:
        return "pyg>=2.0"
    if _Q + "bn1.module.weight" in state:
        return "pyg1.6.1-1.7.x"
    if _Q + "bn1.weight" in state and _Q + "conv1.weight" in state:
        return "pyg<=1.6.0"
    raise WeightsError(
        "graph-CT graph file: none of the three known torch_geometric layouts matches "
        f"(first keys: {list(state)[:6]}); is this the graph checkpoint?",
        missing=[_Q + "conv1.weight | " + _Q + "conv1.lin.weight", _Q + "bn1.*"],
    )


def patch_rules(keep_head: bool) -> tuple[list[Rule], list[str]]:
    keep = [Rule(_Q, "patch_encoder.", exclude=(_Q + "fc.",))]
    drop = ["module.encoder_k."]
    if keep_head:
        keep.append(Rule(_Q + "fc.", "patch_proj."))
    else:
        drop.append(_Q + "fc.")
    return keep, drop


def _owned(state: Mapping[str, Any]) -> OrderedDict:
    """Copies of the kept tensors, detached from the (memory-mapped) file."""
    return OrderedDict((k, v.clone()) for k, v in state.items())


def convert(
    patch_path: str | Path,
    graph_path: str | Path,
    *,
    keep_head: bool = False,
    name: str | None = None,
    spec: ModelSpec | None = None,
    trust_pickle: bool = False,
) -> Converted:
    patch_path, graph_path = Path(patch_path), Path(graph_path)
    obj = open_checkpoint(patch_path, trust_pickle=trust_pickle, mmap=True)
    state = state_dict_of(obj, patch_path, location="state_dict")
    what = f"graph-CT patch file {patch_path.name}"
    if graph_layout_or_none(state) is not None and not any(k.startswith(_Q + "downsample1.") for k in state):
        raise WeightsError(f"{what}: this is a graph-CT GRAPH checkpoint; pass it with --graph and the patch file first")
    require_keys(state, [_Q + "conv1.", _Q + "downsample1."], what=what)
    keep, drop = patch_rules(keep_head)
    patch = apply_rules(state, keep, drop, drop_exact=_DROP_EXACT, what=what)
    patch_state = _owned(patch.state)
    epoch_patch = obj.get("epoch")
    del obj, state, patch  # release the mapping (and with it the queue) before anything else is built
    gc.collect()

    gobj = open_checkpoint(graph_path, trust_pickle=trust_pickle)
    gstate = state_dict_of(gobj, graph_path, location="state_dict")
    gwhat = f"graph-CT graph file {graph_path.name}"
    if any(k.startswith(_Q + "downsample1.") for k in gstate):
        raise WeightsError(f"{gwhat}: this is a graph-CT PATCH checkpoint; --graph needs the graph file")
    layout = graph_layout(gstate)
    graph = apply_rules(gstate, GRAPH_LAYOUTS[layout], ["module.encoder_k.", _Q + "fc."], drop_exact=_DROP_EXACT, what=gwhat)

    state_all: OrderedDict = OrderedDict(patch_state)
    state_all.update((k, v.contiguous()) for k, v in graph.state.items())
    base = spec or get_spec("graphct_copdgene")
    return Converted(
        spec=base.with_(
            name=name or base.name,
            arch_args={**dict(base.arch_args), "with_patch_proj": keep_head},
            random_init=False,
        ),
        state=state_all,
        converter=__name__,
        converter_version=VERSION,
        format=FORMAT,
        sources=[SourceFile(patch_path, sha256_file(patch_path), "patch"), SourceFile(graph_path, sha256_file(graph_path), "graph")],
        dropped=graph.dropped,
        details={"graph_layout": layout, "epoch_patch": epoch_patch, "epoch_graph": gobj.get("epoch"), "kept_head": keep_head},
    )


def graph_layout_or_none(state: Mapping[str, Any]) -> str | None:
    try:
        return graph_layout(state)
    except WeightsError:
        return None
