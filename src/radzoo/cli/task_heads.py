"""``radzoo head train | recalibrate`` and ``radzoo predict --head``: your labels, your classifier.

``head train`` reuses ``radzoo eval``'s options and machinery (label specs, patient-grouped folds,
inner CV, bootstrap CIs, floors, cached or extracted embeddings) and writes a head folder;
``predict`` opens a head's base model with the head attached and writes calibrated probabilities
and decisions (JSON or CSV, optionally DICOM SR per DICOM image, STOW-RS to a PACS).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from radzoo.cli.eval import _data_options, _embedding_options, _numbers, _read, _secret
from radzoo.cli.model_options import add_model_options, open_model
from radzoo.cli.pacs_options import add_pacs_options
from radzoo.errors import InputError
from radzoo.runtimes import PRECISIONS, RUNTIMES

OPERATING_POINT_NAMES = ("sens90", "sens95", "spec90", "youden")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "head",
        help="train, calibrate and recalibrate a task head (your labels, your classifier) on a zoo model",
        description="A small classifier on frozen embeddings, trained on your labelled studies with radzoo eval's "
                    "protocol, calibrated, with operating points, written as a head folder (no pickle) that "
                    "radzoo.load, radzoo predict, radzoo extract --head and radzoo serve --heads use.",
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK")
    p.set_defaults(func=lambda _args: (p.print_help(sys.stderr), 2)[1])

    t = tasks.add_parser("train", help="train a calibrated head with operating points (one head for all --labels)")
    add_model_options(t, threads=True)
    _data_options(t)
    _embedding_options(t)
    t.add_argument("--folds", type=int, default=5, help="patient-grouped outer folds (default 5)")
    t.add_argument("--inner-folds", type=int, default=3, help="grouped inner folds choosing C")
    t.add_argument("--c-grid", default="0.001,0.01,0.1,1,10", help="comma-separated C values (default %(default)s)")
    t.add_argument("--calibration", choices=("auto", "sigmoid", "isotonic"), default="auto",
                   help="auto (default): the method with the lower out-of-fold Brier score")
    t.add_argument("--kind", choices=("linear", "mlp"), default="linear",
                   help="linear (default): logistic regression; mlp: a small torch MLP, kept per label only when "
                        "its out-of-fold AUROC beats the linear head's on the same folds")
    t.add_argument("--baseline", action="append", default=[], choices=("raw-pixels", "random-init"),
                   help="floors shown next to the head's CV metrics in its card (repeatable)")
    t.add_argument("--bootstrap", type=int, default=1000, help="patient bootstrap resamples for the 95%% CIs")
    t.add_argument("--split-seed", type=int, default=0, help="seed of the folds and the bootstrap")
    t.add_argument("--jobs", type=int, default=None, help="parallel fits (default: one per core above 2 cores)")
    t.add_argument("--name", help="the head's name (default: the --out folder's name)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --out head folder")
    t.add_argument("--out", required=True, type=Path, help="the head folder to write")
    t.set_defaults(func=_train)

    r = tasks.add_parser("recalibrate", help="refit a head's calibration maps and operating points on a new site's "
                         "labelled rows (weights unchanged); reports how the operating points moved")
    r.add_argument("head", type=Path, help="the head folder to recalibrate")
    r.add_argument("--labels-csv", required=True, type=Path,
                   help="the new site's CSV: 'path', the head's label columns (same definitions), optionally patient_id")
    r.add_argument("--labels", nargs="+", metavar="LABEL", help="head labels to recalibrate (default: all)")
    r.add_argument("--image-root", type=Path, help="folder relative image paths start from (default: the CSV's folder)")
    r.add_argument("--group-column", default="patient_id", help="patient id column (default patient_id)")
    r.add_argument("--path-column", default="path", help="image path column (default path)")
    _embedding_options(r)
    add_head_runtime_options(r, operating_point=False)
    r.add_argument("--folds", type=int, default=5, help="patient-grouped folds for the new site's CV (default 5)")
    r.add_argument("--calibration", choices=("auto", "sigmoid", "isotonic"), default="auto")
    r.add_argument("--bootstrap", type=int, default=1000, help="patient bootstrap resamples for the 95%% CIs")
    r.add_argument("--split-seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out head folder")
    r.add_argument("--out", required=True, type=Path, help="the recalibrated head folder to write")
    r.set_defaults(func=_recalibrate)

    e = tasks.add_parser("export", help="export a head as its own ONNX graph (parity-checked against the Python head)")
    e.add_argument("head", type=Path, help="the head folder")
    e.add_argument("--out", type=Path, help="the .onnx file (default HEAD/head.onnx)")
    e.add_argument("--opset", type=int, default=17)
    e.set_defaults(func=_export)

    register_predict(sub)


def _export(args: argparse.Namespace) -> int:
    from radzoo.heads import read_head
    from radzoo.heads.head_onnx import INPUT, OUTPUTS, export_head_onnx

    head = read_head(args.head)
    path, diff = export_head_onnx(head, args.out or args.head / "head.onnx", opset=args.opset)
    print(f"wrote {path}: input {INPUT!r} (N, {head.base['dim']}) float32 embeddings of {head.base['model']} output "
          f"{head.base['output']!r}; outputs {list(OUTPUTS)} (N, {len(head.labels)}) for {head.labels}; "
          f"max |ONNX - Python head| = {diff:.2e}")
    return 0


def _recalibrate(args: argparse.Namespace) -> int:
    from radzoo.eval.head_fit import moved_table, recalibrate_head

    if args.output is not None:
        raise InputError("a head reads the output it was trained on; drop --output")
    model = open_head_model(args.head, args)
    result = recalibrate_head(args.head, args.labels_csv, args.out, labels=args.labels, model=model,
                              calibration=args.calibration, folds=args.folds, n_boot=args.bootstrap,
                              seed=args.split_seed, features=args.features, join=args.join,
                              drop_missing=args.drop_missing, pseudonym_secret=_secret(args), cache=args.cache,
                              batch_size=args.batch_size, workers=args.workers, quiet=False,
                              image_root=args.image_root, group_column=args.group_column, path_column=args.path_column,
                              overwrite=args.overwrite)
    print(moved_table(result.document))
    print(result.summary())
    print(f"wrote recalibrated head {result.directory} (digest {result.document['digest'][:16]})", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from radzoo.eval.head_fit import train_head
    from radzoo.eval.probes import ProbeSettings

    if args.split_column:
        raise InputError("a head is cross-validated on patient-grouped folds and fitted on all rows: drop --split-column")
    settings = ProbeSettings(kind="linear", inner_folds=args.inner_folds, c_grid=_numbers(args.c_grid, "--c-grid", float),
                             n_jobs=args.jobs)
    data = _read(args)
    model = open_model(args)
    result = train_head(model, data, args.out, settings=settings, calibration=args.calibration, features=args.features,
                        join=args.join, drop_missing=args.drop_missing, pseudonym_secret=_secret(args),
                        output=args.output, folds=args.folds, baselines=args.baseline, n_boot=args.bootstrap,
                        seed=args.split_seed, cache=args.cache, batch_size=args.batch_size, workers=args.workers,
                        quiet=False, name=args.name, overwrite=args.overwrite, kind=args.kind)
    print(result.document["cv"]["markdown"])
    print(result.summary())
    print(f"wrote head {result.directory} (digest {result.document['digest'][:16]}); card {result.directory / 'README.md'}",
          file=sys.stderr)
    return 0


# ---- radzoo predict ------------------------------------------------------------------------


def add_head_runtime_options(p: argparse.ArgumentParser, *, operating_point: bool = True) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto", help="runtime of the base model (default auto)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="precision of the base model (another precision than the head's is allowed and recorded)")
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    if not operating_point:
        return
    p.add_argument("--operating-point", choices=OPERATING_POINT_NAMES, default="youden",
                   help="which stored threshold makes the decisions (default youden)")


def open_head_model(head: Path, args: argparse.Namespace) -> Any:
    """``radzoo.load(HEAD)`` with the command's runtime options: the base model, head attached."""
    from radzoo.resolve import load

    model = load(head, device=args.device, runtime=args.runtime, precision=args.precision, threads=args.threads)
    if model.random_init:
        print(f"note: the head's base model {model.name} has RANDOM weights; outputs carry no meaning", file=sys.stderr)
    return model


