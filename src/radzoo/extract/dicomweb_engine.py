"""Extraction from a PACS: QIDO-RS names the instances, WADO-RS brings them, the same core embeds them.

Instances become ``InputItem(kind="instance")`` keyed by their WADO-RS path
(``studies/S/series/R/instances/I``), so the errors table, resume and pseudonymisation work on
UIDs exactly as they work on file paths and hashes. Non-image instances (SRs, presentation states,
radzoo's own Parametric Maps ...) are recorded as skipped without being transferred; a study with
no image instance at all is an error row. A fetch that fails after the connection's retries is an
error row too; the run goes on.

Fetching and decoding run in ``source.concurrency`` threads (network-bound, bounded window);
inference runs here, batch by batch, as in the local engine.
"""

from __future__ import annotations

from typing import Any

from radzoo.errors import RadzooError
from radzoo.extract.discovery import Discovery, InputItem, Problem
from radzoo.extract.local import consume
from radzoo.extract.session import Session
from radzoo.extract.work import Failure, Prepared, prepare_data
from radzoo.pacs import DicomwebSource, InstanceRef, fetch_instance, map_bounded
from radzoo.pacs.image_classes import non_image_kind, sop_class_name


def discover_dicomweb(source: DicomwebSource) -> Discovery:
    """QIDO-RS: the instances of ``source`` as input items, plus problems (no match, no images)."""
    result = source.query()
    found = Discovery()
    for ref in result.instances:
        found.items.append(InputItem(path=ref.key, size=0, mtime_ns=0, from_walk=True, kind="instance",
                                     uids=(ref.study, ref.series, ref.sop), sop_class_uid=ref.sop_class))
    for key, etype, message in result.problems:
        found.problems.append(Problem(key, etype, message))
    return found


def _ref(item: InputItem) -> InstanceRef:
    study, series, sop = item.uids
    return InstanceRef(study, series, sop, item.sop_class_uid)


def fetch_and_prepare(source: DicomwebSource, item: InputItem, preprocess: Any, modality: str) -> Prepared | Failure:
    """One instance: skip a non-image, else WADO-RS fetch, decode, preprocess. Never raises."""
    kind = non_image_kind(item.sop_class_uid)
    if kind is not None:
        return Failure(item.path, None, None, "NotAnImage",
                       f"{item.path}: {sop_class_name(item.sop_class_uid)} is not an image ({kind})", skipped=True)
    try:
        data = fetch_instance(source.connection, _ref(item))
    except RadzooError as exc:
        return Failure(item.path, None, None, type(exc).__name__, str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken response must not end the run
        return Failure(item.path, None, None, f"Unexpected{type(exc).__name__}", f"{item.path}: {exc}")
    return prepare_data(item.path, data, len(data), None, preprocess, modality)


def run_dicomweb(session: Session, model: Any, items: list[InputItem], *, source: DicomwebSource, batch_size: int) -> None:
    """Fetch ``items`` with bounded concurrency and embed them in batches into ``session``."""
    output = session.ident.output
    preprocess, modality = model.spec.preprocess, model.spec.modality
    batch: list[Prepared | Failure] = []

    def work(item: InputItem) -> Prepared | Failure:
        return fetch_and_prepare(source, item, preprocess, modality)

    for item, result in map_bounded(work, items, source.concurrency):
        if isinstance(result, BaseException):  # work() catches everything; this is a bug guard
            result = Failure(item.path, None, None, f"Unexpected{type(result).__name__}", f"{item.path}: {result}")
        batch.append(result)
        if len(batch) >= batch_size:
            consume(session, model, output, batch)
            batch = []
    if batch:
        consume(session, model, output, batch)
