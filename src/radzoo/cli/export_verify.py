"""``radzoo export DIR`` and ``radzoo verify NAME_OR_DIR``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export an artifact's graphs to ONNX (parity-checked against torch)",
        description="Write DIR/onnx/*.onnx (image outputs with dynamic batch, text encoders with dynamic "
        "batch and sequence, graph-CT patch encoder and GCN) and record them in config.json and the card. "
        "Fails, writing nothing, when onnxruntime differs from torch by more than --parity-tol.",
    )
    p.add_argument("directory", type=Path, help="artifact directory")
    p.add_argument(
        "--outputs",
        nargs="+",
        metavar="NAME",
        help="graphs to export: image output names (trunk, global ...) or graph names (text_global, "
        "patch_encoder, gnn); default: all",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--parity-tol", type=float, default=None, help="max abs diff allowed (default 1e-4)")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "verify",
        help="recompute an artifact's golden outputs with torch and ONNX; exit 1 on deviation",
    )
    p.add_argument("model", help="artifact directory, local zoo name or registry name")
    p.add_argument("--runtime", choices=["torch", "onnx", "both"], default="both")
    p.add_argument("--revision", help="Hub revision (for registry names)")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=_verify)


def _export(args: argparse.Namespace) -> int:
    from radzoo.artifacts import export_artifact

    section = export_artifact(args.directory, outputs=args.outputs, opset=args.opset, parity_tol=args.parity_tol)
    print(f"exported to {args.directory} (opset {section['opset']}, {section['exporter']}, "
          f"onnxruntime {section['onnxruntime_version']})")
    for entry in section["graphs"].values():
        print(f"  {entry['file']:<28} parity max abs diff {entry['parity_max_abs_diff']:.3e}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from radzoo.artifacts import verify_artifact

    report = verify_artifact(args.model, runtime=args.runtime, revision=args.revision)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.passed else 1
