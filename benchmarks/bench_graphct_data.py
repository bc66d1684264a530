"""graph-CT training data: the patch-cache build (time per volume, share in registration) and MONAI
augmentation cost, measured in one run.

    python benchmarks/bench_graphct_data.py                     # 3 phantoms of 300 x 512 x 512 at 0.7 x 0.7 x 1 mm
    python benchmarks/bench_graphct_data.py --volumes 4 --workers 1,2
    python benchmarks/bench_graphct_data.py --tiny              # smoke run: small phantoms, fast registration

The volumes are synthetic chest phantoms (``radzoo.ct.chest_phantom``, varied seeds), written as
NIfTI and read back, so the timings include reading, segmentation, registration, the B-spline
patch sampling and the atomic writes. Printed per worker count: seconds per volume (wall),
the share of the summed stage time spent in registration, cache MB per subject; then the
augmentation cost of one patch pair (patch phase) and one 581-patch stack pair (graph phase),
and the ratios of the run (workers N / 1, registration / total).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def _write_phantoms(folder: Path, n: int, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> None:
    import SimpleITK as sitk

    from radzoo import ct

    for i in range(n):
        volume = ct.chest_phantom(shape=shape, spacing=spacing, seed=i, scale=1.0 - 0.03 * (i % 3))
        sitk.WriteImage(volume.to_sitk(), str(folder / f"phantom{i}.nii.gz"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volumes", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), help="z y x")
    ap.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 1.0), help="x y z mm")
    ap.add_argument("--workers", default="1", help="comma-separated worker counts, e.g. 1,2")
    ap.add_argument("--segmenter", default="threshold")
    ap.add_argument("--aug-repeats", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="small phantoms and a cheap registration (smoke run)")
    args = ap.parse_args()

    import torch

    from radzoo import build
    from radzoo.ct.register import RegistrationSettings
    from radzoo.training.ct_augment import graphct_augmentation, two_views
    from radzoo.training.ct_patch_cache import PatchCache, build_patch_cache

    if args.tiny:
        args.shape, args.spacing = (64, 128, 128), (2.6, 2.6, 4.5)
        settings = RegistrationSettings(base_spacing=4.0, shrink_factors=(2, 1, 1), smoothing_sigmas=(1.0, 0.0, 0.0),
                                        iterations=(60, 30, 15))
    else:
        settings = RegistrationSettings()
    model = build("graphct_copdgene", device="cpu")  # atlas + spec only
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} torch threads={torch.get_num_threads()}; "
          f"{args.volumes} phantoms {tuple(args.shape)} at {tuple(args.spacing)} mm; registration {settings.base_spacing} mm "
          f"{settings.iterations}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        t0 = time.perf_counter()
        _write_phantoms(inputs, args.volumes, tuple(args.shape), tuple(args.spacing))
        print(f"phantoms written in {time.perf_counter() - t0:.1f} s (not counted)")
        for workers in (int(w) for w in args.workers.split(",")):
            cache = Path(tmp) / f"cache{workers}"
            t0 = time.perf_counter()
            report = build_patch_cache(inputs, cache, model, segmenter=args.segmenter, registration=settings,
                                       workers=workers)
            wall = time.perf_counter() - t0
            per_volume = wall / args.volumes  # every volume is read, segmented and registered, built or left out
            stages = report.stage_seconds
            total = sum(stages.values())
            size_mb = sum(p.stat().st_size for p in (cache / "subjects").glob("*.safetensors")) / 1e6 / max(report.built, 1)
            results[workers] = per_volume
            print(f"\nworkers {workers}: {report.built} built, {len(report.excluded)} excluded; {wall:.1f} s wall, "
                  f"{per_volume:.1f} s per volume; {size_mb:.1f} MB per subject")
            for stage, sec in sorted(stages.items(), key=lambda kv: -kv[1]):
                print(f"  {stage:13s} {sec / max(report.built, 1):7.2f} s/built volume  {sec / total:6.1%}")
            print(f"  registration share of the stage time: {report.registration_share:.1%}")
        last = PatchCache(cache)
        sid = last.subjects[0]
        transform = graphct_augmentation()
        patch = last.patch(sid, 290)[None]
        two_views(transform, patch, 0)  # warm-up
        t0 = time.perf_counter()
        for i in range(args.aug_repeats):
            two_views(transform, patch, i)
        per_patch = (time.perf_counter() - t0) / args.aug_repeats
        stack = last.patches(sid)
        t0 = time.perf_counter()
        two_views(transform, stack, 0)
        per_stack = time.perf_counter() - t0
        shutil.rmtree(inputs, ignore_errors=True)
    print("\nMONAI augmentation (RandAdjustContrast, RandGaussianNoise, Rand3DElastic), two views:")
    print(f"  one patch pair [1, 32^3]: {per_patch * 1000:.0f} ms -> a 128-patch batch needs {per_patch * 128:.1f} s of data workers")
    print(f"  one subject pair [581, 32^3]: {per_stack:.2f} s")
    print("\nratios (same run):")
    base = results.get(1)
    for workers, per_volume in results.items():
        if workers != 1 and base:
            print(f"  {workers} workers / 1: {base / per_volume:.2f}x volumes per second")
    print(f"  registration / all stages: {report.registration_share:.2f}")
    print(f"  graph-phase augmentation / patch-phase pair: {per_stack / per_patch:.0f}x (581 patches share one warp)")


if __name__ == "__main__":
    main()
