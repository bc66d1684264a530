"""Converters: original research checkpoints -> zoo artifacts (explicit per-format rules, strict checks).

``convert(fmt, checkpoint, out, **options)`` converts and writes an artifact atomically. Formats:

* ``moco_cxr``    MoCo-CXR ``.pth.tar`` (resnet18 / resnet50 / densenet121); ``keep_head``, ``arch``
* ``prior``       PRIOR, either release (told apart by PRIOR's own keys); ``prior_image``, ``prior_full``
* ``lovt``        LoVT Lightning ``.ckpt`` (``tokenizer`` required)
* ``igcl``        IGCL state dict (fc_layers read from the keys)
* ``graph_ct``    graph-CT patch file + ``graph=`` graph file

Heavy imports stay in the per-format modules.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from radzoo.errors import InputError

#: format name -> (module, function) that returns a ``Converted``
FORMATS: dict[str, tuple[str, str]] = {
    "moco_cxr": ("radzoo.converters.mococxr_checkpoint", "convert"),
    "prior": ("radzoo.converters.prior_checkpoint", "convert"),
    "prior_image": ("radzoo.converters.prior_checkpoint", "convert_image"),
    "prior_full": ("radzoo.converters.prior_checkpoint", "convert_full"),
    "lovt": ("radzoo.converters.lovt_checkpoint", "convert"),
    "igcl": ("radzoo.converters.igcl_checkpoint", "convert"),
    "graph_ct": ("radzoo.converters.graphct_checkpoint", "convert"),
}


def converted(fmt: str, checkpoint: str | os.PathLike[str], **options: Any) -> Any:
    """Run the converter of ``fmt`` (no writing); returns a ``Converted``."""
    if fmt not in FORMATS:
        raise InputError(f"unknown checkpoint format {fmt!r}; known: {', '.join(FORMATS)}")
    module, func = FORMATS[fmt]
    fn = getattr(importlib.import_module(module), func)
    options = {k: v for k, v in options.items() if v is not None}
    if fmt == "graph_ct":
        graph = options.pop("graph", None)
        if graph is None:
            raise InputError("graph_ct needs both files: the patch checkpoint and graph=GRAPH (--graph GRAPH.pth.tar)")
        return fn(Path(checkpoint), Path(graph), **options)
    if "graph" in options:
        raise InputError(f"--graph applies to graph_ct only, not {fmt}")
    try:
        return fn(Path(checkpoint), **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise InputError(f"format {fmt}: {exc}") from None
        raise


def convert(
    fmt: str, checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False, **options: Any
) -> Path:
    """Convert ``checkpoint`` (format ``fmt``) into the artifact directory ``out`` (atomic)."""
    from radzoo.converters.conversion import write_converted

    return write_converted(converted(fmt, checkpoint, **options), out, overwrite=overwrite)


__all__ = ["FORMATS", "convert", "converted"]
