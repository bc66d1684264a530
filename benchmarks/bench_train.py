"""Training throughput of the pretraining methods on the real training loop, measured in one run.

For each case (LoVT; PRIOR stage 1 and stage 3; IGCL; graph-CT patch steps) and each precision
and process count it runs the
real :class:`radzoo.training.loop.Trainer` (DDP under torchrun, AMP, AdamW) on synthetic
in-memory batches (random images and token layouts of the method's shape, so reading and
decoding do not count), and reports optimiser steps/s, images/s and peak RSS. Every
configuration runs in its own process(es); ratios (bf16 / fp32, 2 processes / 1) come from the
same run. Full size is the papers': ResNet-50 + BERT-base (Bio_ClinicalBERT config), global
batch 8, 224 px for LoVT and PRIOR; CLIP ViT-B/32 + DRACON (772 node features, graphs of 12-30
nodes with reaction nodes) at batch 16 for IGCL; the 3D patch CNN with its per-landmark queue
(128 x 4096 x 581) at batch 128 patches for graph-CT, where "images" are 32^3 patches and MONAI's
augmentations are excluded like decoding (``bench_graphct_data.py`` times them and the cache).

    python benchmarks/bench_train.py                               # full size, CPU: fp32 vs bf16, 1 vs 2 processes
    python benchmarks/bench_train.py --tiny --steps 2 --warmup 1   # smoke run (seconds)
    python benchmarks/bench_train.py --device cuda --precisions fp16,bf16 --procs 1

Adding a method: write ``build(args) -> (method, make_item, collate)`` and register it in
``CASES`` (``make_item(index) -> one synthetic sample``; ``collate`` stacks them like the method's
real collator).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

HERE = Path(__file__).resolve()


# ------------------------------------------------------------------------------------ cases


@dataclass
class Case:
    name: str
    describe: str
    #: args -> (method module, phases(steps_per_epoch) -> list[Phase], make_item(i) -> sample, collate)
    build: Callable[[argparse.Namespace], tuple[nn.Module, Callable[[int], list], Callable[[int], Any], Callable[[list], Any]]]
    #: the paper's global batch (used unless --batch is given)
    batch: int = 8


def _text_config(tiny: bool) -> dict[str, Any]:
    from radzoo.training.imagetext import preset_text_config

    cfg = preset_text_config("tiny" if tiny else "bio_clinicalbert")
    cfg["vocab_size"] = 512 if tiny else 28996
    return cfg


def _tokens(g: torch.Generator, vocab: int, sentences: int, words: int, length: int, one_based: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One report's (ids, mask, sentence index): [CLS] + sentences x words pieces + [SEP], padded."""
    n = min(sentences * words, length - 2)
    ids = torch.zeros(length, dtype=torch.long)
    ids[0], ids[1 : n + 1], ids[n + 1] = 2, torch.randint(5, vocab, (n,), generator=g), 3
    mask = torch.zeros(length, dtype=torch.long)
    mask[: n + 2] = 1
    index = torch.full((length,), -1, dtype=torch.long)
    index[1 : n + 1] = torch.arange(n) // words + (1 if one_based else 0)
    return ids, mask, index


