"""ONNX graphs for the default path: the artifact's own export, else exported once and kept.

``radzoo.load(..., runtime="auto"|"onnx")`` needs a parity-checked ONNX export of exactly the
weights it loaded. ``find_or_export`` finds or builds one, in this order:

1. **The artifact's export** (``config.json`` "onnx" section): used when every graph the model
   runs is there, exported from these weights, and each file's sha256 still matches. A changed
   (corrupt) or stale (other weights) file is rebuilt, with a warning.
2. **Otherwise it exports once**: into the artifact's ``onnx/`` folder when the artifact folder
   is writable (``config.json`` and the card record the graphs, exactly as ``radzoo export``
   would), else into ``$RADZOO_HOME/onnx-cache/<key>/``, keyed by the weights' sha256, the
   architecture, the radzoo version and the opset. Random-weight models (no folder) and Hub
   snapshots (the Hub cache is not ours to change) always use the cache.
3. **Concurrent first loads** (threads or processes) take a file lock on the target folder; the
   second one waits and then finds the finished export. Graph files are exported to a temp dir,
   parity-checked and moved with ``os.replace``; the section (``config.json`` / ``onnx.json``)
   is replaced atomically last, so a reader never sees half an export.
4. **A failed export** (parity above tolerance, a tracer error) is remembered in the cache
   folder (``failed.json``) for this torch + onnxruntime, so ``auto`` goes straight to torch on
   the next load instead of tracing again; the reason is in ``model.runtime.reason``.

A folder counts as read-only when its permission bits say so (even for root, who could write
anyway) or when a probe file cannot be created (read-only mounts).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radzoo import __version__
from radzoo.errors import ArtifactError
from radzoo.onnx.export import (
    DEFAULT_OPSET,
    ParityError,
    atomic_write_text,
    current_config,
    export_graphs,
    export_lock,
    section_header,
    write_onnx_section,
)
from radzoo.zoo.model import ZooModel
from radzoo.zoo.weights import sha256_file

log = logging.getLogger(__name__)

CACHE_DIR = "onnx-cache"
SECTION_FILE = "onnx.json"
FAILED_FILE = "failed.json"


class ExportUnavailable(ArtifactError):
    """The model's graphs cannot be exported with parity here; the message says why."""


class StaleExportWarning(UserWarning):
    """A cached or artifact ONNX file no longer matches its record and is being rebuilt."""


@dataclass
class GraphStore:
    """Where a model's graphs are: files are ``root / entry["file"]``; ``section`` is the record."""

    root: Path
    section: dict[str, Any]
    where: str  # "artifact" or "cache"
    built: bool  # exported by this call
    weights_sha: str | None = None  # the weights every graph here was exported from

    def describe(self) -> str:
        how = "exported now" if self.built else "found"
        place = "the artifact's onnx/ folder" if self.where == "artifact" else f"the ONNX cache {self.root}"
        return f"{how} in {place}"


# ---- identity of what is exported ---------------------------------------------------------------


