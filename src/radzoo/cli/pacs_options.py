"""The options every command that reads from (or writes back to) a PACS over DICOMweb shares."""

from __future__ import annotations

import argparse
from typing import Any


def add_pacs_options(parser: argparse.ArgumentParser, *, stow: bool = False) -> None:
    """QIDO filters, credentials (file or ``$RADZOO_PACS_AUTH``, never the command line), concurrency."""
    g = parser.add_argument_group(
        "PACS (DICOMweb) input",
        "when an input is a DICOMweb URL (http://host:port/dicom-web[/studies/UID[/series/UID[/instances/UID]]])",
    )
    g.add_argument("--study", action="append", default=[], metavar="UID", help="Study Instance UID (repeatable)")
    g.add_argument("--series", action="append", default=[], metavar="UID", help="Series Instance UID (repeatable)")
    g.add_argument("--modality", default=None, metavar="CR,DX", help="modalities to select (comma-separated)")
    g.add_argument("--since", default=None, metavar="DATE", help="studies on or after this date (YYYY-MM-DD)")
    g.add_argument("--pacs-auth-file", default=None, metavar="FILE",
                   help="credentials: one line 'basic USER:PASSWORD' or 'bearer TOKEN' (else $RADZOO_PACS_AUTH; "
                        "never on the command line)")
    g.add_argument("--pacs-concurrency", type=int, default=4, metavar="N", help="parallel WADO-RS requests (default 4)")
    g.add_argument("--pacs-timeout", type=float, default=30.0, metavar="S", help="seconds per request (default 30)")
    g.add_argument("--pacs-retries", type=int, default=3, metavar="N",
                   help="retries with exponential backoff on timeouts and HTTP 408/429/5xx (default 3)")
    g.add_argument("--pacs-http-compression", action="store_true",
                   help="let the PACS gzip its answers (off: costs CPU on both ends; helps only slow links to "
                        "uncompressed images)")
    if stow:
        g.add_argument("--stow", default=None, metavar="URL",
                       help="send the DICOM results to this DICOMweb root (or ROOT/studies/UID) with STOW-RS, "
                            "with the same credentials")


def has_pacs_filters(args: argparse.Namespace) -> bool:
    return bool(args.study or args.series or args.modality or args.since)


def dicomweb_source(args: argparse.Namespace, url: str) -> Any:
    """The ``radzoo.pacs.DicomwebSource`` a command's DICOMweb input and options describe."""
    from radzoo.pacs import DicomwebSource, QueryFilters, read_auth

    filters = QueryFilters.parse(args.study, args.series, args.modality, args.since)
    return DicomwebSource.from_url(url, auth=read_auth(args.pacs_auth_file), filters=filters,
                                   concurrency=args.pacs_concurrency, timeout=args.pacs_timeout,
                                   retries=args.pacs_retries, http_compression=args.pacs_http_compression)


def check_no_pacs_filters(args: argparse.Namespace) -> None:
    """Refuse QIDO filters when no input is a DICOMweb URL (they would silently do nothing)."""
    from radzoo.errors import InputError

    if has_pacs_filters(args):
        raise InputError("--study/--series/--modality/--since select instances of a DICOMweb input; "
                         "no input is a DICOMweb URL")


def dicomweb_items(args: argparse.Namespace, inputs: list[str]) -> list[tuple[str, Any]] | None:
    """None when no input is a DICOMweb URL; else ``(key, bytes | error)`` per instance it selects.

    Non-image instances are left out with a note on stderr; problems of the query (a study with no
    image instances, a UID that matches nothing) come back as errors under their key. QIDO
    failures (unreachable PACS, refused credentials) raise: nothing can be done without the list.
    """
    import sys

    from radzoo.errors import InputError
    from radzoo.pacs import is_dicomweb_url
    from radzoo.pacs.image_classes import sop_class_name

    if not any(is_dicomweb_url(i) for i in inputs):
        return None
    if len(inputs) > 1:
        raise InputError("a DICOMweb URL must be the only input (select with --study/--series/--modality/--since)")
    source = dicomweb_source(args, inputs[0])
    found = source.query()
    out: list[tuple[str, Any]] = [(key, InputError(message)) for key, _etype, message in found.problems]
    images = []
    for ref in found.instances:
        if ref.non_image:
            print(f"note: {ref.key}: {sop_class_name(ref.sop_class)} is not an image ({ref.non_image}); skipped",
                  file=sys.stderr)
        else:
            images.append(ref)
    out += [(ref.key, data) for ref, data in source.fetch(images)]
    return out
