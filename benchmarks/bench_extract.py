"""End-to-end batch extraction throughput next to model-only throughput, in the same run.

ResNet-50 at 224 px (``prior_resnet50``, random weights, 1 channel): images/s of

* model only: ``model.embed_batch`` on already preprocessed batches (the ceiling);
* end to end: ``radzoo.extract.extract_features`` on the 201 shared NIH PNGs (512 px), and on the same
  pixels written as uncompressed CR DICOMs: read, hash, decode, preprocess in a worker process,
  inference, Parquet shards and manifest. Worker start-up is included; model build is not
  (the model is built once and passed in, as a long-running job would amortise it).

Prints the ratio end-to-end / model-only for each input kind. Usage::

    python benchmarks/bench_extract.py [--shared ../shared] [--batch-size 16] [--workers 1] [--threads N] [--repeat 1]

The machine is shared: compare the ratios printed in one run, and rerun under foreign load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import radzoo


def write_dicoms(pngs: list[Path], folder: Path) -> list[Path]:
    """The PNG pixels as 8-bit MONOCHROME2 CR DICOMs (uncompressed), one per PNG."""
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    cr_storage = "1.2.840.10008.5.1.4.1.1.1"
    study = generate_uid()
    series = generate_uid()
    out = []
    for png in pngs:
        arr = np.asarray(Image.open(png).convert("L"), dtype=np.uint8)
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = cr_storage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = cr_storage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.Modality = "CR"
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = arr.tobytes()
        path = folder / (png.stem + ".dcm")
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def model_only(model, batch: np.ndarray, n_images: int, batch_size: int) -> float:
    model.embed_batch(batch[:batch_size])  # warm-up
    done = 0
    start = time.perf_counter()
    while done < n_images:
        b = min(batch_size, n_images - done)
        model.embed_batch(batch[:b])
        done += b
    return n_images / (time.perf_counter() - start)


def end_to_end(model, folder: Path, n_images: int, args: argparse.Namespace) -> float:
    from radzoo.extract import extract_features

    out = Path(tempfile.mkdtemp(prefix="bench-extract-out-"))
    try:
        start = time.perf_counter()
        result = extract_features(model, [folder], out / "run", batch_size=args.batch_size, workers=args.workers,
                         threads=args.threads, quiet=True)
        elapsed = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert result.counts.written == n_images and result.ok, result.counts
    return n_images / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.environ.get("RADZOO_SHARED", str(Path(__file__).resolve().parents[2] / "shared")))
    parser.add_argument("--model", default="prior_resnet50", help="registry name, built with random weights")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N PNGs")
    args = parser.parse_args()

    import torch

    from radzoo import zoo
    from radzoo.extract.local import cpu_count
    from radzoo.io import read_image
    from radzoo.io.transforms import make_transform

    args.threads = args.threads or cpu_count()
    torch.set_num_threads(args.threads)
    pngs = sorted((Path(args.shared) / "data" / "cxr_nih" / "images").glob("*.png"))[: args.limit]
    if not pngs:
        raise SystemExit(f"no PNGs under {args.shared}/data/cxr_nih/images (pass --shared)")
    model = radzoo.build(args.model, device="cpu")
    if args.runtime == "onnx":  # onnxruntime needs an artifact folder with an export
        from radzoo.artifacts import export_artifact

        art = Path(tempfile.mkdtemp(prefix="bench-extract-model-")) / "model"
        zoo.save(model, art)
        export_artifact(art, outputs=[model.default_output], parity_tol=1e-3)  # random weights: large activations
        model = radzoo.load(art, device="cpu", runtime="onnx", intra_op_num_threads=args.threads, inter_op_num_threads=1)
    transform = make_transform(model.spec.preprocess)
    batch = np.stack([transform(read_image(p).pixels).numpy() for p in pngs[: args.batch_size]])
    n = len(pngs)

    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        png_dir = work / "png"
        png_dir.mkdir()
        for p in pngs:
            shutil.copy2(p, png_dir / p.name)
        dcm_dir = work / "dicom"
        dcm_dir.mkdir()
        write_dicoms(pngs, dcm_dir)
        print(f"{args.model} random weights, input {tuple(batch.shape[1:])}, {n} images, batch {args.batch_size}, "
              f"{args.workers} decode worker(s), {args.threads} inference threads, {cpu_count()} cores, {args.runtime} runtime")
        for rep in range(args.repeat):
            ref = model_only(model, batch, n, args.batch_size)
            png = end_to_end(model, png_dir, n, args)
            dcm = end_to_end(model, dcm_dir, n, args)
            ref2 = model_only(model, batch, n, args.batch_size)
            base = (ref + ref2) / 2  # model-only measured before and after, to average drift under load
            print(f"[{rep}] model-only {base:6.2f} img/s (before {ref:.2f}, after {ref2:.2f})  |  "
                  f"end-to-end PNG {png:6.2f} img/s = {png / base:.2f}x  |  DICOM {dcm:6.2f} img/s = {dcm / base:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
