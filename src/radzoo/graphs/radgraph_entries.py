"""RadGraph report entries (the published JSON) -> validated report graphs.

A RadGraph file maps a report id to ``{"text": ..., "entities": {id: entity}}`` (the test split
nests the entities under ``labeler_1``). Each entity has ``tokens``, ``label``, ``start_ix`` /
``end_ix`` (inclusive word indices into ``text.split(" ")``) and ``relations`` (a list of
``[relation, tail entity id]``).

What IGCL makes of an entry (rajpurkarlab/IGCL: src/construct raw data/construct_tu_files.py,
collect_bert_embedding_tu.py, src/radgraph_tu.py), reproduced here:

* one node per entity, in the entry's order;
* the node label is a 4-way one-hot over ``OBS-DP, OBS-DA, OBS-U, ANAT-DP`` (the original indexes
  ``obs-dp, obs-da, obs-u, anat-dp, anat-da, anat-u`` and one-hots with ``num_classes=-1``, i.e. up
  to the largest index present, ANAT-DP, in RadGraph; labels are compared lower-cased);
* one edge per entity with relations, from its **first** relation only, head -> tail, typed
  ``located_at`` / ``modify`` / ``suggestive_of``; self-loops are removed and edges sorted by
  (head, tail) (``remove_self_loops`` + ``coalesce``).

Bad entries raise :class:`RadGraphEntryError` naming the report and the entity: no entities
(the original skipped those graphs), a label outside the four, a span outside the text, an
unknown relation type or a first relation pointing at an entity id that does not exist. Later
relations are not used by IGCL and are not checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radzoo.errors import InputError
from radzoo.io.json_lines import json_objects

#: Node-label one-hot order (the original's label indices 0..3).
ENTITY_LABELS = ("OBS-DP", "OBS-DA", "OBS-U", "ANAT-DP")
#: Relation types (edge one-hot columns 0..2); column 3 is added for reaction-node edges.
RELATIONS = ("located_at", "modify", "suggestive_of")
#: The edge type of the dummy/reaction-node edges added by ``add_reaction_nodes``.
REACTION_EDGE = len(RELATIONS)
NUM_EDGE_TYPES = len(RELATIONS) + 1

_LABEL_INDEX = {name.lower(): i for i, name in enumerate(ENTITY_LABELS)}
_RELATION_INDEX = {name: i for i, name in enumerate(RELATIONS)}


class RadGraphEntryError(InputError):
    """One RadGraph entry cannot become a report graph; the message names the report and why."""

    def __init__(self, report_id: str, reason: str) -> None:
        self.report_id = report_id
        self.reason = reason
        super().__init__(f"RadGraph entry {report_id!r}: {reason}")


@dataclass(frozen=True)
class ReportGraph:
    """A validated report graph: what node features and the graph tensors are built from."""

    report_id: str
    text: str
    entity_ids: tuple[str, ...]
    labels: tuple[int, ...]  # index into ENTITY_LABELS, per node
    spans: tuple[tuple[int, int], ...]  # (start_ix, end_ix) word indices, inclusive, per node
    edges: tuple[tuple[int, int, int], ...]  # (head node, tail node, relation index), sorted

    @property
    def num_nodes(self) -> int:
        return len(self.entity_ids)

    @property
    def words(self) -> list[str]:
        """The report's words as RadGraph indexes them (``text.split(" ")``)."""
        return self.text.split(" ")

    def span_digest(self) -> str:
        """sha256 of what the node text features depend on (text + spans): a feature-cache key."""
        payload = json.dumps({"text": self.text, "spans": [list(s) for s in self.spans]}, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()


def _entities(report_id: str, entry: Any) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise RadGraphEntryError(report_id, f"expected an object with 'text' and 'entities', got {type(entry).__name__}")
    if "entities" not in entry and isinstance(entry.get("labeler_1"), Mapping):
        entities = entry["labeler_1"].get("entities")  # RadGraph test split: first labeler, as the original
    else:
        entities = entry.get("entities")
    if entities is None:
        raise RadGraphEntryError(report_id, "has no 'entities' field")
    if not isinstance(entities, Mapping):
        raise RadGraphEntryError(report_id, f"'entities' must be an object keyed by entity id, got {type(entities).__name__}")
    return entities


def _int(report_id: str, eid: str, entity: Mapping[str, Any], key: str) -> int:
    value = entity.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RadGraphEntryError(report_id, f"entity {eid!r}: {key} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise RadGraphEntryError(report_id, f"entity {eid!r}: {key} must be an integer, got {value!r}") from None


def parse_entry(report_id: str, entry: Any) -> ReportGraph:
    """Validate one RadGraph entry and turn it into a :class:`ReportGraph` (see module doc)."""
    report_id = str(report_id)
    entities = _entities(report_id, entry)
    text = entry.get("text")
    if not isinstance(text, str):
        raise RadGraphEntryError(report_id, "has no report 'text' (a string)")
    if not entities:
        raise RadGraphEntryError(report_id, "has no entities (an empty graph; the original skips these reports)")
    n_words = len(text.split(" "))
    ids = [str(k) for k in entities]
    index = {eid: i for i, eid in enumerate(ids)}
    labels: list[int] = []
    spans: list[tuple[int, int]] = []
    edges: set[tuple[int, int, int]] = set()
    for i, (key, entity) in enumerate(entities.items()):
        eid = str(key)
        if not isinstance(entity, Mapping):
            raise RadGraphEntryError(report_id, f"entity {eid!r} is not an object")
        label = entity.get("label")
        if not isinstance(label, str) or label.lower() not in _LABEL_INDEX:
            raise RadGraphEntryError(
                report_id, f"entity {eid!r} has unknown label {label!r} (IGCL knows {', '.join(ENTITY_LABELS)})"
            )
        labels.append(_LABEL_INDEX[label.lower()])
        start, end = _int(report_id, eid, entity, "start_ix"), _int(report_id, eid, entity, "end_ix")
        if not 0 <= start <= end < n_words:
            raise RadGraphEntryError(
                report_id, f"entity {eid!r} spans words {start}..{end}, outside the text's {n_words} words"
            )
        spans.append((start, end))
        relations = entity.get("relations") or []
        if not isinstance(relations, list):
            raise RadGraphEntryError(report_id, f"entity {eid!r}: 'relations' must be a list")
        if relations:  # IGCL uses the first relation of each entity only
            first = relations[0]
            if not isinstance(first, (list, tuple)) or len(first) != 2:
                raise RadGraphEntryError(report_id, f"entity {eid!r}: relation {first!r} is not [type, entity id]")
            kind, tail = first[0], str(first[1])
            if kind not in _RELATION_INDEX:
                raise RadGraphEntryError(
                    report_id, f"entity {eid!r} has unknown relation {kind!r} (IGCL knows {', '.join(RELATIONS)})"
                )
            if tail not in index:
                raise RadGraphEntryError(
                    report_id, f"entity {eid!r}: relation {kind} points at entity {tail!r}, which does not exist"
                )
            if index[tail] != i:  # remove_self_loops
                edges.add((i, index[tail], _RELATION_INDEX[kind]))
    return ReportGraph(
        report_id=report_id,
        text=text,
        entity_ids=tuple(ids),
        labels=tuple(labels),
        spans=tuple(spans),
        edges=tuple(sorted(edges)),  # coalesce: sorted by (head, tail); one edge per head, so no duplicates
    )


def read_radgraph(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a RadGraph JSON file (``{report_id: entry}``) or JSON Lines (one object per line with a
    ``report_id`` / ``id`` field, or one ``{report_id: entry}`` pair per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"RadGraph file {path} does not exist")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        out: dict[str, Any] = {}
        for n, obj in json_objects(path, str(path)):
            rid = obj.get("report_id", obj.get("id"))
            if rid is not None:
                out[str(rid)] = obj
            elif len(obj) == 1:
                (key, value), = obj.items()
                out[str(key)] = value
            else:
                raise InputError(f"{path}, line {n}: give a 'report_id' field or one {{id: entry}} pair")
        return out
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"RadGraph file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"RadGraph file {path} must hold one object keyed by report id")
    return {str(k): v for k, v in data.items()}


def iter_entries(entries: Any) -> Iterator[tuple[str, Any]]:
    """``(report_id, entry)`` pairs from a mapping, a path to a RadGraph file, or a list of entries
    (ids: each entry's ``report_id`` / ``id`` field, else its position)."""
    if isinstance(entries, (str, os.PathLike)):
        entries = read_radgraph(entries)
    if isinstance(entries, Mapping):
        if "entities" in entries and "text" in entries:  # one bare entry
            yield str(entries.get("report_id", entries.get("id", "0"))), entries
            return
        for key, value in entries.items():
            yield str(key), value
        return
    if isinstance(entries, (list, tuple)):
        for i, value in enumerate(entries):
            rid = value.get("report_id", value.get("id", i)) if isinstance(value, Mapping) else i
            yield str(rid), value
        return
    raise InputError(
        f"expected RadGraph entries as a mapping {{report_id: entry}}, a list of entries or a path, "
        f"got {type(entries).__name__}"
    )
