"""WADO-RS: instances as Part-10 bytes, with bounded concurrency.

Instances are requested in the transfer syntax they are stored in (``transfer-syntax=*``), so the
PACS never transcodes (and never fails to transcode) JPEG 2000 or JPEG-LS; radzoo's readers decode
them exactly as they decode files. ``dicomweb_client`` hands back a parsed data set, which is
written out unchanged as a Part-10 byte stream for ``radzoo.io.read_image``.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from radzoo.errors import InputError
from radzoo.pacs.connection import PacsConnection
from radzoo.pacs.qido import InstanceRef

#: Ask for the stored transfer syntax: no transcoding on the server.
AS_STORED = (("application/dicom", "*"),)

T = TypeVar("T")
K = TypeVar("K")


def fetch_dataset(conn: PacsConnection, ref: InstanceRef) -> Any:
    """The instance as a ``pydicom.Dataset`` (retries and errors as in ``PacsConnection.request``)."""
    return conn.request(f"WADO-RS retrieve of {ref.key}",
                        lambda c: c.retrieve_instance(ref.study, ref.series, ref.sop, media_types=AS_STORED))


def dataset_bytes(ds: Any) -> bytes:
    """A data set as a Part-10 byte stream (preamble, file meta, data set as received)."""
    import pydicom

    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=False)
    return buf.getvalue()


def fetch_instance(conn: PacsConnection, ref: InstanceRef) -> bytes:
    """The instance as Part-10 bytes, for ``radzoo.io.read_image``."""
    return dataset_bytes(fetch_dataset(conn, ref))


def map_bounded(fn: Callable[[K], T], refs: Iterable[K], concurrency: int) -> Iterator[tuple[K, T | BaseException]]:
    """``fn`` over ``refs`` in ``concurrency`` threads, results in input order, at most
    ``2 * concurrency`` in flight (memory stays bounded on any study size). A failing call yields
    its exception in place of the result; the others go on."""
    if concurrency < 1:
        raise InputError(f"PACS concurrency must be >= 1, got {concurrency}")
    window = 2 * concurrency
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="radzoo-wado") as pool:
        pending: deque[tuple[K, Future[T]]] = deque()

        def pop() -> tuple[K, T | BaseException]:
            ref, fut = pending.popleft()
            try:
                return ref, fut.result()
            except Exception as exc:  # noqa: BLE001 - returned to the caller as a value
                return ref, exc

        try:
            for ref in refs:
                pending.append((ref, pool.submit(fn, ref)))
                if len(pending) >= window:
                    yield pop()
            while pending:
                yield pop()
        finally:
            for _, fut in pending:
                fut.cancel()
