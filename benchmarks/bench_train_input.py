"""Is the training input pipeline the bottleneck? Per method, in one run on real NIH images:

* the data pipeline's images/s (the method's own dataset, augmentation and collator, read through
  the Trainer's own DataLoader) at 0 (in the training process), 1, 2 and N worker processes, N being
  the default ``num_workers = -1`` resolves to on this machine (``auto_num_workers``);
* next to the model's images/s (optimiser steps/s x per-process batch) on one batch held in
  memory, so decoding does not count.

If the pipeline's images/s at the default is below the model's, the accelerator waits for data.
Each method's real ``train_*`` function builds everything (data, tokenizer, method, collator) from
the same files a user passes; the harness stops it at ``Trainer.fit`` and measures instead. graph-CT
reads a pre-built CT patch cache, not images (``bench_graphct_data.py`` times that pipeline).

    python benchmarks/bench_train_input.py                                   # tiny models, CPU
    python benchmarks/bench_train_input.py --device cuda --image-size 224    # on a GPU

Images: ``$RADZOO_SHARED/data/cxr_nih`` (reports and RadGraph entries for LoVT, PRIOR and IGCL are
derived from the NIH labels by the test helpers, which is enough to time the pipelines).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[1] / "tests"), str(HERE.parents[1] / "tests" / "training")]


class _Captured(Exception):
    def __init__(self, trainer: Any) -> None:
        super().__init__("captured")
        self.trainer = trainer


def capture(module: Any, train: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a method's real ``train_*`` up to ``Trainer.fit`` and return the Trainer it built."""
    real = module.Trainer

    class Capturing(real):  # type: ignore[misc, valid-type]
        def fit(self, resume: bool = False) -> Any:
            raise _Captured(self)

    module.Trainer = Capturing
    try:
        train(*args, **kwargs)
    except _Captured as got:
        return got.trainer
    finally:
        module.Trainer = real
    raise RuntimeError(f"{train.__name__} never reached Trainer.fit")


def pipeline_rate(trainer: Any, workers: int, batches: int) -> float:
    """Images/s the Trainer's own DataLoader delivers with ``workers`` processes (first batch,
    i.e. worker start-up, excluded)."""
    from radzoo.training import distributed as D

    trainer.settings.num_workers = workers
    sampler = D.ResumableDistributedSampler(trainer.train_set, trainer.settings.batch_size, seed=0)
    it = iter(trainer._loader(trainer.train_set, sampler, trainer.local_batch, keep=False))
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            break
        n += trainer.local_batch
    return n / (time.perf_counter() - t0)


def model_rate(trainer: Any, steps: int, warmup: int) -> float:
    """Images/s the method trains at on one in-memory batch (forward, backward, optimiser step)."""
    from radzoo.training import distributed as D
    from radzoo.training.loop import to_device

    trainer.settings.num_workers = 0
    sampler = D.ResumableDistributedSampler(trainer.train_set, trainer.settings.batch_size, seed=0)
    batch = to_device(next(iter(trainer._loader(trainer.train_set, sampler, trainer.local_batch, keep=False))), trainer.ctx.device)
    method = trainer.method.to(trainer.ctx.device).train()
    phase = trainer.phases[0]
    if hasattr(method, "set_phase"):
        method.set_phase(phase.name)
    optimizer = phase.make_optimizer([p for p in method.parameters() if p.requires_grad])
    after = getattr(method, "after_optimizer_step", None)

    def step() -> None:
        with trainer.precision.autocast():
            loss, _ = method(batch)
        trainer.precision.backward(loss)
        trainer.precision.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        if after is not None:
            after()

    for _ in range(warmup):
        step()
    if trainer.ctx.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if trainer.ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * trainer.local_batch / (time.perf_counter() - t0)


def build_trainers(args: argparse.Namespace, shared: Path, work: Path) -> dict[str, Any]:
    from derived_nih import write_derived_manifest

    from derived_radgraph import write_derived_set
    from radzoo.training.graph_hparams import IGCLConfig
    from radzoo.training.hparams import LoVTConfig, MoCoCXRConfig, PriorConfig
    from radzoo.training.methods import (
        igcl_pretraining,
        lovt_pretraining,
        mococxr_pretraining,
        prior_pretraining,
    )

    nih = shared / "data" / "cxr_nih"
    run = {"device": args.device, "batch_size": args.batch, "progress": False, "log_every": 0, "seed": 0}
    paired = {"image_preset": "tiny", "text_preset": "tiny", "init": "random", "image_size": args.image_size, "max_length": 64}
    manifest = write_derived_manifest(nih, work / "pairs")
    igcl_pairs, radgraph = write_derived_set(shared / "data", work / "igcl")
    wanted = args.methods.split(",")
    out: dict[str, Any] = {}
    if "mococxr" in wanted:
        config = MoCoCXRConfig(arch="resnet18", init="random", image_size=args.image_size, moco_k=256, **run)
        out["mococxr"] = capture(mococxr_pretraining, mococxr_pretraining.train_mococxr, config, nih / "images", work / "moco", overwrite=True)
    if "lovt" in wanted:
        config = LoVTConfig(**paired, **run)
        out["lovt"] = capture(lovt_pretraining, lovt_pretraining.train_lovt, config, manifest, work / "lovt", overwrite=True)
    if "prior" in wanted:
        config = PriorConfig(**paired, **run, stage1_epochs=1, stage2_epochs=0, stage3_epochs=0)
        out["prior"] = capture(prior_pretraining, prior_pretraining.train_prior, config, manifest, work / "prior", overwrite=True)
    if "igcl" in wanted:
        config = IGCLConfig(size="tiny", val_size=args.batch, **run)
        out["igcl"] = capture(igcl_pretraining, igcl_pretraining.train_igcl, config, igcl_pairs, work / "igcl_out",
                              overwrite=True, radgraph=radgraph)
    return out


def main(argv: list[str] | None = None) -> None:
    from radzoo.training import distributed as D

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("RADZOO_SHARED", "/work/shared"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="mococxr,lovt,prior,igcl")
    parser.add_argument("--batch", type=int, default=16, help="global batch (one process)")
    parser.add_argument("--image-size", type=int, default=224, help="training crop in px (the papers': 224-320)")
    parser.add_argument("--batches", type=int, default=6, help="batches timed per worker count")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    auto = D.auto_num_workers()
    counts = sorted({0, 1, 2, auto})
    cores = len(os.sched_getaffinity(0))
    print(f"# {cores} cores visible, default num_workers = {auto}; device {args.device}, batch {args.batch}, "
          f"{args.image_size} px, tiny models, {torch.get_num_threads()} torch threads in this process; images/s")
    with tempfile.TemporaryDirectory(prefix="bench_train_input-") as tmp:
        trainers = build_trainers(args, Path(args.shared), Path(tmp))
        header = "method    " + "".join(f"{f'pipe w={w}' + ('*' if w == auto else ''):>13}" for w in counts) + f"{'model':>10}{'pipe*/model':>13}"
        print(header)
        for name, trainer in trainers.items():
            pipeline_rate(trainer, max(counts), args.batches)  # the same files into the page cache first
            pipe = {w: pipeline_rate(trainer, w, args.batches) for w in counts}
            model = model_rate(trainer, args.steps, args.warmup)
            row = f"{name:<10}" + "".join(f"{pipe[w]:>13.1f}" for w in counts) + f"{model:>10.1f}{pipe[auto] / model:>13.2f}"
            print(row, flush=True)
    print("# * = the default worker count here; pipe*/model < 1 means the model waits for data at the default")


if __name__ == "__main__":
    main()
