"""``radzoo bento``: build the deployable bento (models inside, starts offline) and its bentofile."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from radzoo.cli.model_options import add_weights_options


def register(sub: Any) -> None:
    p = sub.add_parser("bento", help="build a BentoML bento that carries its models (air-gapped deployment)")
    commands = p.add_subparsers(dest="bento_command", metavar="ACTION", required=True)

    b = commands.add_parser(
        "build",
        help="a bento with the models' weights, ONNX and int8 graphs inside: serves with the network cut",
        description="Store each model (weights, config, card, tokenizer, parity-checked ONNX graphs, int8 graphs "
        "at --precision int8) in BentoML's model store and build a bento that serves them read-only, with "
        "HF_HUB_OFFLINE=1 and RADZOO_OFFLINE=1. Python requirements come from pyproject.toml, pinned to "
        "constraints.txt. Then: bentoml serve TAG, or bentoml containerize TAG.",
    )
    b.add_argument("--models", required=True, help="comma-separated model names (registry, local zoo)")
    from radzoo.serving.bento_build import BENTO_PRECISIONS

    b.add_argument("--precision", choices=BENTO_PRECISIONS, default="fp32",
                   help="fp32 (default); int8 stores calibrated, gated int8 graphs; bf16 (CPU torch oneDNN)")
    b.add_argument("--calibration", nargs="+", metavar="PATH",
                   help="int8 calibration images/CT volumes (default: the packaged set of the model's modality)")
    b.add_argument("--gpu", action="store_true",
                   help="the CUDA variant: CUDA base image, onnxruntime-gpu (the 'gpu' extra), RADZOO_DEVICE=cuda")
    b.add_argument("--tag", help="bento name[:version] (default radzoo, version generated)")
    add_weights_options(b)
    b.set_defaults(func=_build)

    f = commands.add_parser("bentofile", help="print (or write) the bentofile.yaml generated from pyproject.toml")
    f.add_argument("--gpu", action="store_true", help="the CUDA variant")
    f.add_argument("--out", type=Path, help="write it there (the repository's bentofile.yaml: --out bentofile.yaml)")
    f.set_defaults(func=_bentofile)


def _build(args: argparse.Namespace) -> int:
    from radzoo.serving.bento_build import build_bento

    bento = build_bento(args.models.split(","), precision=args.precision, gpu=args.gpu, tag=args.tag,
                        random_weights=args.random_weights, seed=args.seed, calibration=args.calibration)
    if args.random_weights:
        print("note: this bento serves RANDOM weights (--random-weights); outputs carry no meaning", file=sys.stderr)
    print(bento.tag)
    return 0


def _bentofile(args: argparse.Namespace) -> int:
    from radzoo.serving.bento_build import bentofile, render_bentofile, repository_bentofile

    text = render_bentofile(bentofile(gpu=True, pin=False, src_prefix="src/") if args.gpu else repository_bentofile())
    if args.out is None:
        sys.stdout.write(text)
    else:
        from radzoo.onnx.export import atomic_write_text

        atomic_write_text(args.out, text)
    return 0
