"""The in-process engine: decoding runs ahead of batched inference in this process.

Decoding always overlaps inference. With ``workers=0`` (the default on small CPU machines) one
prefetch thread decodes the next ``PREFETCH`` batches while the model runs the current one
(PIL/pydicom decoders, resizing and onnxruntime all release the GIL); with ``workers > 0``
decode processes do, ``2 * workers`` batches ahead. Workers get only the spec's ``Preprocess``;
the model lives here, loaded once. The number of batches in flight is bounded, so memory stays
bounded on any archive size and a kill loses at most those batches plus the rows not yet
committed to a shard.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from typing import Any

from radzoo.errors import RadzooError
from radzoo.extract.discovery import InputItem
from radzoo.extract.session import Session
from radzoo.extract.work import Failure, Prepared, embed_prepared, prepare_many

_WORKER: dict[str, Any] = {}
#: Batches the inline prefetch thread decodes ahead of inference.
PREFETCH = 2


class ExtractError(RadzooError, RuntimeError):
    """The extraction run itself broke (not one input); committed rows remain and a rerun resumes."""


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _init_worker(preprocess: Any, modality: str) -> None:
    # one thread per decode worker: oversubscription is the biggest slowdown on small machines
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    _WORKER["preprocess"] = preprocess
    _WORKER["modality"] = modality


def _work(items: list[InputItem]) -> list[Prepared | Failure]:
    return prepare_many(items, _WORKER["preprocess"], _WORKER["modality"])


def _chunks(items: list[InputItem], size: int) -> Iterator[list[InputItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_local(session: Session, model: Any, items: list[InputItem], *, batch_size: int, workers: int) -> None:
    """Process ``items`` into ``session``. ``workers=0`` decodes in a prefetch thread of this process."""
    from functools import partial

    output = session.ident.output
    preprocess = model.spec.preprocess
    modality = model.spec.modality
    chunks = _chunks(items, batch_size)
    if workers == 0:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="radzoo-prefetch") as pool:
            decode = partial(prepare_many, preprocess=preprocess, modality=modality)
            with closing(_pipelined(pool, decode, chunks, PREFETCH)) as stream:
                for results in stream:
                    consume(session, model, output, results)
        return
    ctx = mp.get_context("spawn")  # never fork a process that holds torch/OpenMP threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(preprocess, modality)) as pool:
        try:
            with closing(_pipelined(pool, _work, chunks, 2 * workers)) as stream:
                for results in stream:
                    consume(session, model, output, results)
        except BrokenProcessPool as exc:
            raise ExtractError(
                "a decode worker process died (killed, out of memory or a crashing decoder); rows committed "
                "so far are kept: rerun the same command to resume, with fewer --workers if memory is short"
            ) from exc


def _pipelined(pool: Executor, decode: Callable[[list[InputItem]], list[Prepared | Failure]],
               chunks: Iterator[list[InputItem]], depth: int) -> Iterator[list[Prepared | Failure]]:
    """Decoded chunks in input order, with up to ``depth`` chunks decoding ahead of the consumer."""
    pending: deque[Future[list[Prepared | Failure]]] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(decode, chunk))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()


def consume(session: Session, model: Any, output: str, results: list[Prepared | Failure]) -> None:
    """Embed the prepared items of one batch (skipping those already done) and record everything."""
    prepared = [r for r in results if isinstance(r, Prepared)]
    failures = [r for r in results if isinstance(r, Failure)]
    fresh = session.accept(prepared)
    embedded, infer_failures = embed_prepared(model, fresh, output)
    session.record(embedded, failures + infer_failures)


def run_volumes(session: Session, model: Any, items: list[InputItem], *, segmenter: Any = "auto") -> None:
    """CT items, one at a time in this process: hash (resume check), then graph-CT features.

    A volume costs tens of seconds and hundreds of MB, so there is no decode pool and no batching:
    memory stays bounded by one volume, and each finished volume is recorded before the next."""
    from radzoo.extract.ct_work import embed_volume, hash_volume, not_a_volume

    output = session.ident.output
    for item in items:
        if item.kind == "other":
            session.record([], [not_a_volume(item)])
            continue
        hashed = hash_volume(item)
        if isinstance(hashed, Failure):
            session.record([], [hashed])
            continue
        if not session.accept([hashed]):
            continue
        embedded, failures = embed_volume(model, item, hashed, output, segmenter=segmenter)
        session.record(embedded, failures)
