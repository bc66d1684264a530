"""``radzoo bench [MODEL...]``: measured throughput per model, precision, device and batch size."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from radzoo.runtimes import PRECISIONS, RUNTIMES


def register(sub: Any) -> None:
    from radzoo.bench import DEFAULT_BATCHES, DEFAULT_MODELS, DICOM_CODECS, PATHS

    p = sub.add_parser(
        "bench",
        help="measure images/s (volumes/s for CT): model only and end to end from PNG and DICOM",
        description="Measure each MODEL at each --precision and batch size, model only (preprocessed batches) and "
        "end to end through `radzoo extract` from PNG and DICOM files, in one run. Writes OUT/bench.json and "
        "OUT/bench.md with the hardware (CPU model and flags, cores, GPUs), threads and library versions; with "
        "--card, each model that is a writable artifact folder gets the run in its model card (Throughput). Each cell "
        "warms up until two consecutive calls agree within 10%% (capped), then times at least 5 calls: the median and "
        "the min-max. The best batch per precision goes to $RADZOO_HOME/bench/best_batches.json, the default batch "
        "size of `radzoo extract` and `radzoo serve` on this machine.",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", default=list(DEFAULT_MODELS),
                   help=f"registry names, local zoo names or artifact folders (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"], help="precisions to measure")
    p.add_argument("--runtime", nargs="+", choices=RUNTIMES, default=["auto"], help="runtimes to measure (default auto)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--batches", nargs="+", type=int, default=list(DEFAULT_BATCHES), help="batch sizes (default 1 8 32)")
    p.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS),
                   help="model: preprocessed batches; png / dicom: radzoo extract end to end")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per model-only configuration")
    p.add_argument("--images", type=int, default=64,
                   help="images for the end-to-end runs (the packaged example CXRs, copied; default 64)")
    p.add_argument("--png-dir", default=None, help="use these PNGs for the end-to-end PNG runs instead")
    p.add_argument("--dicom-dir", default=None, help="use these DICOMs for the end-to-end DICOM runs instead")
    p.add_argument("--dicom-codec", choices=DICOM_CODECS, default="raw",
                   help="transfer syntax of the DICOMs written from the PNGs (raw, or j2k = JPEG 2000 lossless)")
    p.add_argument("--ct-file", default=None, help="CT volume for graph-CT end-to-end runs (default: synthetic phantom)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    p.add_argument("--random-weights", action="store_true",
                   help="explicitly RANDOM weights (speed does not depend on the weights; no download)")
    p.add_argument("--out", type=Path, default=Path("radzoo-bench"), help="output folder (default radzoo-bench/)")
    p.add_argument("--card", action="store_true", help="write the run into each writable artifact's model card")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from radzoo.bench.throughput import (
        record_best_batches,
        record_on_cards,
        run_bench,
        to_markdown,
        write_result,
    )

    result = run_bench(
        args.models, precisions=args.precision, runtimes=args.runtime, device=args.device, batches=args.batches,
        paths=args.paths, seconds=args.seconds, images=args.images, random_weights=args.random_weights,
        threads=args.threads, png_dir=args.png_dir, dicom_dir=args.dicom_dir, dicom_codec=args.dicom_codec,
        ct_file=args.ct_file,
    )
    js, md = write_result(result, args.out)
    print(to_markdown(result))
    print(f"radzoo bench: wrote {js} and {md}", file=sys.stderr)
    record = record_best_batches(result)
    if record:
        print(f"radzoo bench: best batch per precision recorded in {record} (the default batch size of "
              "radzoo extract and radzoo serve on this machine)", file=sys.stderr)
    if args.card:
        for folder in record_on_cards(result):
            print(f"radzoo bench: throughput recorded in {folder}/README.md", file=sys.stderr)
    refused = [r for r in result["rows"] if r["items_per_s"] is None]
    return 1 if refused and len(refused) == len(result["rows"]) else 0