def register_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="calibrated probabilities and decisions of a task head on images (JSON/CSV, DICOM SR)",
        description="Runs the head's base model (as recorded in the head) and the head on IMAGES (files, folders, "
                    "globs or one DICOMweb URL with QIDO filters). Exit codes: 0 all done, 1 some images failed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--head", required=True, type=Path, help="a head folder written by radzoo head train")
    add_head_runtime_options(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, help="write the predictions: .json (with the head and base identity) or .csv")
    p.add_argument("--dicom-sr", type=Path, metavar="OUT_DIR", help="write one DICOM SR (TID 1500) per DICOM image here")
    add_pacs_options(p, stow=True)
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from radzoo.cli.zeroshot import _inputs, _stow, read_inputs

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.stow and args.dicom_sr is None:
        raise InputError("--stow sends the DICOM results: add --dicom-sr OUT_DIR")
    if args.out is not None and args.out.suffix.lower() not in (".json", ".csv"):
        raise InputError(f"--out must end in .json or .csv, got {args.out.name!r}")
    items = _inputs(args)
    model = open_head_model(args.head, args)
    good, failed = read_inputs(items, model.spec.modality)
    pred = model.predict([g[2] for g in good], args.operating_point, batch_size=args.batch_size)
    for (name, _, _), row in zip(good, pred.records(), strict=True):
        print(name + "\t" + "  ".join(f"{lab} {v['probability']:.3f}{' +' if v['decision'] else ' -'}"
                                      for lab, v in row.items()))
    written: list[Path] = []
    if args.dicom_sr is not None:
        written = write_head_srs(args.dicom_sr, model, pred, good, failed)
    if args.out is not None:
        _write_predictions(args.out, pred, [g[0] for g in good], failed)
    status = 1 if failed else 0
    if args.stow and written:
        status = max(status, _stow(args, written))
    return status


