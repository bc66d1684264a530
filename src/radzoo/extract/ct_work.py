"""The CT core of batch extraction: one volume (file or DICOM series) -> one row of graph-CT features.

Two plain functions, like the 2D core in ``work.py``:

* ``hash_volume``: the resume key (file sha256, or the series hash documented in ``volumes.py``);
  cheap next to the features, so an unchanged-but-touched volume is skipped before it is read.
* ``embed_volume``: ``radzoo.ct.features`` with ``require_qa=True``; the row holds the chosen output
  and the QA columns. A volume without lungs (``LungNotFoundError``), failing QA
  (``CTQualityError``) or unreadable (``VolumeReadError``) becomes a ``Failure`` value.

Volumes are heavy (tens of seconds, hundreds of MB): callers run them one at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError
from radzoo.extract.discovery import InputItem
from radzoo.extract.work import Failure, Prepared

#: outputs of a graph-CT model and how a row stores them
CT_OUTPUTS = ("subject", "node", "patch")

_EMPTY = np.zeros((0,), dtype=np.float32)


def ct_output_dim(model: Any, output: str) -> int:
    """Row width: ``subject`` is [D]; ``node`` / ``patch`` are [581, D] stored flattened row-major."""
    spec = model.spec
    if output not in CT_OUTPUTS or output not in spec.outputs:
        raise InputError(f"model {model.name!r} offers outputs {', '.join(sorted(spec.outputs))} for CT; got {output!r}")
    dim = int(spec.outputs[output])
    if output == "subject":
        return dim
    return int(spec.arch_args.get("num_patches", 581)) * dim


def _sha256(path: str) -> tuple[str, int, int]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest(), int(st.st_size), int(st.st_mtime_ns)


def series_sha256(member_digests: list[str]) -> str:
    """Content hash of a DICOM series: sha256 over its members' sha256 hex digests, sorted, one per line."""
    return hashlib.sha256("\n".join(sorted(member_digests)).encode()).hexdigest()


