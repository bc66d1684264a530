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
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="int8: also write static-QDQ int8 graphs (onnxruntime quantization tools), calibrated on "
                        "--calibration, and refuse them when their cosine to fp32 on held-apart images is below "
                        "0.99 mean / 0.98 min")
    p.add_argument("--calibration", nargs="+", metavar="IMAGES",
                   help="calibration images (files, folders, globs; CT: volumes or series folders). Default for "
                        "chest X-ray models: the 6 NIH ChestX-ray14 radiographs packaged with radzoo "
                        "(radzoo/assets/calibration/cxr); every third input is held apart for the gate")
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

    section = export_artifact(args.directory, outputs=args.outputs, opset=args.opset, parity_tol=args.parity_tol,
                              precision=args.precision, calibration=args.calibration)
    print(f"exported to {args.directory} (opset {section['opset']}, {section['exporter']}, "
          f"onnxruntime {section['onnxruntime_version']})")
    for entry in section["graphs"].values():
        print(f"  {entry['file']:<28} parity max abs diff {entry['parity_max_abs_diff']:.3e}")
    if args.precision == "int8":
        cal = section["int8"]["calibration"]
        print(f"int8 calibrated on {cal['calibration_inputs']} inputs from {cal['source']} "
              f"(digest {cal['digest'][:16]}); cosine to fp32 on {cal['held_apart_inputs']} held-apart inputs:")
        for entry in section["int8"]["graphs"].values():
            gate = entry["gate"]
            print(f"  {entry['file']:<28} mean {gate['cosine_mean']:.4f} min {gate['cosine_min']:.4f} "
                  f"(gate >= {gate['gate_mean']} / {gate['gate_min']})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from radzoo.artifacts import verify_artifact

    report = verify_artifact(args.model, runtime=args.runtime, revision=args.revision)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.passed else 1
