"""``radzoo eval zero-shot`` and ``radzoo ground``: zero-shot metrics and grounding overlays."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from radzoo.cli.model_options import add_model_options, open_model
from radzoo.errors import InputError


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a model on labelled data")
    tasks = p.add_subparsers(dest="task", metavar="TASK")
    p.set_defaults(func=lambda _args: _missing_task(p))
    z = tasks.add_parser(
        "zero-shot",
        help="zero-shot accuracy / macro-AUROC / macro-F1 of an image-text model on a labelled folder",
    )
    add_model_options(z, runtime=False)
    z.add_argument(
        "--labels-csv", required=True, type=Path,
        help="CSV with a 'path' column and one 0/1 column per label, or PRIOR's chexpert_5x200.json",
    )
    z.add_argument("--image-root", type=Path, help="folder that relative image paths start from (default: the label file's folder)")
    z.add_argument("--labels", nargs="+", metavar="COL[=NAME]",
                   help="label columns to use, optionally renamed for the prompts (e.g. 'Effusion=Pleural Effusion')")
    z.add_argument("--mode", choices=["single-label", "multi-label"], default="single-label")
    z.add_argument("--prompts", help="a prompt set stored in the model (NAME or NAME@VERSION) or a template with {label}")
    z.add_argument("--limit", type=int, help="evaluate only the first N images")
    z.add_argument("--out", type=Path, help="also write the metrics as JSON here")
    z.add_argument("--batch-size", type=int, default=16)
    z.set_defaults(func=_eval_zero_shot)

    g = sub.add_parser("ground", help="render where an image-text model finds a text in an image")
    g.add_argument("image", type=Path, help="chest X-ray (DICOM/PNG/JPEG)")
    g.add_argument("text", help='the text, e.g. "Pleural Effusion is observed"')
    add_model_options(g, runtime=False)
    g.add_argument("--out", required=True, type=Path, help="overlay image (.png, .jpg, .pdf, .svg)")
    g.add_argument("--heatmap", type=Path, help="also save the heatmap (image-sized float32) as .npy")
    g.add_argument(
        "--method",
        choices=("auto", "gradcam", "tokens"),
        default="auto",
        help="PRIOR: gradcam (default, spatial) or tokens (the literal 7x7 token-vs-prompt map)",
    )
    g.set_defaults(func=_ground)


def _missing_task(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _fmt(x: float) -> str:
    return "n/a" if isinstance(x, float) and math.isnan(x) else f"{x:.4f}"


def _eval_zero_shot(args: argparse.Namespace) -> int:
    from radzoo.zeroshot.evaluate import LabelledSet, evaluate, parse_label_spec, read_labels

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    data = read_labels(args.labels_csv, args.image_root, parse_label_spec(args.labels))
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit must be >= 1, got {args.limit}")
        data = LabelledSet(data.paths[: args.limit], data.labels, data.y[: args.limit])
    model = open_model(args, runtime="torch")  # prompt scoring and Grad-CAM run the torch towers
    if model.random_init:
        print(f"note: {model.name} has RANDOM weights; the metrics carry no meaning", file=sys.stderr)
    metrics = evaluate(model, data, mode=args.mode, prompts=args.prompts, batch_size=args.batch_size)
    print(f"{model.name}: zero-shot {metrics.mode} on {metrics.n_images} images, labels {', '.join(metrics.labels)}")
    print(f"accuracy {_fmt(metrics.accuracy)}  macro-AUROC {_fmt(metrics.macro_auroc)}  macro-F1 {_fmt(metrics.macro_f1)}")
    for lab, row in metrics.per_label.items():
        print(f"  {lab:<24} AUROC {_fmt(row['auroc'])}  F1 {_fmt(row['f1'])}  positives {row['positives']}")
    for note in metrics.notes:
        print(f"note: {note}", file=sys.stderr)
    for s in metrics.skipped:
        print(f"skipped {s['path']}: {s['error']}", file=sys.stderr)
    if args.out:
        payload = {"model": model.name, "random_weights": model.random_init, **metrics.to_dict()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, default=_json_nan))
    return 0


def _json_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else str(value)


def _ground(args: argparse.Namespace) -> int:
    import numpy as np

    from radzoo.zeroshot.grounding import ground
    from radzoo.zeroshot.overlay import SUFFIXES, render_overlay

    if args.out.suffix.lower() not in SUFFIXES:
        raise InputError(f"--out must end in one of {', '.join(SUFFIXES)}, got {args.out.name!r}")
    if not args.image.is_file():
        raise InputError(f"image {args.image} does not exist")
    model = open_model(args, runtime="torch")  # prompt scoring and Grad-CAM run the torch towers
    result = ground(model, args.image, args.text, method=args.method)
    title = args.text + ("  [random weights]" if model.random_init else "")
    render_overlay(result.pixels, result.heatmap, title, args.out)
    for note in result.truncated:
        print(f"note: {note}", file=sys.stderr)
    if args.heatmap:
        args.heatmap.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.heatmap, result.heatmap)
    print(f"wrote {args.out} ({result.method}, map {result.grid.shape[0]}x{result.grid.shape[1]} -> {result.heatmap.shape[0]}x{result.heatmap.shape[1]})")
    return 0
