"""The shared rule engine: explicit KEEP/DROP/rename rules, then nothing left unexplained.

Each converter lists its rules; a key takes the first KEEP rule whose ``prefix`` matches (and no
``exclude`` prefix does), or is dropped by a DROP prefix, or is an error. This is nanoGPT's
``from_pretrained`` discipline: explicit ignore and transpose lists, every key accounted for.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from radzoo.errors import WeightsError


@dataclass(frozen=True)
class Rule:
    """Rename keys starting with ``prefix`` to ``to`` + rest.

    ``exact=True`` matches the whole key only (``logit_scale``); ``transpose`` stores ``W.T``
    (raw ``feat @ proj`` parameters and PyG 1.x GCN weights -> ``Linear`` layout);
    ``drop_suffix`` drops keys ending with one of these (``embeddings.position_ids``).
    """

    prefix: str
    to: str
    exclude: tuple[str, ...] = ()
    exact: bool = False
    transpose: bool = False
    drop_suffix: tuple[str, ...] = ()

    def matches(self, key: str) -> bool:
        if self.exact:
            return key == self.prefix
        return key.startswith(self.prefix) and not any(key.startswith(e) for e in self.exclude)

    def target(self, key: str) -> str:
        return self.to if self.exact else self.to + key[len(self.prefix) :]


@dataclass
class Remapped:
    """Result of applying rules: the canonical state dict plus an account of what happened."""

    state: OrderedDict[str, torch.Tensor]
    kept: dict[str, str] = field(default_factory=dict)  # original -> canonical
    dropped: list[str] = field(default_factory=list)


def apply_rules(
    state: Mapping[str, Any],
    keep: Sequence[Rule],
    drop: Sequence[str],
    *,
    what: str,
    drop_exact: Sequence[str] = (),
) -> Remapped:
    """Rename/transpose kept keys, drop listed ones; any other key raises ``WeightsError``.

    ``drop`` entries are prefixes; ``drop_exact`` are whole keys. Non-tensor values under a kept
    key are an error too (a corrupt or foreign file).
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    result = Remapped(out)
    unexplained: list[str] = []
    not_tensor: list[str] = []
    for key, value in state.items():
        rule = next((r for r in keep if r.matches(key)), None)
        if rule is not None and any(key.endswith(s) for s in rule.drop_suffix):
            result.dropped.append(key)
            continue
        if rule is None:
            if key in drop_exact or any(key.startswith(p) for p in drop):
                result.dropped.append(key)
            else:
                unexplained.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            not_tensor.append(key)
            continue
        tensor = value.t() if rule.transpose else value
        name = rule.target(key)
        if name in out:
            raise WeightsError(f"{what}: two original keys map to {name!r} (second: {key!r})")
        out[name] = tensor
        result.kept[key] = name
    if unexplained:
        raise WeightsError(
            f"{what}: keys that this format's keep/drop rules do not cover (wrong method for this file, "
            "or a modified model?)",
            unexpected=unexplained,
        )
    if not_tensor:
        raise WeightsError(f"{what}: entries that should be tensors are not", unexpected=not_tensor)
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        out._metadata = remap_metadata(metadata, keep)  # type: ignore[attr-defined]
    return result


def remap_metadata(metadata: Mapping[str, Any], keep: Sequence[Rule]) -> OrderedDict[str, Any]:
    """Carry torch's per-module ``_metadata`` (module versions) over to the renamed prefixes.

    Module paths have no trailing dot, so a path matches a rule when ``path + '.'`` does.
    """
    out: OrderedDict[str, Any] = OrderedDict()
    for path, meta in metadata.items():
        probe = path + "."
        rule = next((r for r in keep if not r.exact and r.matches(probe)), None)
        if rule is not None:
            out[rule.target(probe).rstrip(".")] = meta
    return out


def require_keys(state: Mapping[str, Any], prefixes: Sequence[str], *, what: str) -> None:
    """Fail early, naming the prefixes of which the file has no key at all (wrong file for a format)."""
    absent = [p for p in prefixes if not any(k == p or k.startswith(p) for k in state)]
    if absent:
        sample = list(state)[:8]
        raise WeightsError(
            f"{what}: the file lacks every key under {absent}; first keys in the file: {sample}. "
            "Is this the right method/format for this checkpoint?",
            missing=absent,
        )