def _stack(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _lovt(args: argparse.Namespace) -> tuple:
    from radzoo.training.hparams import LoVTConfig
    from radzoo.training.loop import Phase
    from radzoo.training.methods.lovt_pretraining import (
        LoVTPretraining,
        build_net,
        freeze_text_layers,
    )
    from radzoo.training.schedules import cosine_annealing

    preset = "tiny" if args.tiny else "resnet50"
    config = LoVTConfig(image_preset=preset, text_preset="tiny" if args.tiny else "bio_clinicalbert", init="random", image_size=args.size)
    text = _text_config(args.tiny)
    net = build_net(config, text)
    freeze_text_layers(net, config)
    method = LoVTPretraining(net, config, config.size // 32)
    length = 64 if args.tiny else 128

    def make_item(i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        ids, mask, index = _tokens(g, text["vocab_size"], 8, 12, length, one_based=False)
        return {"image": torch.randn(3, config.size, config.size, generator=g), "input_ids": ids, "attention_mask": mask, "sentence_index": index}

    def phases(steps: int) -> list:
        return [Phase("lovt", 1, lambda p: torch.optim.AdamW(p, lr=1e-4, weight_decay=1e-6), cosine_annealing(1e-4, steps))]

    return method, phases, make_item, _stack


def _prior(stage: str) -> Callable[[argparse.Namespace], tuple]:
    def build(args: argparse.Namespace) -> tuple:
        from radzoo.training.hparams import PriorConfig
        from radzoo.training.methods.prior_pretraining import build as build_prior
        from radzoo.training.methods.prior_pretraining import stage_phases

        n = int(stage[-1])
        epochs = {f"stage{k}_epochs": int(k == n) for k in (1, 2, 3)}
        config = PriorConfig(
            image_preset="tiny" if args.tiny else "resnet50", text_preset="tiny" if args.tiny else "bio_clinicalbert",
            init="random", image_size=args.size, decoder_layers=2 if args.tiny else 8, **epochs,
        )
        text = _text_config(args.tiny)
        method = build_prior(config, text)
        length = 64 if args.tiny else 256

        def make_item(i: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(i)
            ids, mask, index = _tokens(g, text["vocab_size"], 10, 12, length, one_based=True)
            return {"image": torch.randn(1, config.size, config.size, generator=g), "input_ids": ids, "attention_mask": mask, "sentence_index": index}

        return method, lambda steps: stage_phases(config, steps), make_item, _stack

    return build


def _igcl(args: argparse.Namespace) -> tuple:
    from torch_geometric.data import Data

    from radzoo.graphs.reaction_nodes import add_reaction_nodes
    from radzoo.training.graph_hparams import IGCLConfig
    from radzoo.training.igcl_pairs import collate_pairs
    from radzoo.training.loop import Phase
    from radzoo.training.methods.igcl_pretraining import IGCLMethod, igcl_spec, initial_net

    config = IGCLConfig(size="tiny" if args.tiny else "full")
    spec = igcl_spec(config, "synthetic")
    method = IGCLMethod(initial_net(config, spec), freeze_batches=0)
    features = int(spec.arch_args["node_features"])
    size = int(spec.arch_args["vision_config"]["image_size"])

    def make_item(i: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(i)
        n = 12 + i % 19  # RadGraph reports: a dozen to a few dozen entities
        heads = torch.arange(0, n - 1, 2)
        edges = torch.stack([heads, heads + 1])  # every other entity related: isolated ones -> reaction nodes
        x = torch.cat([torch.randn(n, features - 4, generator=g), torch.eye(4)[torch.randint(0, 4, (n,), generator=g)]], 1)
        graph = add_reaction_nodes(Data(x=x, edge_index=edges, edge_attr=torch.eye(3)[torch.randint(0, 3, (edges.shape[1],), generator=g)]))
        return {"image": torch.randn(3, size, size, generator=g), "graph": graph, "replaced": 0}

    def phases(steps: int) -> list:
        return [Phase("igcl", 1, lambda p: torch.optim.AdamW(p, lr=1e-3), lambda step, epoch: 1e-3)]

    return method, phases, make_item, collate_pairs


def _graphct_patch(args: argparse.Namespace) -> tuple:
    from radzoo.training.loop import Phase
    from radzoo.training.methods.graphct_pretraining import PatchMoCo

    queue = 64 if args.tiny else 4096
    method = PatchMoCo(128, queue, 581, 0.999, 0.2, torch.Generator().manual_seed(0))
    landmark = 290  # a batch holds one landmark's patches

    def make_item(i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {"q": torch.rand(1, 32, 32, 32, generator=g) * 2 - 1, "k": torch.rand(1, 32, 32, 32, generator=g) * 2 - 1,
                "loc": torch.rand(3, generator=g), "landmark": torch.tensor(landmark)}

    def phases(steps: int) -> list:
        return [Phase("patch", 1, lambda p: torch.optim.SGD(p, lr=0.03, momentum=0.9, weight_decay=1e-4), lambda step, epoch: 0.03)]

    return method, phases, make_item, _stack


#: name -> case. Other methods register here (``CASES["igcl"] = Case(...)``).
CASES: dict[str, Case] = {
    "lovt": Case("lovt", "LoVT (global + 4 local losses, BERT layers 0-5 frozen)", _lovt),
    "prior-stage1": Case("prior-stage1", "PRIOR stage 1 (global + local alignment)", _prior("stage1")),
    "prior-stage3": Case("prior-stage3", "PRIOR stage 3 (+ SPB, 8-layer decoder, image decoder)", _prior("stage3")),
    "igcl": Case("igcl", "IGCL (CLIP ViT-B/32 + DRACON, CLIP loss)", _igcl, batch=16),
    "graphct-patch": Case("graphct-patch", "graph-CT patch MoCo (3D CNN, per-landmark queue)", _graphct_patch, batch=128),
}


# ----------------------------------------------------------------------------------- worker


class _Synthetic(Dataset):
    def __init__(self, n: int, make_item: Callable[[int], Any]) -> None:
        self.items = [make_item(i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def worker(args: argparse.Namespace) -> None:
    """One configuration in this process (and its torchrun peers): train, then report."""
    from radzoo.training import distributed as D
    from radzoo.training.loop import Settings, Trainer
    from radzoo.training.precision import Precision, resolve_precision
    from radzoo.training.run_log import read_metrics

    ctx = D.setup(args.device, "auto")
    try:
        torch.manual_seed(0)
        method, phases, make_item, collate = CASES[args.case].build(args)
        total = args.warmup + args.steps
        dataset = _Synthetic(args.batch * total, make_item)
        precision = Precision(resolve_precision(args.precision, ctx.device), ctx.device)
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(epochs=1, batch_size=args.batch, progress=False, log_every=0, save_checkpoints=False)
            trainer = Trainer(method, dataset, phases, settings, ctx, precision, Path(tmp), collate=collate)
            t0 = time.perf_counter()
            trainer.fit()
            wall = time.perf_counter() - t0
            records = read_metrics(tmp) if ctx.is_main else []
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rss = D.all_gather_object(rss_mb)
        if ctx.is_main:
            timed = records[args.warmup :]
            step_s = sum(r["samples"] / r["samples_per_s"] for r in timed) / len(timed)
            result = {
                "case": args.case, "precision": precision.name, "procs": ctx.world_size, "device": str(ctx.device),
                "batch": args.batch, "size": args.size, "steps_per_s": 1 / step_s, "images_per_s": args.batch / step_s,
                "peak_rss_mb_per_process": max(rss), "peak_rss_mb_total": sum(rss), "wall_s": wall,
                "threads": torch.get_num_threads(),
            }
            Path(args.result).write_text(json.dumps(result))
    finally:
        D.teardown(ctx)


# ----------------------------------------------------------------------------------- driver


def run_one(args: argparse.Namespace, case: str, precision: str, procs: int, out: Path) -> dict[str, Any] | None:
    batch = args.batch or CASES[case].batch
    flags = ["--worker", "--case", case, "--precision", precision, "--result", str(out), "--device", args.device,
             "--batch", str(batch), "--size", str(args.size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.tiny:
        flags.append("--tiny")
    env = dict(os.environ)
    if procs == 1:
        cmd = [sys.executable, str(HERE), *flags]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), str(HERE), *flags]
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // procs))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0 or not out.is_file():
        print(f"  {case} {precision} x{procs}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--precisions", default="32,bf16")
    p.add_argument("--procs", default="1,2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=0, help="global batch (0 = each case's paper batch: 8, IGCL 16, graph-CT 128 patches)")
    p.add_argument("--size", type=int, default=0, help="image size (0 = 224, or 64 with --tiny)")
    p.add_argument("--steps", type=int, default=3, help="timed optimiser steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    p.add_argument("--tiny", action="store_true", help="tiny towers (smoke run), not the papers' sizes")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--json", type=Path, help="also write all results here")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--precision", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.size = args.size or (64 if args.tiny else 224)
    if args.worker:
        worker(args)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            if case not in CASES:
                raise SystemExit(f"unknown case {case!r}; known: {', '.join(CASES)}")
            for precision in args.precisions.split(","):
                for procs in (int(x) for x in args.procs.split(",")):
                    r = run_one(args, case, precision, procs, Path(tmp) / f"{case}-{precision}-{procs}.json")
                    if r:
                        results.append(r)
                        print(f"  {case:13s} {r['precision']:>4s} x{procs}: {r['steps_per_s']:.3f} steps/s, "
                              f"{r['images_per_s']:.2f} img/s, peak RSS {r['peak_rss_mb_per_process']:.0f} MB/process", flush=True)
    size = "tiny towers" if args.tiny else "full size"
    print(f"\n{size}, {args.size} px (graph-CT: 32^3 patches), device {args.device}, {args.steps} timed steps")
    print(f"{'case':14s} {'batch':>5s} {'prec':>5s} {'procs':>5s} {'steps/s':>8s} {'img/s':>7s} {'RSS MB/proc':>11s}")
    for r in results:
        print(f"{r['case']:14s} {r['batch']:>5d} {r['precision']:>5s} {r['procs']:>5d} {r['steps_per_s']:>8.3f} {r['images_per_s']:>7.2f} {r['peak_rss_mb_per_process']:>11.0f}")
    by = {(r["case"], r["precision"], r["procs"]): r for r in results}
    print("\nratios (same run):")
    for case in args.cases.split(","):
        precs = args.precisions.split(",")
        procs = [int(x) for x in args.procs.split(",")]
        for n in procs:
            base = by.get((case, "32", n))
            for prec in precs:
                other = by.get((case, prec, n))
                if prec != "32" and base and other:
                    print(f"  {case} x{n}: {prec} / fp32 = {other['images_per_s'] / base['images_per_s']:.2f}x")
        for prec in precs:
            one = by.get((case, prec, 1))
            for n in procs:
                other = by.get((case, prec, n))
                if n != 1 and one and other:
                    print(f"  {case} {prec}: {n} processes / 1 = {other['images_per_s'] / one['images_per_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