def not_a_volume(item: InputItem) -> Failure:
    """The failure value for a file that is neither a volume nor a DICOM slice."""
    from radzoo.io import describe_unknown, sniff_format

    try:
        with open(item.path, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        return Failure(item.path, item.size, item.mtime_ns, type(exc).__name__,
                       f"cannot read {item.path}: {exc.strerror or exc}")
    kind = sniff_format(head)
    if kind != "unknown":
        what = f"a 2D {kind.upper()} image, not a volume"
    else:
        hint = describe_unknown(head)
        what = ("not a volume: " + hint.split(": ", 1)[1]) if ": it looks like" in hint else \
            "not a volume (no NIfTI, NRRD/MHA, zip or DICOM signature found)"
    return Failure(item.path, item.size, item.mtime_ns, "NotAVolume",
                   f"{item.path}: {what}; CT models take NIfTI, MHA/NRRD files, DICOM series folders "
                   "or .zip files of one series", skipped=item.from_walk)


def hash_volume(item: InputItem) -> Prepared | Failure:
    """The resume key of one volume item; never raises for a bad input."""
    try:
        if item.kind == "series":
            digests, size, mtime = [], 0, 0
            for member in item.members:
                digest, n, t = _sha256(member)
                digests.append(digest)
                size, mtime = size + n, max(mtime, t)
            with contextlib.suppress(OSError):
                mtime = max(mtime, int(os.stat(item.path).st_mtime_ns))
            sha = series_sha256(digests)
        else:
            sha, size, mtime = _sha256(item.path)
    except OSError as exc:
        where = exc.filename or item.path
        return Failure(item.path, item.size, item.mtime_ns, type(exc).__name__,
                       f"cannot read {where}: {exc.strerror or exc}")
    return Prepared(path=item.path, sha256=sha, size=size, mtime_ns=mtime, pixels=_EMPTY)


@contextlib.contextmanager
def _series_source(item: InputItem) -> Iterator[str]:
    """A folder holding exactly the series' slices: the folder itself, or links in a temporary one."""
    from radzoo.extract.volumes import series_reads_whole_folder

    if item.kind != "series" or series_reads_whole_folder(item):
        yield item.path
        return
    with tempfile.TemporaryDirectory(prefix="radzoo_series_") as tmp:
        for i, member in enumerate(item.members):
            link = Path(tmp) / f"{i:06d}_{Path(member).name}"
            try:
                link.symlink_to(member)
            except OSError:
                link.write_bytes(Path(member).read_bytes())
        yield tmp


def embed_volume(
    model: Any, item: InputItem, prepared: Prepared, output: str, *, segmenter: Any = "auto", batch_size: int = 64,
) -> tuple[list[tuple[Prepared, np.ndarray]], list[Failure]]:
    """Graph-CT features of one volume as a row (embedding + QA columns), or a failure value."""
    from radzoo import ct
    from radzoo.errors import RadzooError

    p = prepared
    source = item.path
    try:
        with _series_source(item) as source:
            volume = ct.read_ct(source)
            features = ct.features(volume, model, segmenter=segmenter, batch_size=batch_size, require_qa=True)
    except RadzooError as exc:
        return [], [Failure(p.path, p.size, p.mtime_ns, type(exc).__name__, _relabel(str(exc), source, item.path))]
    except MemoryError:
        return [], [Failure(p.path, p.size, p.mtime_ns, "MemoryError", f"{item.path}: out of memory")]
    except Exception as exc:  # noqa: BLE001 - one broken volume must not end an archive run
        return [], [Failure(p.path, p.size, p.mtime_ns, f"Unexpected{type(exc).__name__}",
                            _relabel(f"{item.path}: {exc}", source, item.path))]
    if output == "subject":
        emb = features.subject_embedding
    elif output == "node":
        emb = features.node_embeddings.reshape(-1)
    else:
        emb = features.patch_embeddings.reshape(-1)
    meta = volume.metadata
    p.series_instance_uid = meta.get("series_uid") if str(meta.get("format", "")).startswith("dicom") else None
    if p.series_instance_uid and p.series_instance_uid.startswith("<"):
        p.series_instance_uid = None  # "<no SeriesInstanceUID ...>" placeholder
    p.study_instance_uid = _study_uid(item, p.series_instance_uid) if p.series_instance_uid else None
    p.extra = qa_columns(features.qa, meta)
    del volume, features
    return [(p, np.asarray(emb, dtype=np.float32))], []


def qa_columns(qa: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The QA columns of a CT row (see ``sink.CT_COLUMNS``)."""
    warnings = list(qa.get("warnings", []))
    report = meta.get("series_report") or []
    if len(report) > 1:
        warnings.append(f"{meta.get('choice')} ({len(report)} series in the input)")
    if meta.get("irregular_spacing"):
        warnings.append(f"uneven slice spacing: {meta.get('spacing_handling')}")
    sim = qa.get("registration_similarity", {})
    return {
        "qa_passed": bool(qa.get("passed")),
        "lung_volume_ml": float(qa.get("lung_volume_ml", float("nan"))),
        "right_lung_ml": float(qa.get("right_lung_ml", float("nan"))),
        "left_lung_ml": float(qa.get("left_lung_ml", float("nan"))),
        "registration_dice": float(sim.get("dice", float("nan"))),
        "registration_mattes_mi": float(sim.get("mattes_mi", float("nan"))),
        "patches_in_lung_fraction": float(qa.get("patches_in_lung_fraction", float("nan"))),
        "qa_warnings": "; ".join(warnings),
        "qa": json.dumps(qa, default=str),
    }


def _relabel(message: str, used: str, real: str) -> str:
    return message.replace(used, real) if used != real else message


def _study_uid(item: InputItem, series_uid: str) -> str | None:
    """StudyInstanceUID of the embedded series, from the first member slice that belongs to it."""
    import pydicom

    def study_of(fp: Any) -> str | None:
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True,
                                 specific_tags=["SeriesInstanceUID", "StudyInstanceUID"])
        except Exception:  # noqa: BLE001 - a UID is a nicety; the row stands without it
            return None
        if str(ds.get("SeriesInstanceUID", "")) != series_uid:
            return None
        return str(ds.get("StudyInstanceUID")) or None

    if item.kind == "series":
        for member in item.members:
            if uid := study_of(member):
                return uid
        return None
    try:
        with zipfile.ZipFile(item.path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                with zf.open(info) as fh:
                    if uid := study_of(fh):
                        return uid
    except (OSError, zipfile.BadZipFile):
        return None
    return None
