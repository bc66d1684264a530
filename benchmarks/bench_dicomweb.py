"""Batch extraction from a PACS over DICOMweb next to the same files from disk, in the same run.

A real Orthanc (DICOMweb plugin, basic auth) on 127.0.0.1 in a temporary folder is filled by
STOW-RS with the shared NIH chest X-rays written as uncompressed CR DICOMs (the same files are
kept on disk). Then, with one model (random weights, built once):

* disk: ``extract_features`` on the DICOM folder (read, hash, decode, preprocess, inference, Parquet);
* DICOMweb: ``extract_features`` on the Orthanc (QIDO-RS, WADO-RS with bounded concurrency, the same
  decode/inference/Parquet core);

and where the DICOMweb time goes, each stage timed alone on the same instances: QIDO-RS query,
WADO-RS transfer (bytes only, same concurrency; also with HTTP gzip on, which radzoo turns off by
default), decode + preprocess of those bytes, model only.

Prints instances/s for both, the ratio DICOMweb/disk, and each stage's share of the sum of the
stages (the end-to-end run overlaps transfer with inference, so it can beat the sum). Usage::

    python benchmarks/bench_dicomweb.py [--shared ../shared] [--model prior_resnet50] [--limit N]
        [--batch-size 16] [--concurrency 4] [--threads N] [--repeat 1] [--tiny]

Needs Orthanc with its DICOMweb plugin (``apt-get install orthanc orthanc-dicomweb``). The machine
is shared: compare the ratios printed in one run, and rerun under foreign load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import radzoo

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "pacs")]

from bench_extract import write_dicoms  # noqa: E402
from orthanc_server import start_orthanc, stow_files  # noqa: E402


def timed(fn):  # noqa: ANN001, ANN201 - tiny helper
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.environ.get("RADZOO_SHARED", str(HERE.parents[1] / "shared")))
    parser.add_argument("--model", default="prior_resnet50", help="registry name, built with random weights")
    parser.add_argument("--tiny", action="store_true", help="tiny-random-mococxr (64 px) for a smoke run")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N NIH images")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4, help="parallel WADO-RS requests")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    import torch

    from radzoo.extract import extract_features
    from radzoo.extract.local import cpu_count
    from radzoo.extract.work import Prepared, prepare_data
    from radzoo.pacs import DicomwebSource, parse_auth

    args.threads = args.threads or cpu_count()
    torch.set_num_threads(args.threads)
    pngs = sorted((Path(args.shared) / "data" / "cxr_nih" / "images").glob("*.png"))[: args.limit]
    if not pngs:
        raise SystemExit(f"no PNGs under {args.shared}/data/cxr_nih/images (pass --shared)")
    if args.tiny:
        from radzoo.zoo.tiny import tiny_specs

        model = radzoo.build(tiny_specs()["tiny-random-mococxr"], device="cpu", threads=args.threads)
    else:
        model = radzoo.build(args.model, device="cpu", threads=args.threads)
    n = len(pngs)
    work = Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    server = None
    try:
        folder = work / "dicom"
        folder.mkdir()
        files = write_dicoms(pngs, folder)
        server = start_orthanc(work / "orthanc")
        stored, stow_s = timed(lambda: stow_files(server, files))
        assert all(isinstance(v, tuple) for v in stored.values()), stored
        source = DicomwebSource.from_url(server.dicomweb, auth=parse_auth(server.auth_line, "bench"),
                                         concurrency=args.concurrency)
        print(f"{model.name} random weights, {n} CR instances ({sum(f.stat().st_size for f in files) / n / 1e3:.0f} kB each, "
              f"uncompressed), batch {args.batch_size}, {args.concurrency} WADO-RS requests in flight, "
              f"{args.threads} threads, {cpu_count()} cores; STOW-RS of all: {stow_s:.1f} s")
        gzip_source = DicomwebSource.from_url(server.dicomweb, auth=parse_auth(server.auth_line, "bench"),
                                              concurrency=args.concurrency, http_compression=True)
        warm = work / "warm"  # first-call costs (thread pools, allocator) out of the timed runs
        extract_features(model, [str(f) for f in files[: args.batch_size]], warm, batch_size=args.batch_size,
                         workers=0, threads=args.threads, quiet=True)
        for rep in range(args.repeat):
            runs = {}
            order = (("disk", [str(folder)]), ("dicomweb", source))
            for name, inputs in order if rep % 2 == 0 else order[::-1]:
                out = work / f"out-{name}-{rep}"
                result, secs = timed(lambda inputs=inputs, out=out: extract_features(
                    model, inputs, out, batch_size=args.batch_size, workers=0, threads=args.threads, quiet=True))
                assert result.counts.written == n and result.ok, result.counts
                runs[name] = n / secs
            # the DICOMweb stages alone, on the same instances
            found, qido_s = timed(source.query)
            fetched, wado_s = timed(lambda found=found: list(source.fetch(found.instances)))
            datas = [d for _, d in fetched]
            assert all(isinstance(d, bytes) for d in datas)
            _, gzip_s = timed(lambda found=found: list(gzip_source.fetch(found.instances)))
            prepared, decode_s = timed(lambda datas=datas: [
                prepare_data(f"i{i}", d, len(d), None, model.spec.preprocess, model.spec.modality)
                for i, d in enumerate(datas)])
            assert all(isinstance(p, Prepared) for p in prepared)
            batch = np.stack([p.pixels for p in prepared])

            def infer(batch: np.ndarray = batch) -> None:
                for start in range(0, n, args.batch_size):
                    model.embed_batch(batch[start : start + args.batch_size])

            model.embed_batch(batch[: args.batch_size])  # warm-up
            _, model_s = timed(infer)
            total = qido_s + wado_s + decode_s + model_s
            ratio = runs["dicomweb"] / runs["disk"]
            print(f"[{rep}] disk {runs['disk']:7.2f} inst/s | DICOMweb {runs['dicomweb']:7.2f} inst/s = {ratio:.2f}x disk | "
                  f"stages: QIDO {qido_s / total:5.1%}, WADO transfer {wado_s / total:5.1%} "
                  f"({n / wado_s:.0f} inst/s; {n / gzip_s:.0f} with gzip), decode+preprocess {decode_s / total:5.1%} ({n / decode_s:.0f} inst/s), "
                  f"model {model_s / total:5.1%} ({n / model_s:.1f} inst/s)")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
