"""``radzoo extract``: batch embeddings of an image archive into Parquet (resumable)."""

from __future__ import annotations

import argparse
import sys

from radzoo.cli.model_options import add_model_options
from radzoo.cli.pacs_options import add_pacs_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract",
        help="embed an archive of images into a Parquet table (resumable, local or Ray)",
        description=(
            "Embed every image under INPUT (files, folders recursively, globs, @file-list) into OUT: "
            "OUT/embeddings/*.parquet (one row per image), OUT/errors/*.parquet and OUT/manifest.json. "
            "Rerun the same command to resume. CT models (graph-CT) take NIfTI/MHA/NRRD files, DICOM series "
            "folders and .zip files of one series: one row per volume/series (subject embedding + QA columns), "
            "processed one at a time in this process. INPUT may instead be one DICOMweb URL "
            "(http://pacs:8042/dicom-web[/studies/UID...]) with QIDO filters: instances are fetched with WADO-RS "
            "and keyed by Study/Series/SOP Instance UID. Exit codes: 0 all done, 3 some inputs failed "
            "(see the errors table), 1 the run could not proceed."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files, folders, globs or @list.txt (one path per line); or one DICOMweb URL")
    p.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    add_model_options(p, threads=True, model_optional=True)
    p.add_argument("--head", default=None, metavar="HEAD",
                   help="a task head folder (radzoo head train): adds one calibrated probability column per label "
                        "and the head's digest; without --model its recorded base model is opened")
    p.add_argument("--output", default=None,
                   help="model output head (default: the model's default; CT: subject, or node/patch stored "
                        "flattened as 581*128 floats)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward pass (default: the best batch `radzoo bench` recorded for this model, "
                        "precision and machine, else 8 on CPU and 32 on GPU; logged and written to the manifest)")
    p.add_argument("--workers", type=int, default=None, help="decode processes; 0 = inline (default: inline on CPU machines of <= 4 cores, else cores/4; on GPU, spare cores)")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (engine ray; default: start a local Ray)")
    p.add_argument("--retry-failed", action="store_true", help="retry inputs that failed in earlier runs")
    p.add_argument("--shard-size", type=int, default=1024, help="rows per Parquet shard (a kill loses at most these)")
    p.add_argument("--flush-interval", type=float, default=30.0, help="commit a shard at least this often (seconds)")
    p.add_argument("--pseudonymize-key-file", default=None,
                   help="HMAC paths, UIDs and file hashes with the secret in this file "
                        "(or set RADZOO_PSEUDONYM_KEY); never pass secrets on the command line")
    p.add_argument("--files-from", action="append", default=[], metavar="LIST", help="file with one input path per line")
    p.add_argument("--segmenter", default="auto", choices=("auto", "threshold", "lungmask"),
                   help="lung segmenter for CT models (auto: lungmask when installed, else threshold)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--metadata", default=None, metavar="CSV",
                   help="patient id, modality, view and study date for files without headers (PNG/JPEG), "
                        "joined by path (columns path, patient_id, modality, view, study_date)")
    add_pacs_options(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from radzoo.cli.pacs_options import check_no_pacs_filters, dicomweb_source
    from radzoo.extract.api import extract_features
    from radzoo.extract.pseudonym import read_secret
    from radzoo.pacs import is_dicomweb_url

    if args.model is None and args.head is None:
        from radzoo.errors import InputError

        raise InputError("say which model: --model NAME_OR_FOLDER, or --head HEAD (opens the head's base model)")
    inputs = args.inputs
    if any(is_dicomweb_url(i) for i in inputs):
        if len(inputs) > 1:
            from radzoo.errors import InputError

            raise InputError("a DICOMweb URL must be the only INPUT (select with --study/--series/--modality/--since)")
        inputs = dicomweb_source(args, inputs[0])
    else:
        check_no_pacs_filters(args)
    result = extract_features(
        args.model if args.model is not None else args.head,
        inputs,
        args.out,
        output=args.output,
        random_weights=args.random_weights,
        seed=args.seed,
        batch_size=args.batch_size,
        workers=args.workers,
        threads=args.threads,
        runtime=args.runtime,
        precision=args.precision,
        device=args.device,
        engine=args.engine,
        address=args.address,
        retry_failed=args.retry_failed,
        shard_size=args.shard_size,
        flush_interval=args.flush_interval,
        pseudonym_secret=read_secret(args.pseudonymize_key_file),
        files_from=args.files_from,
        quiet=args.quiet,
        segmenter=args.segmenter,
        head=args.head,
        metadata_csv=args.metadata,
    )
    c = result.counts
    print(
        f"radzoo extract: {c.written} written, {c.already_done} already done, {c.failed} failed, "
        f"{c.previously_failed} failed earlier (not retried), {c.not_images} non-image files skipped -> {result.out}",
        file=sys.stderr,
    )
    if result.manifest.get("random_weights"):
        print("radzoo extract: NOTE the model has RANDOM weights (marked in the manifest)", file=sys.stderr)
    return result.exit_code
