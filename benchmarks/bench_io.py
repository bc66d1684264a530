"""Decode + preprocess throughput vs ResNet50 inference (single process, one thread for decode).

    python benchmarks/bench_io.py [--shared PATH] [--seconds 1.5] [--spec prior|lovt]

Prints images/s per DICOM transfer syntax (shared/data/dicom files), for the folder of PNGs in
shared/data/cxr_nih/images, and for a random-weight torchvision ResNet50 at 224 px (batch 8,
inference_mode), then the ratio decode/model. Default run: well under 2 minutes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _rate(fn, min_seconds: float, min_runs: int = 3) -> tuple[float, int]:
    fn()  # warm-up (imports, caches)
    n, start = 0, time.perf_counter()
    while n < min_runs or time.perf_counter() - start < min_seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start), n


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=os.environ.get("RADZOO_SHARED", str(here.parent / "shared")))
    parser.add_argument("--seconds", type=float, default=1.5, help="minimum timing per row")
    parser.add_argument("--spec", choices=["prior", "lovt"], default="prior")
    args = parser.parse_args()

    import torch

    from radzoo.io import ImageReadError, make_transform, read_image
    from radzoo.zoo import registry

    torch.set_num_threads(1)
    spec = registry.PRIOR_IMAGE_PREPROCESS if args.spec == "prior" else registry.LOVT_PREPROCESS
    transform = make_transform(spec)
    data = Path(args.shared) / "data"

    rows: list[tuple[str, str, str, float]] = []
    for path in sorted((data / "dicom").glob("*.dcm")):
        blob = path.read_bytes()
        try:
            img = read_image(blob)
        except ImageReadError:
            continue  # the truncated file
        from pydicom.uid import UID

        ts = UID(img.transfer_syntax).name if img.transfer_syntax else "(none)"
        rate, _ = _rate(lambda b=blob: transform(read_image(b)), args.seconds)
        rows.append((path.name, ts, f"{img.shape[0]}x{img.shape[1]}", rate))

    pngs = sorted((data / "cxr_nih" / "images").glob("*.png"))
    blobs = [p.read_bytes() for p in pngs]
    start = time.perf_counter()
    for b in blobs:
        transform(read_image(b))
    png_rate = len(blobs) / (time.perf_counter() - start)

    from torchvision.models import resnet50

    model = resnet50().eval()
    x = torch.randn(8, 3, 224, 224)
    model_rates = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            model(x)
            n, t0 = 0, time.perf_counter()
            while n < 2 or time.perf_counter() - t0 < 4.0:
                model(x)
                n += 1
        model_rates[threads] = 8 * n / (time.perf_counter() - t0)
    torch.set_num_threads(1)

    m1 = model_rates[1]
    print(f"\ndecode + {args.spec} preprocess to 224 px, 1 thread; ResNet50 b=8 1 thread = {m1:.1f} img/s")
    print(f"{'file':42s} {'transfer syntax':48s} {'size':>10s} {'img/s':>8s} {'x model':>8s}")
    for name, ts, size, rate in rows:
        print(f"{name:42s} {ts[:48]:48s} {size:>10s} {rate:8.1f} {rate / m1:8.1f}")
    print(f"{'cxr_nih/images (' + str(len(blobs)) + ' PNG, 512x512 8-bit)':42s} {'PNG':48s} {'512x512':>10s} "
          f"{png_rate:8.1f} {png_rate / m1:8.1f}")
    for threads, rate in model_rates.items():
        print(f"ResNet50 224px random weights, batch 8, inference_mode, {threads} thread(s): {rate:.1f} img/s")


if __name__ == "__main__":
    main()
