"""graph-CT short run: does the patch-level MoCo loss fall, and does the encoder learn something?

    python benchmarks/graphct_short_run.py                       # 24 + 8 phantoms with findings, 240 patch steps (about 12 min on 2 cores)
    python benchmarks/graphct_short_run.py --plain               # the same on phantoms without findings
    python benchmarks/graphct_short_run.py --tiny                # smoke run (a few minutes)

The volumes are synthetic chest phantoms (``radzoo.ct.chest_phantom``), not real lung CT (none is
available to this project). By default each phantom gets subject-specific lung findings
(``radzoo.ct.phantom.random_findings``: parenchymal density, emphysema-like low-attenuation
spheres, nodules at random positions); ``--plain`` leaves them out, so the phantoms differ only in
shape, vessels and noise, as before.

The run is the patch phase of ``radzoo train graphct`` (the patch cache over the CT pipeline, then
``PatchMoCo`` with per-landmark queues, the landmark-ordered ``LandmarkBlocks`` walk and the shared
``Trainer``, built exactly as ``train_graphct`` builds them) with the original objective and
optimiser (SGD 0.03, momentum 0.9, wd 1e-4, cosine; m 0.999, T 0.2; the original's MONAI
augmentations). Only sizes are smoke-sized: ``landmark_stride``, ``steps_per_landmark``,
``batch_size``, ``moco_k``, ``epochs`` and a cheap registration. The graph phase is left out (see
``patch_phase``); ``tests/training/test_graphct_training.py`` runs the whole command.

It prints, from one run:

* the patch loss, as moving averages over the first and the last ``--window`` steps after each
  landmark's queue holds real keys (before that, its negatives are the random init and the loss is
  low for no reason), with ``ln(K + 1)``: the loss of an encoder that cannot tell the positive from
  the negatives;
* patch retrieval at the trained landmarks: for each subject, does the nearest neighbour of one
  augmented view (among all subjects' second views at the same landmark, conv features of the
  patch encoder, cosine) belong to the same subject? Trained encoder vs the untrained encoder the
  run started from vs chance (``1 / subjects``), on the training subjects (new augmentations) and
  on held-out subjects the run never saw.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def write_volumes(folder: Path, n: int, seed: int, plain: bool, shape: tuple[int, int, int],
                  spacing: tuple[float, float, float]) -> None:
    import SimpleITK as sitk

    from radzoo import ct
    from radzoo.ct.phantom import random_findings

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        findings = {} if plain else random_findings(rng)
        options = {"scale": float(rng.uniform(0.9, 1.05)), "noise_hu": float(rng.uniform(10.0, 30.0)),
                   "vessels_per_lung": int(rng.integers(3, 13)), **findings}
        path = folder / f"phantom{i:03d}.nii.gz"
        if path.is_file():  # a reused --work folder: keep the volume (and so its cached patches)
            continue
        volume = ct.chest_phantom(shape=shape, spacing=spacing, seed=seed * 1000 + i, **options)
        sitk.WriteImage(volume.to_sitk(), str(path))


def moving_averages(records: list[dict], warm: int, window: int) -> tuple[float, float, int]:
    """Mean loss over the first and last ``window`` steps among those with a filled queue."""
    seen: dict[float, int] = {}
    usable = []
    for r in records:
        lm = r["landmark"]
        seen[lm] = seen.get(lm, 0) + 1
        if seen[lm] > warm:
            usable.append(r["loss"])
    if len(usable) < 2 * window:
        window = max(1, len(usable) // 2)
    return float(np.mean(usable[:window])), float(np.mean(usable[-window:])), window


@torch.no_grad()
def retrieval(encoders: dict[str, torch.nn.Module], cache, landmarks: list[int], seed: int) -> dict[str, float]:
    """Top-1 same-subject retrieval between two augmented views, per landmark, averaged."""
    from radzoo.training.ct_augment import graphct_augmentation, two_views

    transform = graphct_augmentation()
    for enc in encoders.values():
        enc.eval()
    hits: dict[str, list[float]] = {name: [] for name in encoders}
    n = len(cache.subjects)
    for landmark in landmarks:
        views = [two_views(transform, cache.patch(sid, landmark)[None], seed * 1_000_003 + landmark * 1009 + i)
                 for i, sid in enumerate(cache.subjects)]
        a = torch.stack([v[0] for v in views])
        b = torch.stack([v[1] for v in views])
        for name, enc in encoders.items():
            sim = F.normalize(enc(a), dim=1) @ F.normalize(enc(b), dim=1).t()
            hits[name].append(float((sim.argmax(dim=1) == torch.arange(n)).float().mean()))
    return {name: float(np.mean(h)) for name, h in hits.items()}


def patch_phase(config, cache, out: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The patch phase of ``train_graphct``, built as ``_train`` builds it (same modules, dataset, loop,
    optimiser, schedule and seeds); returns (trained, untrained) patch encoders. The graph phase is
    left out: on two CPU cores it costs about half a minute per subject per sub-epoch (581 patches x 2
    views through the frozen encoder) and does not touch the patch encoder."""
    import copy

    from radzoo.ct.landmarks import load_atlas
    from radzoo.training import distributed as D
    from radzoo.training.loop import Phase, Trainer, seed_everything
    from radzoo.training.methods.graphct_pretraining import (
        BASE_SPEC,
        PATCH_DIR,
        LandmarkBlocks,
        PatchMoCo,
        _cosine,
        _initial,
        _sgd,
        landmark_order,
        steps_per_landmark,
    )
    from radzoo.training.runner import settings_for, start_run
    from radzoo.zoo.packaged import spec_assets
    from radzoo.zoo.registry import get_spec

    run = start_run(config, out, resume=False, overwrite=True)
    shutil.rmtree(run.run_dir / PATCH_DIR, ignore_errors=True)  # a fresh run, as train_graphct --overwrite
    try:
        seed_everything(config.seed)
        query, _ = _initial(config)
        untrained = copy.deepcopy(query.patch_encoder)
        method = PatchMoCo(config.moco_dim, config.moco_k, cache.num_patches, config.moco_m, config.moco_t,
                           torch.Generator().manual_seed(config.seed), query)
        order = landmark_order(cache.num_patches, config.landmark_stride)
        blocks = len(order)
        atlas = load_atlas(spec_assets(get_spec(BASE_SPEC)))
        dataset = LandmarkBlocks(cache, order, steps_per_landmark(config, len(cache), cache.num_patches),
                                 config.batch_size, atlas.locations, config.seed)
        target = config.epochs * blocks
        settings = settings_for(config, epochs=target, checkpoint_every=blocks)
        phases = lambda _steps: [Phase("patch", target, _sgd(config), _cosine(config, blocks))]  # noqa: E731
        Trainer(method, dataset, phases, settings, run.ctx, run.precision, run.run_dir / PATCH_DIR).fit()
    finally:
        D.teardown(run.ctx)
    return method.encoder_q.patch_encoder, untrained


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=24)
    p.add_argument("--heldout", type=int, default=8)
    p.add_argument("--plain", action="store_true", help="phantoms without subject-specific findings")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--moco-k", type=int, default=8)
    p.add_argument("--landmark-stride", type=int, default=97, help="97: landmarks 0, 97, ..., 485 (6 per epoch)")
    p.add_argument("--steps-per-landmark", type=int, default=20)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--moco-m", type=float, default=0.999,
                   help="key-encoder momentum: 0.999 is the original's; other values are a diagnostic only")
    p.add_argument("--window", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=None, help="keep volumes, cache and run here (default: a temp dir)")
    p.add_argument("--tiny", action="store_true", help="smoke run: 8 + 4 subjects, 2 landmarks x 4 steps x 2 epochs")
    args = p.parse_args()
    if args.tiny:
        args.subjects, args.heldout, args.batch_size, args.moco_k = 8, 4, 4, 8
        args.landmark_stride, args.steps_per_landmark, args.epochs, args.window = 291, 4, 2, 4
    torch.set_num_threads(args.threads)

    import radzoo
    from radzoo.training.ct_patch_cache import PatchCache, build_patch_cache
    from radzoo.training.graph_hparams import GraphCTConfig
    from radzoo.training.hparams import resolve_config
    from radzoo.training.methods.graphct_pretraining import landmark_order, registration_settings

    overrides = {
        "registration_base_spacing": "4", "registration_shrink": "2,1,1", "registration_iterations": "60,30,15",
        "segmenter": "threshold", "batch_size": str(args.batch_size), "graph_batch_size": "4",
        "moco_k": str(args.moco_k), "graph_moco_k": "8", "moco_m": str(args.moco_m), "landmark_stride": str(args.landmark_stride),
        "steps_per_landmark": str(args.steps_per_landmark), "epochs": str(args.epochs), "sub_epochs": "1",
        "device": "cpu", "progress": "false", "log_every": "0", "seed": str(args.seed),
    }
    config = resolve_config(GraphCTConfig, overrides=overrides)
    shape, spacing = (64, 128, 128), (2.6, 2.6, 4.5)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        t0 = time.perf_counter()
        write_volumes(work / "train", args.subjects, args.seed + 1, args.plain, shape, spacing)
        write_volumes(work / "heldout", args.heldout, args.seed + 2, args.plain, shape, spacing)
        model = radzoo.build("graphct_copdgene", device="cpu")
        for part in ("train", "heldout"):
            build_patch_cache(work / part, work / f"cache_{part}", model, segmenter=config.segmenter,
                              registration=registration_settings(config))
        t_data = time.perf_counter() - t0
        t1 = time.perf_counter()
        train_cache = PatchCache(work / "cache_train")
        trained, untrained = patch_phase(config, train_cache, work / "graphct")
        t_train = time.perf_counter() - t1
        records = [json.loads(line) for line in (work / "graphct.train" / "patch" / "metrics.jsonl").read_text().splitlines()
                   if line.strip()]
        warm = math.ceil(args.moco_k / args.batch_size)
        first, last, window = moving_averages(records, warm, args.window)
        landmarks = landmark_order(581, args.landmark_stride)
        t2 = time.perf_counter()
        held_cache = PatchCache(work / "cache_heldout")
        n_train, n_held = len(train_cache), len(held_cache)
        seen = retrieval({"trained": trained, "untrained": untrained}, train_cache, landmarks, 99)
        held = retrieval({"trained": trained, "untrained": untrained}, held_cache, landmarks, 98)
        t_eval = time.perf_counter() - t2
    print(f"graph-CT short run on {'plain' if args.plain else 'finding-bearing'} synthetic chest phantoms "
          f"({n_train} training + {n_held} held-out subjects)")
    print(f"settings: batch {args.batch_size}, K {args.moco_k} per landmark, landmarks {landmarks}, "
          f"{args.steps_per_landmark} steps per landmark, {args.epochs} epochs -> {len(records)} patch steps; "
          f"lr 0.03 cosine, SGD momentum 0.9, wd 1e-4, m {args.moco_m}, T 0.2, original MONAI augmentations")
    print(f"patch loss (moving averages over {window} steps, queues filled): first {first:.3f} -> last {last:.3f} "
          f"(ratio {last / first:.2f}); ln(K+1) = {math.log(args.moco_k + 1):.3f}; "
          f"acc1 last window {np.mean([r['acc1'] for r in records[-window:]]):.2f}")
    print(f"retrieval top-1, training subjects (new augmentations): trained {seen['trained']:.3f} vs untrained "
          f"{seen['untrained']:.3f} vs chance {1 / n_train:.3f}")
    print(f"retrieval top-1, held-out subjects: trained {held['trained']:.3f} vs untrained {held['untrained']:.3f} "
          f"vs chance {1 / n_held:.3f}")
    print(f"wall time: data {t_data:.0f} s, training {t_train:.0f} s ({t_train / max(len(records), 1):.2f} s per patch "
          f"step), retrieval {t_eval:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
