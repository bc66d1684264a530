"""The core of extraction as two plain functions that every engine reuses.

* ``prepare_item``: file -> sha256, DICOM UIDs and the preprocessed model input. Runs in decode
  workers (local processes or Ray tasks); needs only the spec's ``Preprocess``, never the model.
* ``embed_prepared``: a batch of prepared items -> embeddings, on the process holding the model.

Per-file failures are returned as values (``Failure``) so one bad file never stops a run.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from radzoo.extract.discovery import InputItem


@dataclass
class Prepared:
    path: str
    sha256: str
    size: int
    mtime_ns: int | None  # None for DICOMweb instances
    pixels: np.ndarray  # float32 (C, H, W), the model input (empty for CT volumes, read at embedding time)
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    extra: dict[str, Any] | None = None  # model-kind specific columns (CT: QA), merged into the row
    # header fields the similar-case search filters on (None where the file has no header)
    patient_id: str | None = None
    modality: str | None = None
    view_position: str | None = None
    study_date: str | None = None


@dataclass
class Failure:
    path: str
    size: int | None
    mtime_ns: int | None
    error_type: str
    message: str
    skipped: bool = False  # not an image, found while walking a folder


class _NamedBytes(io.BytesIO):
    """In-memory file whose ``name`` makes reader errors name the real path."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def prepare_item(item: InputItem, preprocess: Any, modality: str = "cxr") -> Prepared | Failure:
    """Read, hash, decode and preprocess one file. Never raises for a bad file."""
    size, mtime = item.size, item.mtime_ns
    try:
        with open(item.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            size, mtime = int(st.st_size), int(st.st_mtime_ns)
            data = fh.read()
    except OSError as exc:
        return Failure(item.path, size, mtime, type(exc).__name__, f"cannot read {item.path}: {exc.strerror or exc}")
    return prepare_data(item.path, data, size, mtime, preprocess, modality, from_walk=item.from_walk)


def prepare_data(path: str, data: bytes, size: int | None, mtime: int | None, preprocess: Any,
                 modality: str = "cxr", *, from_walk: bool = False) -> Prepared | Failure:
    """Hash, decode and preprocess one input's bytes (a file's, or a DICOMweb instance's keyed by
    ``path``). Never raises for bad data."""
    from radzoo.errors import RadzooError

    try:
        from radzoo.io import describe_unknown, sniff_format

        if from_walk and sniff_format(data) == "unknown":
            return Failure(path, size, mtime, "NotAnImage", f"{path}: {describe_unknown(data)}", True)
        from radzoo.io import read_image
        from radzoo.io.transforms import make_transform
        from radzoo.zoo.pixels import check_modality

        image = read_image(_NamedBytes(data, path))
        check_modality(image, modality, path)
        tensor = make_transform(preprocess)(image.pixels)
        pixels = np.ascontiguousarray(tensor.numpy(), dtype=np.float32)
    except RadzooError as exc:
        return Failure(path, size, mtime, type(exc).__name__, str(exc))
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not end an archive run
        return Failure(path, size, mtime, f"Unexpected{type(exc).__name__}", f"{path}: {exc}")
    return Prepared(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data) if size is None else size,
        mtime_ns=mtime,
        pixels=pixels,
        sop_instance_uid=image.sop_instance_uid,
        series_instance_uid=image.series_instance_uid,
        study_instance_uid=image.study_instance_uid,
        patient_id=image.patient_id,
        modality=image.modality,
        view_position=image.view_position,
        study_date=image.study_date,
    )


def prepare_many(items: list[InputItem], preprocess: Any, modality: str = "cxr") -> list[Prepared | Failure]:
    return [prepare_item(item, preprocess, modality) for item in items]


def embed_prepared(model: Any, prepared: list[Prepared], output: str) -> tuple[list[tuple[Prepared, np.ndarray]], list[Failure]]:
    """Embeddings for a batch; if the batch fails as a whole, items are retried one by one so
    only the culprits are reported (``InferenceError``)."""
    if not prepared:
        return [], []
    try:
        emb = model.embed_batch(np.stack([p.pixels for p in prepared]), output)
        return list(zip(prepared, emb, strict=True)), []
    except Exception:  # noqa: BLE001 - isolate the failing item(s) below
        if len(prepared) == 1:
            p = prepared[0]
            try:
                emb = model.embed_batch(p.pixels[None], output)
                return [(p, emb[0])], []
            except Exception as exc:  # noqa: BLE001
                return [], [Failure(p.path, p.size, p.mtime_ns, "InferenceError", f"{p.path}: {type(exc).__name__}: {exc}")]
    done: list[tuple[Prepared, np.ndarray]] = []
    failed: list[Failure] = []
    for p in prepared:
        d, f = embed_prepared(model, [p], output)
        done.extend(d)
        failed.extend(f)
    return done, failed
