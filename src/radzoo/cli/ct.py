"""``radzoo ct-features INPUT --out FILE``: graph-CT embeddings of one lung CT."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from radzoo.cli.model_options import add_model_options, open_model

#: Exit status when features were written but the CT failed QA.
EXIT_QA_FAILED = 3


def register(sub: Any) -> None:
    p = sub.add_parser("ct-features", help="graph-CT patch/node/subject embeddings of a lung CT (.npz or .json)")
    p.add_argument("input", help="NIfTI/MHA/NRRD file, DICOM series directory or .zip of one")
    p.add_argument("--out", required=True, type=Path, help="output file: .npz or .json")
    add_model_options(p, default_model="graphct_copdgene")  # --runtime/--precision: the patch encoder
    p.add_argument("--segmenter", default="auto", choices=["auto", "threshold", "lungmask"])
    p.add_argument("--batch-size", type=int, default=64, help="patches per encoder batch (memory bound)")
    p.add_argument("--require-qa", action="store_true", help="fail (exit 1, no file) when QA fails")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from radzoo.ct.pipeline import features as ct_features
    from radzoo.errors import InputError

    if args.out.suffix.lower() not in (".npz", ".json"):
        raise InputError(f"--out {args.out} must end in .npz or .json")
    model = open_model(args)
    model.spec.require("ct", "lung CT features")
    features = ct_features(args.input, model, segmenter=args.segmenter, batch_size=args.batch_size,
                           require_qa=args.require_qa)
    features.save(args.out)
    qa = features.qa
    summary = {k: qa[k] for k in ("passed", "failures", "warnings", "lung_volume_ml", "patches_in_lung_fraction")}
    summary["registration_dice"] = qa["registration_similarity"]["dice"]
    summary["out"] = str(args.out)
    print(json.dumps(summary))
    if not features.passed:
        print(f"radzoo ct-features: QA failed: {'; '.join(qa['failures'])}", file=sys.stderr)
        return EXIT_QA_FAILED
    return 0
