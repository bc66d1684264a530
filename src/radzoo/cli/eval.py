"""``radzoo eval linear-probe | knn | retrieval | zero-shot``: reports with CIs and baselines.

Each task writes ``OUT/report.json``, ``OUT/report.md`` and ``OUT/roc/<label>.png`` and prints the
Markdown table. Heavy imports (scikit-learn, torch) stay inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from radzoo.cli.model_options import add_model_options, open_model
from radzoo.errors import InputError

_JOINS = ("path", "sha256", "sop_instance_uid")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on labelled data: linear probe, kNN, retrieval, zero-shot (CIs, baselines)",
        description="Evaluate a model on your labelled images. Every report has 95% patient-bootstrap "
                    "CIs and puts the model next to its floors (--baseline raw-pixels / random-init, chance).",
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK")
    p.set_defaults(func=lambda _args: _missing_task(p))

    for name, kind, text in (
        ("linear-probe", "linear", "logistic regression on frozen embeddings (C by grouped inner CV)"),
        ("knn", "knn", "cosine kNN on frozen embeddings (k by grouped inner CV)"),
    ):
        t = tasks.add_parser(name, help=text, description=f"{text}; patient-grouped k-fold or a given split, "
                             "label fractions with repeated draws, per-label AUROC with bootstrap CIs.")
        add_model_options(t, threads=True)
        _data_options(t)
        _embedding_options(t)
        t.add_argument("--folds", type=int, default=5, help="patient-grouped outer folds (default 5; "
                       "ignored with --split-column)")
        t.add_argument("--inner-folds", type=int, default=3, help="grouped inner folds choosing the hyperparameter")
        if kind == "linear":
            t.add_argument("--c-grid", default="0.001,0.01,0.1,1,10", help="comma-separated C values (default %(default)s)")
        else:
            t.add_argument("--k-grid", default="5,10,20,50", help="comma-separated k values (default %(default)s)")
        t.add_argument("--fractions", default="1.0",
                       help="comma-separated label fractions of the training folds, e.g. 0.01,0.1,1.0 (default 1.0)")
        t.add_argument("--draws", type=int, default=3, help="random draws per fraction below 1 (default 3)")
        t.add_argument("--baseline", action="append", default=[], choices=("raw-pixels", "random-init"),
                       help="floor to compare with (repeatable): raw-pixels (downsampled-pixel probe) or "
                            "random-init (same architecture, random weights)")
        t.add_argument("--pixel-size", type=int, default=32, help="raw-pixels baseline: side of the downsampled image")
        t.add_argument("--jobs", type=int, default=None,
                       help="parallel fits (default: one per core on machines with more than 2 cores)")
        _common_options(t)
        t.set_defaults(func=_probe, kind=kind)

    r = tasks.add_parser("retrieval", help="image->text and text->image Recall@1/5/10 on paired data (image-text models)")
    add_model_options(r, runtime=False)
    _data_options(r, texts=True)
    _embedding_options(r)
    r.add_argument("--baseline", action="append", default=[], choices=("random-init",),
                   help="random-init: the same architecture with random weights")
    _common_options(r)
    r.set_defaults(func=_retrieval)

    c = tasks.add_parser("case-retrieval", help="similar-case index quality: P@k, mAP@10, NDCG@10 of same-label "
                         "neighbours (patient excluded), ANN recall@10 apart")
    c.add_argument("--index", required=True, help="a `radzoo index build` folder")
    _data_options(c)
    c.add_argument("--model", default=None, help="model for the random-init floor (default: the index's)")
    c.add_argument("--baseline", action="append", default=[], choices=("raw-pixels", "random-init"),
                   help="floor (repeatable): raw-pixels or random-init, searched exactly")
    c.add_argument("--pixel-size", type=int, default=32, help="raw-pixels baseline: side of the downsampled image")
    c.add_argument("--pseudonymize-key-file", help="the secret a pseudonymised index's extraction was written with")
    c.add_argument("--cache", type=Path, help="where random-init embeddings are kept (default OUT/cache)")
    _common_options(c)
    c.set_defaults(func=_case_retrieval)

    z = tasks.add_parser("zero-shot", help="zero-shot accuracy / AUROC / F1 / kappa of an image-text model")
    add_model_options(z, runtime=False)
    _data_options(z, zero_shot=True)
    z.add_argument("--mode", choices=["single-label", "multi-label"], default="single-label")
    z.add_argument("--prompts", help="a prompt set stored in the model (NAME or NAME@VERSION) or a template with {label}")
    z.add_argument("--limit", type=int, help="evaluate only the first N rows")
    z.add_argument("--batch-size", type=int, default=16)
    z.add_argument("--baseline", action="append", default=[], choices=("random-init",),
                   help="random-init: the same architecture with random weights (same prompts)")
    _common_options(z)
    z.set_defaults(func=_zero_shot)


def _data_options(p: argparse.ArgumentParser, *, texts: bool = False, zero_shot: bool = False) -> None:
    p.add_argument("--labels-csv", required=True, type=Path,
                   help="CSV with a 'path' column, label columns and optionally patient_id / a split column"
                        + (", or PRIOR's chexpert_5x200.json" if zero_shot else ""))
    p.add_argument("--image-root", type=Path, help="folder relative image paths start from (default: the CSV's folder)")
    p.add_argument("--labels", nargs="+", metavar="SPEC",
                   help="label columns: COL (0/1), COL:VALUE (positive where COL == VALUE), optionally =NAME "
                        "(e.g. view:AP=AP-vs-PA, 'Effusion=Pleural Effusion'); default: every 0/1 column")
    p.add_argument("--group-column", default="patient_id",
                   help="patient id column: a patient's images stay on one side of every split (default patient_id)")
    p.add_argument("--split-column", help="train/test column to use instead of k-fold (values train, val, test)")
    p.add_argument("--path-column", default="path", help="image path column (default path)")
    if texts:
        p.add_argument("--text-column", required=True, help="the column with each image's paired report text")


def _embedding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", type=Path,
                   help="a finished `radzoo extract` output folder to reuse instead of embedding again")
    p.add_argument("--join", choices=_JOINS, default="path",
                   help="how rows of the labels CSV find their embedding in --features (default path)")
    p.add_argument("--drop-missing", action="store_true",
                   help="evaluate without labelled rows that have no embedding in --features (default: error)")
    p.add_argument("--pseudonymize-key-file", help="the secret a pseudonymised --features folder was written with")
    p.add_argument("--output", help="model output head (default: the model's default)")
    p.add_argument("--cache", type=Path, help="where computed embeddings are kept for reuse (default OUT/cache)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=None, help="decode processes for embedding (see radzoo extract)")


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="report folder: report.json, report.md, roc/*.png")
    p.add_argument("--bootstrap", type=int, default=1000, help="patient bootstrap resamples for the 95%% CIs (default 1000)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the folds, label-fraction draws and bootstrap")
    p.add_argument("--baseline-seed", type=int, default=1, help="seed of the random-init baseline (default 1)")


def _missing_task(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _numbers(text: str, option: str, cast: type) -> list[Any]:
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise InputError(f"{option} {text!r}: expected comma-separated numbers") from exc
    if not values:
        raise InputError(f"{option} is empty")
    return values


def _read(args: argparse.Namespace, *, texts: bool = False) -> Any:
    from radzoo.eval.label_table import read_labels

    labels = args.labels if (args.labels is not None or not texts) else []  # retrieval needs no labels
    return read_labels(
        args.labels_csv, labels, image_root=args.image_root, path_column=args.path_column,
        group_column=args.group_column, split_column=args.split_column,
        text_column=args.text_column if texts else None,
        require_paths=getattr(args, "features", None) is None or getattr(args, "join", "path") == "path",
    )


def _secret(args: argparse.Namespace) -> bytes | None:
    from radzoo.extract.pseudonym import read_secret

    return read_secret(args.pseudonymize_key_file) if args.features is not None else None


def _model_for_embeddings(args: argparse.Namespace) -> Any:
    """With --features the model is only named (its embeddings exist); else it is opened."""
    if args.features is not None:
        return args.model  # its name is checked against the extraction; random-init builds from it
    return open_model(args)


def _finish(report: Any, out: Path) -> int:
    print(report.markdown())
    for d in report.dropped[:10]:
        print(f"dropped row {d.get('row')} ({d.get('path')}): {d.get('reason')}", file=sys.stderr)
    if len(report.dropped) > 10:
        print(f"... {len(report.dropped) - 10} more dropped rows in {out / 'report.json'}", file=sys.stderr)
    for s in report.skipped:
        where = f"fold {s.get('fold')}" if s.get("fold") is not None else "all folds"
        print(f"skipped {s.get('label')} {where}: {s.get('reason')}", file=sys.stderr)
    print(f"wrote {out / 'report.json'}, {out / 'report.md'}"
          + (f" and {len(report.files.get('roc', {}))} ROC figures in {out / 'roc'}" if report.files.get("roc") else ""),
          file=sys.stderr)
    return 0


def _probe(args: argparse.Namespace) -> int:
    from radzoo.eval.probes import ProbeSettings
    from radzoo.eval.tasks import probe

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    settings = ProbeSettings(
        kind=args.kind,
        inner_folds=args.inner_folds,
        c_grid=_numbers(args.c_grid, "--c-grid", float) if args.kind == "linear" else ProbeSettings.c_grid,
        k_grid=_numbers(args.k_grid, "--k-grid", int) if args.kind == "knn" else ProbeSettings.k_grid,
        fractions=_numbers(args.fractions, "--fractions", float),
        draws=args.draws,
        n_jobs=args.jobs,
    )
    data = _read(args)
    report = probe(
        _model_for_embeddings(args), data, kind=args.kind, settings=settings, features=args.features,
        join=args.join, drop_missing=args.drop_missing, pseudonym_secret=_secret(args), folds=args.folds,
        baselines=args.baseline, pixel_size=args.pixel_size, baseline_seed=args.baseline_seed,
        n_boot=args.bootstrap, seed=args.split_seed, output=args.output, cache=args.cache, out=args.out,
        batch_size=args.batch_size, workers=args.workers, quiet=False,
    )
    return _finish(report, args.out)


def _retrieval(args: argparse.Namespace) -> int:
    from radzoo.eval.tasks import retrieval

    if args.output not in (None, "global"):
        raise InputError("retrieval uses the joint image-text output 'global'; drop --output")
    data = _read(args, texts=True)
    model = open_model(args, runtime="torch")  # the text tower runs in torch
    report = retrieval(
        model, data, features=args.features, join=args.join, drop_missing=args.drop_missing,
        pseudonym_secret=_secret(args), baselines=args.baseline, baseline_seed=args.baseline_seed,
        n_boot=args.bootstrap, seed=args.split_seed, cache=args.cache, out=args.out, batch_size=args.batch_size,
        workers=args.workers, quiet=False,
    )
    return _finish(report, args.out)


def _zero_shot(args: argparse.Namespace) -> int:
    from radzoo.eval.tasks import zero_shot

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    data = _read(args)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit must be >= 1, got {args.limit}")
        data = data.subset(range(min(args.limit, len(data))))
    model = open_model(args, runtime="torch")  # prompt scoring runs the torch towers
    report = zero_shot(
        model, data, mode=args.mode, prompts=args.prompts, baselines=args.baseline, baseline_seed=args.baseline_seed,
        n_boot=args.bootstrap, seed=args.split_seed, batch_size=args.batch_size, out=args.out,
    )
    return _finish(report, args.out)


def _case_retrieval(args: argparse.Namespace) -> int:
    from radzoo.eval.tasks import case_retrieval
    from radzoo.extract.pseudonym import read_secret

    data = _read(args)
    report = case_retrieval(
        args.index, data, model=args.model, pseudonym_secret=read_secret(args.pseudonymize_key_file),
        baselines=args.baseline, pixel_size=args.pixel_size, baseline_seed=args.baseline_seed,
        n_boot=args.bootstrap, seed=args.split_seed, cache=args.cache, out=args.out, quiet=False,
    )
    return _finish(report, args.out)
