"""A cache of IGCL node text features, computed once per report (the BERT pass dominates the cost).

Layout of the cache directory::

    manifest.json            format, text-tower digest, hidden size, one row per report
                             (shard file, span digest, node count)
    shard-00000.safetensors  one float32 tensor [nodes, H] per report id
    ...

Writes are atomic: a shard is written to a temp file and renamed, then the manifest is replaced
the same way, so an interrupted build leaves at most an orphan shard (removed on the next open)
and never a manifest that names missing data. The manifest records the text tower's digest
(config + weights + vocabulary): a cache made with another tower is refused, never mixed in.
A report whose text or entity spans changed (its span digest differs) is recomputed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from radzoo.errors import ArtifactError
from radzoo.graphs.node_text import NodeTextTower
from radzoo.graphs.radgraph_entries import ReportGraph

log = logging.getLogger(__name__)

FORMAT = "radzoo.graphs.node_features/1"
MANIFEST = "manifest.json"


class NodeFeatureCache:
    """Node text features keyed by report id; see the module doc for layout and guarantees."""

    def __init__(self, directory: str | os.PathLike[str], tower_digest: str, hidden_size: int) -> None:
        self.directory = Path(directory)
        self.tower_digest = tower_digest
        self.hidden_size = int(hidden_size)
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()
        path = self.directory / MANIFEST
        if path.is_file():
            try:
                manifest = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ArtifactError(f"node-feature cache {path} is not valid JSON: {exc}; delete {self.directory}") from exc
            if manifest.get("format") != FORMAT:
                raise ArtifactError(f"{path}: unknown cache format {manifest.get('format')!r} (expected {FORMAT})")
            if manifest.get("tower_digest") != tower_digest or int(manifest.get("hidden_size", -1)) != self.hidden_size:
                raise ArtifactError(
                    f"node-feature cache {self.directory} was computed with another text tower "
                    f"(digest {str(manifest.get('tower_digest'))[:12]}, width {manifest.get('hidden_size')}; this "
                    f"tower: {tower_digest[:12]}, width {self.hidden_size}); use another cache directory or delete it"
                )
            self.reports: dict[str, dict[str, Any]] = dict(manifest.get("reports", {}))
            self._next_shard = int(manifest.get("next_shard", 0))
        else:
            self.reports = {}
            self._next_shard = 0
        self._remove_orphans()

    @classmethod
    def for_tower(cls, directory: str | os.PathLike[str], tower: NodeTextTower) -> NodeFeatureCache:
        return cls(directory, tower.digest(), tower.hidden_size)

    def _remove_orphans(self) -> None:
        if not self.directory.is_dir():
            return
        named = {row["shard"] for row in self.reports.values()}
        for path in self.directory.glob("shard-*.safetensors*"):
            if path.name not in named:
                log.info("node-feature cache: removing %s left by an interrupted build", path)
                path.unlink(missing_ok=True)

    def __contains__(self, report_id: str) -> bool:
        return report_id in self.reports

    def __len__(self) -> int:
        return len(self.reports)

    def is_current(self, graph: ReportGraph) -> bool:
        row = self.reports.get(graph.report_id)
        return row is not None and row["span_digest"] == graph.span_digest() and row["nodes"] == graph.num_nodes

    def get(self, report_id: str) -> torch.Tensor:
        """``[nodes, H]`` float32 text features of one report (shards are memory-mapped lazily)."""
        from safetensors import safe_open

        row = self.reports.get(report_id)
        if row is None:
            raise KeyError(f"report {report_id!r} is not in the node-feature cache {self.directory}")
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own handles
            self._handles, self._pid = {}, os.getpid()
        shard = row["shard"]
        if shard not in self._handles:
            path = self.directory / shard
            if not path.is_file():
                raise ArtifactError(f"node-feature cache {self.directory}: {shard} is missing; delete the cache to rebuild")
            self._handles[shard] = safe_open(str(path), framework="pt", device="cpu")
        return self._handles[shard].get_tensor(report_id)

    def add(self, features: dict[str, tuple[ReportGraph, torch.Tensor]]) -> None:
        """Write one new shard with ``{report_id: (graph, [nodes, H] features)}``, then the manifest."""
        from safetensors.torch import save_file

        if not features:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        shard = f"shard-{self._next_shard:05d}.safetensors"
        tensors = {}
        for rid, (graph, feats) in features.items():
            if tuple(feats.shape) != (graph.num_nodes, self.hidden_size):
                raise ValueError(f"report {rid!r}: features {tuple(feats.shape)} != ({graph.num_nodes}, {self.hidden_size})")
            tensors[rid] = feats.detach().to(torch.float32).cpu().contiguous()
        tmp = self.directory / (shard + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "tower_digest": self.tower_digest})
        os.replace(tmp, self.directory / shard)
        self._next_shard += 1
        for rid, (graph, _) in features.items():
            self.reports[rid] = {"shard": shard, "span_digest": graph.span_digest(), "nodes": graph.num_nodes}
        self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = {
            "format": FORMAT,
            "tower_digest": self.tower_digest,
            "hidden_size": self.hidden_size,
            "next_shard": self._next_shard,
            "reports": self.reports,
        }
        tmp = self.directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest) + "\n")
        os.replace(tmp, self.directory / MANIFEST)

    def build(
        self,
        graphs: Iterable[ReportGraph],
        tower: NodeTextTower,
        *,
        shard_size: int = 512,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Compute and store the features of every graph not cached yet (or whose spans changed).

        Returns counts: ``cached`` (already there), ``computed``, ``failed`` (reports too long for
        the tower; logged and left out). Shards are flushed every ``shard_size`` reports, so an
        interrupted build keeps what it finished.
        """
        from radzoo.errors import InputError

        if tower.digest() != self.tower_digest:
            raise ArtifactError(f"node-feature cache {self.directory} belongs to another text tower")
        counts = {"cached": 0, "computed": 0, "failed": 0}
        pending: dict[str, tuple[ReportGraph, torch.Tensor]] = {}
        for graph in graphs:
            if self.is_current(graph):
                counts["cached"] += 1
                continue
            try:
                pending[graph.report_id] = (graph, tower.span_features(graph))
            except InputError as exc:
                log.warning("report %r: node features not computed: %s", graph.report_id, exc)
                counts["failed"] += 1
                continue
            counts["computed"] += 1
            if progress is not None:
                progress(1)
            if len(pending) >= shard_size:
                self.add(pending)
                pending = {}
        self.add(pending)
        return counts
