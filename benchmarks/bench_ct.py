"""Seconds per stage of ``radzoo.ct.features`` on a 512 x 512 x 300 chest phantom.

Run: ``python benchmarks/bench_ct.py [--repeats 1] [--shape 300 512 512] [--spacing 0.7 0.7 1.0]``

Prints the stage times of each run (read/resample, segmentation, registration, patch sampling,
encoding, graph), the total, and two ratios measured in the same run: the full volume against
the 60 s goal, and the registration against the original pipeline's reported ~7 min (420 s) of
ANTs per sample (a published figure, not re-measured here: ANTs is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import radzoo

ORIGINAL_REGISTRATION_S = 420.0
GOAL_TOTAL_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), help="z y x")
    ap.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 1.0), help="x y z mm")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from radzoo import ct

    model = radzoo.build("graphct_copdgene")  # random weights: same architecture and cost
    t0 = time.perf_counter()
    volume = ct.chest_phantom(shape=args.shape, spacing=args.spacing)
    print(f"phantom {volume.shape} spacing {volume.spacing}: built in {time.perf_counter() - t0:.1f} s "
          f"(not counted); cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    for r in range(args.repeats):
        t0 = time.perf_counter()
        feats = ct.features(volume, model, segmenter="threshold", batch_size=args.batch_size)
        total = time.perf_counter() - t0
        stages = dict(feats.qa["timings_s"])
        stages["total"] = round(total, 2)
        reg = stages["registration"]
        print(json.dumps({"run": r, "stages_s": stages, "qa_passed": feats.qa["passed"],
                          "dice": round(feats.qa["registration_similarity"]["dice"], 3),
                          "total_vs_goal_60s": round(total / GOAL_TOTAL_S, 2),
                          "registration_speedup_vs_original_420s": round(ORIGINAL_REGISTRATION_S / reg, 1),
                          "load_after": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