def weights_sha256(model: ZooModel) -> str:
    """sha256 of the model's weights: the artifact's recorded hash, else one over the state dict
    (names, dtypes, shapes and bytes; random-weight builds), computed once per model."""
    import torch

    sha = model.config.get("weights", {}).get("sha256")
    if sha:
        return str(sha)
    if "weights_sha256" not in model._cache:
        h = hashlib.sha256()
        for name, tensor in sorted(model.net.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        model._cache["weights_sha256"] = h.hexdigest()
    return str(model._cache["weights_sha256"])


def arch_digest(model: ZooModel) -> str:
    """Short hash of what shapes the graphs besides the weights: the architecture, outputs and input
    size, and the source of the code that defines and exports them (``radzoo/nets``, the graph
    wrappers and the exporter), so a cache never serves graphs of code that has since changed."""
    spec = model.spec
    payload = {
        "arch": spec.arch,
        "arch_args": spec.to_dict()["arch_args"],
        "outputs": dict(spec.outputs),
        "preprocess": spec.preprocess.digest(),
        "code": _code_digest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    import radzoo.nets

    h = hashlib.sha256()
    files = sorted(Path(radzoo.nets.__file__).parent.glob("*.py"))
    files += [Path(__file__).parent / n for n in ("graphs.py", "export.py")]
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def needed_graphs(model: ZooModel) -> list[str]:
    """The graphs a runtime serves for this model: every image output, or graph-CT's two graphs."""
    if "ct" in model.capabilities:
        return ["patch_encoder", "gnn"]
    return [f"image_{o}" for o in model.spec.outputs if o in model.net.image_outputs]


def cache_root() -> Path:
    from radzoo.zoo.home import radzoo_home

    return radzoo_home() / CACHE_DIR


def cache_folder(model: ZooModel, opset: int = DEFAULT_OPSET) -> Path:
    """``$RADZOO_HOME/onnx-cache/<name>-<weights sha>-<arch>-radzoo<version>-opset<N>``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.name)[:64]
    key = f"{name}-{weights_sha256(model)[:16]}-{arch_digest(model)}-radzoo{__version__}-opset{opset}"
    return cache_root() / key


def writable(folder: Path) -> bool:
    """True when radzoo may write into ``folder`` (see the module docs for read-only)."""
    try:
        if not folder.is_dir() or not folder.stat().st_mode & 0o222:
            return False
        if not os.access(folder, os.W_OK):
            return False
        config = folder / "config.json"
        if config.exists() and not config.stat().st_mode & 0o222:
            return False
        probe = folder / f".radzoo-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


# ---- checking a record against its files --------------------------------------------------------


def section_problem(root: Path, section: dict[str, Any] | None, needed: list[str], weights_sha: str,
                    *, variant: str | None = None) -> str | None:
    """``None`` when ``section`` holds every ``needed`` graph (of ``variant``, e.g. "int8")
    of these weights with intact files; ``"missing"`` when some are not there; else what is wrong."""
    section = section or {}
    graphs = (section.get(variant) or {}).get("graphs", {}) if variant else section.get("graphs", {})
    if not all(g in graphs for g in needed):
        return "missing"
    for name in needed:
        entry = graphs[name]
        path = root / entry.get("file", "")
        if entry.get("weights_sha256") and entry["weights_sha256"] != weights_sha:
            return f"{path} was exported from other weights (stale)"
        if not path.is_file():
            return f"{path} listed in the record is missing"
        if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            return f"{path}: sha256 does not match its record (corrupt or changed after export)"
        if variant:
            source = section.get("graphs", {}).get(name, {}).get("sha256")
            if entry.get("source_sha256") and source and entry["source_sha256"] != source:
                return f"{path} was derived from an older fp32 graph (stale)"
    return None


def _warn_rebuild(problem: str) -> None:
    message = f"{problem}; rebuilding it"
    log.warning(message)
    warnings.warn(message, StaleExportWarning, stacklevel=4)


def _read_record(path: Path) -> dict[str, Any] | None:
    """A JSON object written by this module, or None when missing or damaged (then it is rebuilt,
    like a damaged graph)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_cache_section(folder: Path) -> dict[str, Any] | None:
    return _read_record(folder / SECTION_FILE)


def write_cache_section(folder: Path, section: dict[str, Any]) -> None:
    atomic_write_text(folder / SECTION_FILE, json.dumps(section, indent=2) + "\n")


def _versions() -> dict[str, str]:
    import torch

    from radzoo.extras import require_extra

    ort = require_extra("onnx", "onnxruntime", feature="ONNX export")

    return {"torch": torch.__version__, "onnxruntime": ort.__version__, "radzoo": __version__}


def _known_failure(folder: Path, weights_sha: str | None = None) -> str | None:
    data = _read_record(folder / FAILED_FILE)
    if data is None:
        return None
    if data.get("versions") != _versions():
        return None  # another torch/onnxruntime may export it: try again
    if weights_sha and data.get("weights_sha256", weights_sha) != weights_sha:
        return None  # recorded for other weights
    return str(data.get("reason") or "an earlier export failed")


def _remember_failure(folder: Path, reason: str, weights_sha: str | None = None) -> None:
    record: dict[str, Any] = {"reason": reason, "versions": _versions()}
    if weights_sha:
        record["weights_sha256"] = weights_sha
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / FAILED_FILE, json.dumps(record) + "\n")
    except OSError as exc:  # an unwritable cache only costs a retry next time
        log.debug("cannot record the failed export in %s: %s", folder, exc)


def remember_failure_in_artifact(directory: Path, reason: str) -> None:
    """Record in the artifact folder itself (``onnx/failed.json``) that its graphs do not export
    with parity here, so a read-only copy (a bento) goes straight to torch instead of exporting
    again at start-up (``radzoo bento build``)."""
    from radzoo.zoo.artifact import read_config

    sha = read_config(directory).get("weights", {}).get("sha256")
    _remember_failure(directory / "onnx", reason, str(sha) if sha else None)


# ---- the one entry point ------------------------------------------------------------------------


def find_or_export(model: ZooModel, graphs: list[str] | None = None, *, into_artifact: bool = True,
                   cache_only: bool = False, opset: int = DEFAULT_OPSET, parity_tol: float | None = None) -> GraphStore:
    """The parity-checked fp32 ``graphs`` of ``model`` (default: every graph a runtime serves, see
    ``needed_graphs``; see the module docs for where they are found or exported).

    ``into_artifact=False`` keeps the artifact folder untouched (Hub snapshots);
    ``cache_only=True`` ignores the artifact's own export too (a read-only artifact that must
    gain derived graphs). Raises ``ExportUnavailable`` with the reason when the graphs do not
    export with parity.
    """
    from radzoo.onnx import export

    parity_tol = export.PARITY_TOL if parity_tol is None else parity_tol
    needed = needed_graphs(model) if graphs is None else list(graphs)
    if not needed:
        raise ExportUnavailable(f"model {model.name!r} has no graphs that onnxruntime could run")
    sha = weights_sha256(model)
    directory = Path(model.directory) if model.directory is not None else None
    if directory is not None and not cache_only:
        problem = section_problem(directory, model.config.get("onnx"), needed, sha)
        if problem is None:
            return GraphStore(directory, model.config["onnx"], "artifact", False, sha)
        if problem != "missing":
            _warn_rebuild(problem)
        failed = _known_failure(directory / "onnx", sha)  # recorded in the artifact (a bento's read-only model)
        if failed:
            raise ExportUnavailable(failed)
        if into_artifact and writable(directory):
            return _export_into_artifact(model, needed, sha, opset, parity_tol)
    return _export_into_cache(model, needed, sha, opset, parity_tol)


def _export_into_artifact(model: ZooModel, needed: list[str], sha: str, opset: int, parity_tol: float) -> GraphStore:
    from radzoo.onnx.graphs import graph_defs

    directory = Path(model.directory)  # type: ignore[arg-type]
    failed = _known_failure(cache_folder(model, opset))
    if failed:
        raise ExportUnavailable(failed)
    folder = cache_folder(model, opset)
    with export_lock(directory):
        config = current_config(model)
        if section_problem(directory, config.get("onnx"), needed, sha) is None:  # another process finished it
            model.config["onnx"] = config["onnx"]
            return GraphStore(directory, config["onnx"], "artifact", False, sha)
        defs = [d for d in graph_defs(model) if d.name in needed]
        try:
            entries = export_graphs(model, defs, directory, opset, parity_tol, sha)
        except (ParityError, ArtifactError) as exc:
            _remember_failure(folder, str(exc))
            raise ExportUnavailable(str(exc)) from exc
        previous = config.get("onnx") or {}
        kept = {k: v for k, v in previous.get("graphs", {}).items()
                if k not in entries and v.get("weights_sha256") == sha and previous.get("opset") == opset}
        section = {**section_header(opset, parity_tol), "graphs": {**kept, **entries}}
        write_onnx_section(directory, config, section)
    model.config["onnx"] = section
    log.info("%s: exported %s to ONNX in %s", model.name, ", ".join(needed), directory / "onnx")
    return GraphStore(directory, section, "artifact", True, sha)


def _export_into_cache(model: ZooModel, needed: list[str], sha: str, opset: int, parity_tol: float) -> GraphStore:
    from radzoo.onnx.graphs import graph_defs

    folder = cache_folder(model, opset)
    section = read_cache_section(folder)
    problem = section_problem(folder, section, needed, sha)
    if problem is None:
        return GraphStore(folder, section or {}, "cache", False, sha)
    failed = _known_failure(folder)
    if failed:
        raise ExportUnavailable(failed)
    if problem != "missing":
        _warn_rebuild(problem)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportUnavailable(f"the ONNX cache {folder} cannot be created ({exc}); set RADZOO_HOME") from exc
    with export_lock(folder):
        section = read_cache_section(folder)
        if section_problem(folder, section, needed, sha) is None:  # another process finished it
            return GraphStore(folder, section or {}, "cache", False, sha)
        keep = {k: v for k, v in (section or {}).get("graphs", {}).items() if k not in needed}
        defs = [d for d in graph_defs(model) if d.name in needed]
        try:
            entries = export_graphs(model, defs, folder, opset, parity_tol, sha)
        except (ParityError, ArtifactError) as exc:
            _remember_failure(folder, str(exc))
            raise ExportUnavailable(str(exc)) from exc
        section = {
            **section_header(opset, parity_tol),
            "model": model.name,
            "weights_sha256": sha,
            "radzoo_version": __version__,
            "graphs": {**keep, **entries},
        }
        write_cache_section(folder, section)
    log.info("%s: exported %s to the ONNX cache %s", model.name, ", ".join(needed), folder)
    return GraphStore(folder, section, "cache", True, sha)


def save_store_section(store: GraphStore, model: ZooModel) -> None:
    """Write ``store.section`` back where it came from (call under ``export_lock(store.root)``)."""
    if store.where == "artifact":
        config = current_config(model)
        write_onnx_section(store.root, config, store.section)
        model.config["onnx"] = store.section
    else:
        write_cache_section(store.root, store.section)


def reload_section(store: GraphStore, model: ZooModel) -> dict[str, Any]:
    """The store's record as it is on disk now (another process may have added to it)."""
    if store.where == "artifact":
        return dict(current_config(model).get("onnx") or {})
    return dict(read_cache_section(store.root) or {})