def _write_predictions(out: Path, pred: Any, names: list[str], failed: list[tuple[str, str]]) -> None:
    if out.suffix.lower() == ".json":
        text = json.dumps({**pred.meta(), "labels": pred.labels, "thresholds": pred.thresholds,
                           "items": [{"image": n, "predictions": r} for n, r in zip(names, pred.records(), strict=True)],
                           "errors": [{"image": n, "error": e} for n, e in failed]}, indent=2) + "\n"
    else:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image", *[f"{lab}/{k}" for lab in pred.labels for k in ("probability", "decision")],
                    "operating_point", "head_digest", "precision"])
        for n, r in zip(names, pred.records(), strict=True):
            w.writerow([n, *[v for lab in pred.labels for v in (f"{r[lab]['probability']:.6f}", int(r[lab]["decision"]))],
                        pred.operating_point, pred.head["digest"], pred.precision])
        text = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    tmp.replace(out)


def write_head_srs(out_dir: Path, model: Any, pred: Any, good: list[tuple[str, Any, Any]],
                   failed: list[tuple[str, str]]) -> list[Path]:
    """One head SR per DICOM image, in one new series per study; non-DICOM images are failures here."""
    from radzoo.cli.zeroshot import write_srs_per_image
    from radzoo.dicom_out import head_sr

    return write_srs_per_image(out_dir, good, failed, lambda index, header, series, number, name: head_sr(
        pred, header, model, index=index, series_instance_uid=series, instance_number=number, label=name))
