"""IGCL training data: chest X-rays paired with their reports' RadGraph entries.

Input: a manifest (``.csv`` or ``.jsonl``) with columns ``image`` (a path relative to the
manifest) and ``report_id`` (a key of the RadGraph JSON file), and the RadGraph file itself
(``{report_id: {"text", "entities"}}``, the format MIMIC-CXR + RadGraph users have; the original
aligned MIMIC images and graphs by report path the same way).

Bad rows are logged, counted by reason and skipped, never fatal: a missing or non-image file, a
report id absent from the RadGraph file, and RadGraph entries that cannot become a graph (no
entities, a dangling relation id, an unknown label ...: ``radzoo.graphs.RadGraphEntryError``). An
image that turns out unreadable during training is logged and replaced by the next readable pair
(counted in the step metrics as ``replaced_images``).

Images go through the spec's own preprocessing (``radzoo.io`` + the IGCL transform: longer side
320, black 320 canvas, 0-255, normalise, then bicubic 224 without antialiasing): the original
trained on exactly its inference transform, with no augmentation.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from radzoo.errors import InputError, RadzooError
from radzoo.graphs.radgraph_entries import (
    RadGraphEntryError,
    ReportGraph,
    parse_entry,
    read_radgraph,
)
from radzoo.io.json_lines import json_objects

log = logging.getLogger(__name__)

_LOG_LIMIT = 20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


@dataclass(frozen=True)
class GraphPair:
    image: Path
    graph: ReportGraph
    where: str  # manifest row, for messages


@dataclass
class GraphPairs:
    """Usable pairs and the skipped rows counted by reason."""

    source: str
    pairs: list[GraphPair]
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "pairs": len(self.pairs),
            "reports": len({p.graph.report_id for p in self.pairs}),
            "skipped": dict(self.skipped),
            "note": "RadGraph entries as given; radzoo checks them but does not create them",
        }


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        yield from json_objects(path, f"manifest {path}")
        return
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"image", "report_id"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"manifest {path} lacks column(s) {sorted(missing)} (has {reader.fieldnames})")
        yield from enumerate(reader, 2)


def read_graph_pairs(manifest: str | Path, radgraph: str | Path) -> GraphPairs:
    """Pairs of image paths and validated report graphs (see module doc for what is skipped)."""
    from radzoo.io import sniff_format

    manifest, radgraph = Path(manifest), Path(radgraph)
    if not manifest.is_file():
        raise InputError(f"manifest {manifest} does not exist")
    entries = read_radgraph(radgraph)
    graphs: dict[str, ReportGraph | str] = {}
    out = GraphPairs(str(manifest), [])
    logged: Counter = Counter()

    def skip(reason: str, where: str, detail: str) -> None:
        out.skipped[reason] += 1
        logged[reason] += 1
        if logged[reason] <= _LOG_LIMIT:
            log.warning("skipping %s: %s", where, detail)

    for n, row in _rows(manifest):
        where = f"{manifest}, row {n}"
        image, rid = str(row.get("image") or "").strip(), str(row.get("report_id") or "").strip()
        if not image or not rid:
            skip("missing image or report_id", where, "empty image or report_id")
            continue
        path = Path(image).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        try:
            with open(path, "rb") as fh:
                head = fh.read(1024)
        except OSError as exc:
            skip("image missing or unreadable", where, f"{path}: {exc.strerror or exc}")
            continue
        if sniff_format(head) == "unknown":
            skip("not an image", where, f"{path} is not a PNG, JPEG or DICOM file")
            continue
        if rid not in entries:
            skip("report_id not in the RadGraph file", where, f"report {rid!r} is not in {radgraph}")
            continue
        if rid not in graphs:
            try:
                graphs[rid] = parse_entry(rid, entries[rid])
            except RadGraphEntryError as exc:
                graphs[rid] = exc.reason
        graph = graphs[rid]
        if isinstance(graph, str):
            skip(f"bad RadGraph entry: {_reason_kind(graph)}", where, f"report {rid!r}: {graph}")
            continue
        out.pairs.append(GraphPair(path, graph, where))
    if not out.pairs:
        raise InputError(f"no usable image-graph pairs in {manifest} (skipped: {dict(out.skipped)})")
    if out.skipped:
        log.warning("%s: %d usable pairs; skipped %s", manifest, len(out.pairs), dict(out.skipped))
    return out


def _reason_kind(reason: str) -> str:
    for key in ("no entities", "does not exist", "unknown label", "unknown relation", "outside the text", "no report", "no 'entities'"):
        if key in reason:
            return {"does not exist": "dangling relation id", "outside the text": "span outside the text",
                    "no report": "no text", "no 'entities'": "no entities field"}.get(key, key)
    return "invalid"


class GraphPairDataset(Dataset):
    """``{"image": [3, H, W], "graph": Data, "replaced": int}`` per pair (no augmentation, as the original).

    ``transform(path)`` reads and preprocesses an image; ``graph_of(report_graph)`` builds the
    torch_geometric graph (from cached node features).
    """

    def __init__(self, pairs: list[GraphPair], transform: Callable[[Any], torch.Tensor],
                 graph_of: Callable[[ReportGraph], Any]) -> None:
        self.pairs = pairs
        self.transform = transform
        self.graph_of = graph_of

    def __len__(self) -> int:
        return len(self.pairs)

    def _image(self, pair: GraphPair) -> torch.Tensor:
        return torch.as_tensor(self.transform(pair.image), dtype=torch.float32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        replaced = 0
        for attempt in range(len(self.pairs)):
            pair = self.pairs[(index + attempt) % len(self.pairs)]
            try:
                image = self._image(pair)
            except (RadzooError, OSError, ValueError) as exc:
                log.warning("image %s (%s) is unreadable, using the next pair instead: %s", pair.image, pair.where, exc)
                replaced += 1
                continue
            return {"image": image, "graph": self.graph_of(pair.graph), "replaced": replaced}
        raise InputError("no image of the training pairs could be read")


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Images stacked; graphs batched as torch_geometric does; plain tensors only (``to_device``)."""
    from radzoo.graphs.report_graph_data import collate_graphs

    graphs = collate_graphs([it["graph"] for it in items])
    return {
        "image": torch.stack([it["image"] for it in items]),
        "x": graphs.x,
        "edge_index": graphs.edge_index,
        "edge_type": graphs.edge_type,
        "batch": graphs.batch,
        "replaced": torch.tensor(float(sum(it["replaced"] for it in items))),
    }
