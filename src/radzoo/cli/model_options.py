"""The options every command that opens a model shares, and the one call that opens it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from radzoo.runtimes import PRECISIONS, RUNTIMES


def add_model_options(
    parser: argparse.ArgumentParser,
    *,
    default_model: str | None = None,
    runtime: bool = True,
    threads: bool = False,
    model_optional: bool = False,
) -> None:
    """``--model``, ``--random-weights``, ``--seed``, ``--device`` (+ ``--runtime``, ``--precision``, ``--threads``).

    ``model_optional``: the command can find its model elsewhere (``radzoo extract --head``)."""
    parser.add_argument("--model", required=default_model is None and not model_optional, default=default_model,
                        help="registry name, local zoo name or artifact directory"
                        + (f" (default {default_model})" if default_model else ""))
    add_weights_options(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    if runtime:
        parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                            help="auto (default): onnxruntime, exporting the model's graphs once on first use "
                                 "(parity-checked; kept in the artifact or $RADZOO_HOME/onnx-cache), torch when "
                                 "that is not possible; or force torch / onnx")
        parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                            help="fp32 (default); bf16 (CPU: torch oneDNN bf16; GPU: runs as fp16); fp16 (GPU); "
                                 "int8 (onnxruntime static QDQ, calibrated on real images, refused below a "
                                 "cosine-to-fp32 gate)")
    if threads:
        parser.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")


def add_weights_options(parser: argparse.ArgumentParser) -> None:
    """``--random-weights`` and ``--seed``: where a command's weights come from."""
    parser.add_argument("--random-weights", action="store_true",
                        help="explicitly RANDOM weights built from the registry (no download; tests and smoke "
                             "runs; outputs carry no meaning and are marked)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-weights (default 0)")


def open_model(args: argparse.Namespace, *, runtime: str | None = None) -> Any:
    """``radzoo.load`` with the command's options; notes random weights on stderr."""
    from radzoo.resolve import load

    model = load(args.model, random_weights=args.random_weights, seed=args.seed, device=args.device,
                 runtime=runtime or getattr(args, "runtime", "auto"), threads=getattr(args, "threads", None),
                 precision=getattr(args, "precision", "fp32"))
    if model.random_init:
        print(f"note: {model.name} uses RANDOM weights (--random-weights); outputs carry no meaning", file=sys.stderr)
    return model
