"""``extract_features(...)``: an archive of images in, one Parquet table of embeddings out.

The same options as ``radzoo extract``. The run is resumable: rerunning with the same output
folder skips inputs already embedded by the same model revision and preprocessing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radzoo.errors import CapabilityError, InputError
from radzoo.extract.discovery import discover
from radzoo.extract.pseudonym import Pseudonymizer
from radzoo.extract.session import Counts, Session
from radzoo.extract.sink import head_column
from radzoo.extract.state import identity_of
from radzoo.pacs import DicomwebSource, is_dicomweb_url
from radzoo.resolve import load, spec_of
from radzoo.runtimes import prepare_output
from radzoo.zoo.batch_record import default_batch

ENGINES = ("local", "ray")

log = logging.getLogger(__name__)


@dataclass
class ExtractResult:
    """What a run did. ``ok`` is False when any input failed in this run."""

    out: Path
    counts: Counts
    manifest: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.counts.failed == 0

    @property
    def exit_code(self) -> int:
        """0: every input embedded (or skipped as a non-image); 3: some inputs failed (see errors table)."""
        return 0 if self.ok else 3


def extract_features(
    model: Any,
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | DicomwebSource,
    out: str | os.PathLike[str],
    *,
    output: str | None = None,
    random_weights: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    runtime: str = "auto",
    device: str | None = None,
    precision: str = "fp32",
    engine: str = "local",
    address: str | None = None,
    ray_cpus: int | None = None,
    retry_failed: bool = False,
    shard_size: int = 1024,
    flush_interval: float = 30.0,
    pseudonym_secret: bytes | str | None = None,
    files_from: Iterable[str | os.PathLike[str]] = (),
    quiet: bool = False,
    segmenter: str = "auto",
    head: Any = None,
    metadata_csv: str | os.PathLike[str] | None = None,
) -> ExtractResult:
    """Embed every image under ``inputs`` into ``out`` (Parquet shards + errors table + manifest).

    ``model``: a zoo name or artifact folder, opened by ``radzoo.load`` (with ``runtime``,
    ``precision``, ``device``, ``threads`` and ``random_weights``: a registry name built with random weights,
    which the manifest says), or an already loaded model (local engine). ``inputs``: files, folders (recursive), globs, ``@list.txt``;
    or a PACS: a ``radzoo.pacs.DicomwebSource`` (QIDO filters, credentials, concurrency) or a
    DICOMweb URL (``http://pacs:8042/dicom-web[/studies/UID...]``, credentials from
    ``$RADZOO_PACS_AUTH``). PACS rows are keyed by their WADO-RS path ``studies/S/series/R/instances/I``
    and resume on those UIDs; fetching runs in the source's bounded thread pool (``workers`` does
    not apply).
    ``batch_size``: images per forward pass; default: the best batch ``radzoo bench`` recorded for
    this model, runtime, precision and machine, else a rule per device
    (:func:`radzoo.zoo.batch_record.default_batch`); the manifest says which
    (``options.batch_size_source``).
    ``workers``: decode processes; 0 decodes inline. Default: on a GPU, one per spare core (up to
    8); on CPU, inline on machines of up to 4 cores (a decode process there takes a core from
    inference: ``benchmarks/bench_extract.py`` measured 0.85x of model-only throughput inline vs
    0.69x with one worker on 2 cores), else one per 4 cores (up to 8). Inline decoding still
    overlaps inference: a prefetch thread decodes the next batches while the model runs.
    ``threads``: inference threads (default: all cores). ``engine="ray"`` runs on Ray Data
    (local Ray, or the cluster at ``address``). ``pseudonym_secret``: HMAC paths, UIDs and file
    hashes in the output. Per-file failures go to the errors table; check ``result.ok``.

    CT models (graph-CT) take NIfTI, MHA/NRRD files, DICOM series folders and .zip files of one
    series: one row per volume/series with the ``subject`` embedding (or ``node`` / ``patch``
    flattened to 581*128) and QA columns; volumes without lungs or failing QA go to the errors
    table. They run one volume at a time in this process (``workers`` and ``batch_size`` do not
    apply; ``segmenter`` picks the lung segmenter).

    ``head``: a task head (folder or ``TaskHead``), checked against the model; a model opened from a
    head folder (``radzoo.load(HEAD)``, or ``model=HEAD``) brings its own. Its calibrated
    probabilities become one ``probability:<label>`` column per label, with ``head_digest``.

    ``metadata_csv``: patient id, modality, view and study date for files without a header (PNG,
    JPEG), joined by path (``radzoo.extract.metadata``); rows carry them for ``radzoo.search``.
    """
    from radzoo.extract.local import cpu_count, run_local

    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    if flush_interval <= 0:
        raise InputError(f"flush_interval must be > 0 seconds, got {flush_interval}")
    cores = cpu_count()
    user_workers = workers
    if workers is None:
        workers = default_workers(cores, device)
    if workers < 0:
        raise InputError(f"workers must be >= 0, got {workers}")
    if threads is None:
        threads = cores
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    if address is not None and engine != "ray":
        raise InputError("address applies to engine='ray' only")

    pacs = _dicomweb_input(inputs)
    if pacs is not None and engine != "local":
        raise InputError("DICOMweb inputs run on engine='local' (a bounded pool of fetch threads); "
                         "engine='ray' reads files only")
    if pacs is not None and user_workers:
        log.warning("radzoo extract: --workers=%d does not apply to a DICOMweb input: instances are fetched and "
                    "decoded in %d threads (--pacs-concurrency)", user_workers, pacs.concurrency)
    if isinstance(model, (str, os.PathLike)):
        if pacs is not None and "ct" in spec_of(model)[0].capabilities:
            _refuse_dicomweb_for_ct()
        if engine == "ray" and "ct" in spec_of(model)[0].capabilities:
            _refuse_ray_for_ct()  # before any weights are read
        zmodel = load(model, random_weights=random_weights, seed=seed, runtime=runtime, device=device,
                      threads=threads if engine == "local" else None, precision=precision)
    else:
        if engine == "ray":
            raise InputError("engine='ray' needs a model name or artifact folder: Ray actors load their own copy")
        zmodel = model
    volumes = "ct" in zmodel.capabilities
    task_head = _task_head(zmodel, head, volumes)
    if task_head is not None:
        if output not in (None, task_head.base["output"]):
            raise InputError(f"head {task_head.name!r} reads output {task_head.base['output']!r}, not {output!r}")
        output = task_head.base["output"]
    if volumes and pacs is not None:
        _refuse_dicomweb_for_ct()
    if volumes:
        _check_ct_options(zmodel, engine, user_workers, segmenter)
    else:
        zmodel.spec.require("embed", "batch extraction of 2D images")
    prepare_output(zmodel, None if volumes else output)  # ONNX graphs exported now: the manifest names the runtime
    ident = identity_of(zmodel, output)
    batch_source = "given"
    if batch_size is None and not volumes:
        choice = default_batch(zmodel.name, zmodel.runtime.name, ident.precision, zmodel.device)
        batch_size, batch_source = choice.size, choice.source
        log.info("radzoo extract: batch size %d from %s", batch_size, batch_source)
    if volumes:
        from radzoo.extract.ct_work import ct_output_dim
        from radzoo.extract.volumes import discover_volumes

        ident = dataclasses.replace(ident, dim=ct_output_dim(zmodel, ident.output))
        found = discover_volumes(inputs, files_from)
    elif pacs is not None:
        from radzoo.extract.dicomweb_engine import discover_dicomweb

        if files_from:
            raise InputError("files_from lists files; it cannot be combined with a DICOMweb input")
        found = discover_dicomweb(pacs)
    else:
        found = discover(inputs, files_from)
    options = {
        "model": os.fspath(model) if isinstance(model, (str, os.PathLike)) else zmodel.name,
        "output": ident.output,
        "random_weights": ident.random_weights,
        "inputs": [pacs.url] if pacs is not None else
                  [os.fspath(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)],
        "batch_size": batch_size,
        "batch_size_source": batch_source,
        "workers": None if volumes or pacs is not None else workers,
        "threads": threads,
        "runtime": zmodel.runtime.name,
        "runtime_reason": getattr(zmodel.runtime, "reason", ""),
        "precision": ident.precision,
        "device": str(zmodel.device),
        "engine": engine,
        "address": address,
        "retry_failed": retry_failed,
        "shard_size": shard_size,
    }
    if task_head is not None:
        options["head"] = {"name": task_head.name, "digest": task_head.digest, "labels": task_head.labels,
                           "columns": [head_column(lab) for lab in task_head.labels]}
    if volumes:
        options["segmenter"] = segmenter
        options["batch_size"] = options["batch_size_source"] = None
    if pacs is not None:
        f = pacs.filters
        options["dicomweb"] = {"studies": len(f.studies), "series": len(f.series), "modalities": list(f.modalities),
                               "since": f.since, "concurrency": pacs.concurrency,
                               "retries": pacs.connection.retries, "timeout": pacs.connection.timeout,
                               "authentication": pacs.connection.auth.scheme if pacs.connection.auth else None}
    if pseudonym_secret is not None:
        options["inputs"] = ["<pseudonymized>"]
    session = Session(
        Path(out),
        ident,
        options,
        pseudonymizer=Pseudonymizer(pseudonym_secret) if pseudonym_secret is not None else None,
        retry_failed=retry_failed,
        shard_size=shard_size,
        flush_interval=flush_interval,
        quiet=quiet,
        volumes=volumes,
        head=task_head,
        metadata=_metadata(metadata_csv),
    )
    status = "failed"
    try:
        todo = session.todo(found.items, found.problems)
        if volumes and engine == "local":
            from radzoo.extract.local import run_volumes

            run_volumes(session, zmodel, todo, segmenter=segmenter)
        elif pacs is not None:
            from radzoo.extract.dicomweb_engine import run_dicomweb

            run_dicomweb(session, zmodel, todo, source=pacs, batch_size=batch_size)
        elif engine == "local":
            run_local(session, zmodel, todo, batch_size=batch_size, workers=workers)
        else:
            from radzoo.extract.ray_engine import run_ray

            run_ray(session, zmodel, todo, model_ref=os.fspath(model), random_weights=random_weights, seed=seed,
                    runtime=runtime, device=device, precision=precision, batch_size=batch_size, threads=threads,
                    address=address, num_cpus=ray_cpus)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        session.finish(status)  # commit the rows already embedded
        raise
    finally:
        if status == "failed":
            session.finish(status)
    manifest = session.finish(status)
    return ExtractResult(Path(out), session.counts, manifest)


def _task_head(zmodel: Any, head: Any, volumes: bool) -> Any:
    """The head whose probabilities join each row: the one given (checked against the model), or
    the one the model was opened with; None without."""
    if head is None:
        return getattr(zmodel, "head", None)
    from radzoo.heads import attach_head, read_head

    if volumes:
        raise CapabilityError("task heads run on 2D image embeddings; CT models have none")
    task_head = head if hasattr(head, "tensors") else read_head(head)
    attach_head(zmodel, task_head)
    return task_head


def default_workers(cores: int, device: Any = None) -> int:
    """Decode processes that help rather than steal cores from inference (see ``extract``)."""
    from radzoo.zoo.devices import resolve_device

    # an explicit device is judged by radzoo.load (which names what a CUDA request lacks)
    cuda = resolve_device(None).type == "cuda" if device in (None, "auto") else str(device).startswith("cuda")
    if cuda:
        return max(1, min(cores - 1, 8))
    return 0 if cores <= 4 else min(cores // 4, 8)


def _dicomweb_input(inputs: Any) -> DicomwebSource | None:
    """The PACS behind ``inputs`` (a ``DicomwebSource`` or one DICOMweb URL), or None for files."""
    if isinstance(inputs, DicomwebSource):
        return inputs
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    urls = [i for i in items if is_dicomweb_url(i)]
    if not urls:
        return None
    if len(items) > 1:
        raise InputError("a DICOMweb URL must be the only input of a run (use --study/--series/--modality to select)")
    return DicomwebSource.from_url(urls[0])


def _refuse_dicomweb_for_ct() -> None:
    raise CapabilityError(
        "CT models read whole series; reading CT series over DICOMweb is not supported in this version: "
        "export the series to a folder (or .zip) and extract from there"
    )


def _refuse_ray_for_ct() -> None:
    raise CapabilityError(
        "engine='ray' does not support CT models in this version: CT volumes run one at a time in this "
        "process (engine='local'); to spread an archive over machines, split the inputs into several runs"
    )


def _check_ct_options(zmodel: Any, engine: str, workers: int | None, segmenter: str) -> None:
    """Refuse what a CT run cannot honour; say what is ignored."""
    from radzoo.ct import get_segmenter

    get_segmenter(segmenter)  # an unknown name fails now, not once per volume
    if engine == "ray":
        _refuse_ray_for_ct()
    how = "volumes are processed one at a time in this process (bounded memory)"
    if workers:
        log.warning("radzoo extract: --workers=%d does not apply to CT models: %s", workers, how)
    else:
        log.info("radzoo extract: CT model: %s; --workers does not apply", how)


def _metadata(csv_path: str | os.PathLike[str] | None) -> Any:
    if csv_path is None:
        return None
    from radzoo.extract.metadata import MetadataTable

    return MetadataTable(csv_path)
