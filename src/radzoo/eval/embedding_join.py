"""Embeddings for the labelled rows: reused from a ``radzoo extract`` output, or computed into a
cache folder by the same extraction code (so a rerun, or a later ``--features`` run, reuses them),
plus the raw-pixel features of the pixel baseline.

Joining a labels file to an extraction output: by absolute ``path`` (relative CSV paths start at
the image root), by file ``sha256`` or by DICOM ``sop_instance_uid`` (columns of the labels CSV).
Pseudonymised outputs are joined by applying the same secret to the labels' keys.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError, RadzooError
from radzoo.eval.label_table import LabelledData

log = logging.getLogger(__name__)

JOINS = ("path", "sha256", "sop_instance_uid")
DEFAULT_PIXEL_SIZE = 32
_SHOW = 5  # rows named in an error message


@dataclass
class EmbeddingTable:
    """Embeddings ``x`` of the labelled rows ``rows`` (indices into the data), and the rows dropped."""

    x: np.ndarray
    rows: np.ndarray
    sha256: list[str | None]
    identity: dict[str, Any]
    source: str
    dropped: list[dict[str, Any]] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "model"


def _row_list(data: LabelledData, rows: list[int]) -> str:
    shown = ", ".join(f"row {data.lines[i]} ({data.paths[i] or '?'})" for i in rows[:_SHOW])
    return shown + (f" and {len(rows) - _SHOW} more" if len(rows) > _SHOW else "")


def read_extraction(
    folder: str | os.PathLike[str],
    data: LabelledData,
    *,
    join: str = "path",
    drop_missing: bool = False,
    pseudonym_secret: bytes | str | None = None,
    require_complete: bool = True,
) -> EmbeddingTable:
    """The embeddings of ``data``'s rows from a finished ``radzoo extract`` output folder.

    Rows without an embedding raise an ``InputError`` naming them (and whether extraction failed
    on them), unless ``drop_missing``: then they are listed in ``dropped``.
    """
    from radzoo.extract.pseudonym import Pseudonymizer
    from radzoo.extract.sink import read_manifest, read_table

    folder = Path(folder)
    if join not in JOINS:
        raise InputError(f"join must be one of {', '.join(JOINS)}, got {join!r}")
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None:
        raise InputError(f"{folder} is not a radzoo extract output folder (no manifest.json)")
    if require_complete and manifest.get("status") != "complete":
        raise InputError(
            f"{folder}: the extraction is {manifest.get('status')!r}, not complete; rerun the same radzoo extract "
            "command to finish it"
        )
    ident = dict(manifest.get("model") or {})
    pseudo = None
    if manifest.get("pseudonymized"):
        if pseudonym_secret is None:
            raise InputError(f"{folder} is pseudonymised: pass the same secret (--pseudonymize-key-file) to join it")
        pseudo = Pseudonymizer(pseudonym_secret)
        if pseudo.fingerprint != manifest.get("pseudonym_key"):
            raise InputError(f"{folder} was pseudonymised with a different secret than the one given")

    if join == "path":
        if any(p is None for p in data.paths):
            raise InputError(f"joining by path needs a path in every row of {data.source}")
        keys = [str(p) for p in data.paths]
    else:
        if join not in data.keys:
            raise InputError(f"joining by {join} needs a {join!r} column in {data.source}")
        keys = [(k.lower() if join == "sha256" and k else k) for k in data.keys[join]]
        empty = [i for i, k in enumerate(keys) if not k]
        if empty:
            raise InputError(f"{data.source}: empty {join!r} in {_row_list(data, empty)}")
    if pseudo is not None:
        keys = [pseudo(k) for k in keys]

    cols = ["path", "sha256", "sop_instance_uid", "embedding", "model", "revision", "preprocess", "output",
            "extracted_at"]
    table = read_table(folder, "embeddings", columns=cols)
    where: dict[str, int] = {}
    if table is not None:
        same = np.ones(table.num_rows, dtype=bool)
        for f in ("model", "revision", "preprocess", "output"):
            same &= np.asarray(table.column(f).to_pylist(), dtype=object) == ident.get(f)
        stored = table.column(join).to_pylist()
        stamps = table.column("extracted_at").to_pylist()
        for r, k in enumerate(stored):
            if same[r] and k is not None:
                k = k.lower() if join == "sha256" else k
                if k not in where or stamps[r] > stamps[where[k]]:  # a re-extracted (changed) file: newest row
                    where[k] = r
    found = [i for i, k in enumerate(keys) if k in where]
    missing = [i for i, k in enumerate(keys) if k not in where]
    failed = _failures(folder, ident) if missing else {}
    dropped = []
    for i in missing:
        reason = failed.get(keys[i]) if join == "path" else None
        dropped.append({"row": data.lines[i], "path": str(data.paths[i]) if data.paths[i] else None,
                        "reason": f"extraction failed: {reason}" if reason else f"not in the extraction output ({join})"})
    if missing and not drop_missing:
        n_failed = sum(1 for d in dropped if d["reason"].startswith("extraction failed"))
        raise InputError(
            f"{len(missing)} of {len(data)} rows of {data.source} have no embedding in {folder} (joined by {join}): "
            f"{_row_list(data, missing)}"
            + (f"; {n_failed} of them failed extraction (see {folder}/errors)" if n_failed else "")
            + ". Extract them with radzoo extract, join by another key (--join), or pass --drop-missing"
        )
    dim = int(ident.get("dim") or 0)
    if found:
        take = np.asarray([where[keys[i]] for i in found])
        emb = table.column("embedding").combine_chunks().take(take)  # type: ignore[union-attr]
        x = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(found), -1)
        sha = [table.column("sha256")[int(r)].as_py() for r in take]  # type: ignore[union-attr]
    else:
        x, sha = np.zeros((0, dim), dtype=np.float32), []
    return EmbeddingTable(x, np.asarray(found, dtype=np.int64), sha, ident, f"radzoo extract output {folder}", dropped)


def _failures(folder: Path, ident: dict[str, Any]) -> dict[str, str]:
    """path -> last error message, from the errors table (for messages about missing rows)."""
    from radzoo.extract.sink import read_table

    errors = read_table(folder, "errors", columns=["path", "message", "model", "output"])
    if errors is None:
        return {}
    return {r["path"]: r["message"] for r in errors.to_pylist() if r["model"] == ident.get("model")}


def compute_embeddings(
    model: Any,
    data: LabelledData,
    cache: str | os.PathLike[str],
    *,
    output: str | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    quiet: bool = True,
) -> EmbeddingTable:
    """Embed ``data``'s images with ``model`` through ``radzoo.extract.extract_features`` into a
    subfolder of ``cache`` named after the model identity; rows already there are reused. Images
    that fail to read are dropped and listed (the run goes on)."""
    from radzoo.extract.api import extract_features
    from radzoo.extract.state import identity_of

    model.spec.require("embed", "evaluation on 2D image embeddings")
    if any(p is None for p in data.paths):
        raise InputError(f"computing embeddings needs an image path in every row of {data.source}")
    ident = identity_of(model, output)
    folder = Path(cache) / _slug(f"{ident.model}-{ident.output}-{ident.revision[:12]}-{ident.preprocess[:12]}")
    folder.mkdir(parents=True, exist_ok=True)
    inputs = folder.with_name(folder.name + ".inputs.txt")  # a file list keeps the manifest small
    inputs.write_text("".join(f"{p}\n" for p in sorted({str(p) for p in data.paths})))
    result = extract_features(model, [f"@{inputs}"], folder, output=ident.output, batch_size=batch_size,
                              workers=workers, quiet=quiet)
    table = read_extraction(folder, data, join="path", drop_missing=True, require_complete=False)
    table.source = f"computed by radzoo eval, cached in {folder}"
    if result.counts.failed:
        log.warning("%d images could not be embedded (see %s/errors)", result.counts.failed, folder)
    return table


def raw_pixel_features(data: LabelledData, rows: np.ndarray, size: int = DEFAULT_PIXEL_SIZE) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The pixel baseline's features: each image read like the models read it (grayscale in
    [0, 1]), squashed to ``size`` x ``size`` by area averaging, flattened. Returns (features of the
    readable rows, dropped rows); unreadable rows get NaN features for the caller to drop."""
    from PIL import Image

    from radzoo.zoo.pixels import to_pixels

    if size < 2:
        raise InputError(f"pixel baseline size must be >= 2, got {size}")
    x = np.full((len(rows), size * size), np.nan, dtype=np.float32)
    dropped = []
    for n, i in enumerate(rows):
        path = data.paths[i]
        if path is None:
            raise InputError(f"the raw-pixels baseline needs image paths; {data.where(int(i))} has none")
        try:
            pixels = to_pixels(path, int(i), "cxr")
        except RadzooError as exc:
            dropped.append({"row": data.lines[i], "path": str(path), "reason": f"raw-pixels: {exc}"})
            continue
        small = Image.fromarray(np.asarray(pixels, dtype=np.float32)).resize((size, size), Image.Resampling.BOX)
        x[n] = np.asarray(small, dtype=np.float32).ravel()
    return x, dropped
