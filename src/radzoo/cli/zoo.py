"""``radzoo models``, ``radzoo info``, ``radzoo build`` and ``radzoo embed``: the zoo from the shell."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import Any

from radzoo.cli.model_options import add_model_options, open_model
from radzoo.cli.pacs_options import add_pacs_options
from radzoo.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list the zoo's models (registry and local zoo)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_models)

    p = sub.add_parser("info", help="show one model's spec (registry name or artifact directory)")
    p.add_argument("model")
    p.add_argument("--markdown", action="store_true",
                   help="print the model's docs page (Markdown, the same as the site's model page) instead of JSON")
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "build", help="write an artifact with explicitly RANDOM weights (tests, offline smoke runs)"
    )
    p.add_argument("model", help="registry name")
    p.add_argument("--out", required=True, type=Path, help="artifact directory to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", type=Path, help="tokenizer directory for text-bearing models")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_build)

    p = sub.add_parser(
        "embed", help="embed chest X-ray images (DICOM/PNG/JPEG), or texts (--text), into a .npy/.csv/.json file"
    )
    p.add_argument("inputs", nargs="*",
                   help="image files, folders or glob patterns; or one DICOMweb URL (rows named by their "
                        "WADO-RS path studies/S/series/R/instances/I)")
    p.add_argument("--text", action="append", metavar="TEXT",
                   help="embed this text instead of images (repeatable): image-text models (PRIOR, LoVT), in the "
                        "joint space of their 'global' image output")
    p.add_argument("--out", required=True, type=Path, help="output file: .npy, .csv or .json")
    p.add_argument("--output", help="named output (default: the model's default output)")
    add_model_options(p)
    p.add_argument("--batch-size", type=int, default=8)
    add_pacs_options(p)
    p.set_defaults(func=_embed)


def _models(args: argparse.Namespace) -> int:
    from radzoo import zoo

    rows = []
    for name in zoo.list_models():
        spec = zoo.get_spec(name)
        rows.append({"name": name, "method": spec.method, "modality": spec.modality, "dim": spec.dim,
                     "outputs": dict(spec.outputs), "capabilities": sorted(spec.capabilities),
                     "license": spec.license, "source": "registry"})
    for name in zoo.local_models():
        if not any(r["name"] == name for r in rows):
            rows.append({"name": name, "source": "local", "path": str(zoo.local_zoo_dir() / name)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if r["source"] == "registry":
            outs = ", ".join(f"{k}={v}" for k, v in r["outputs"].items())
            print(f"{r['name']:<28} {r['method']:<8} {r['modality']:<4} {outs:<40} {r['license']}")
        else:
            print(f"{r['name']:<28} (local artifact: {r['path']})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from radzoo import zoo
    from radzoo.zoo.artifact import read_config

    path = Path(args.model)
    if args.markdown:
        from radzoo.model_pages import model_page, registry_page

        if not path.is_dir():
            print(registry_page(args.model))
            return 0
        config = read_config(path)
        print(model_page(config["spec"], throughput=config.get("throughput"),
                         zero_shot_deviation=(config.get("zero_shot") or {}).get("deviation")))
        return 0
    config = read_config(path)["spec"] if path.is_dir() else zoo.get_spec(args.model).to_dict()
    print(json.dumps(config, indent=2))
    return 0


def _build(args: argparse.Namespace) -> int:
    from radzoo import zoo
    from radzoo.resolve import build

    model = build(args.model, seed=args.seed, tokenizer=args.tokenizer, runtime="torch")
    out = zoo.save(model, args.out, overwrite=args.overwrite)
    print(f"wrote RANDOM-weight artifact {model.name} to {out}")
    return 0


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files, folders (recursive) and glob patterns -> sorted unique image paths."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"input {pattern!r}: no such file, folder or matching pattern")
            found += [m for m in matches if m.is_file()]
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputError("no input images found")
    return unique


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from radzoo.cli.pacs_options import check_no_pacs_filters, dicomweb_items
    from radzoo.errors import RadzooError

    if args.out.suffix.lower() not in (".npy", ".csv", ".json"):
        raise InputError(f"--out must end in .npy, .csv or .json, got {args.out.name!r}")
    if args.text and args.inputs:
        raise InputError("give image inputs or --text, not both (one output file holds one kind)")
    if not args.text and not args.inputs:
        raise InputError("nothing to embed: give image files/folders, or --text TEXT")
    key = "text" if args.text else "path"
    if args.text:
        from radzoo.resolve import JOINT_OUTPUT

        check_no_pacs_filters(args)
        if args.output not in (None, JOINT_OUTPUT):
            raise InputError(f"text embeddings live in the joint space (output {JOINT_OUTPUT!r}), not {args.output!r}")
        args.output = JOINT_OUTPUT
        items: list[tuple[str, Any]] = [(text, text) for text in args.text]
    else:
        pacs = dicomweb_items(args, args.inputs)
        if pacs is None:
            check_no_pacs_filters(args)
            items = [(str(p), p) for p in expand_inputs(args.inputs)]
        else:
            items = pacs
    model = open_model(args)
    if args.text:
        model.spec.require("text", "text embeddings")
    rows, names, failed = [], [], []

    def forward(batch: list[Any]) -> list[Any]:
        if args.text:
            return list(model.embed_text(batch))
        return list(model.embed(batch, output=args.output, batch_size=len(batch)))

    step = max(1, args.batch_size)
    for start in range(0, len(items), step):
        chunk = items[start:start + step]
        if not any(isinstance(item, BaseException) for _, item in chunk):
            try:  # a whole batch per forward pass; a bad file sends its batch through one by one
                rows.extend(forward([item for _, item in chunk]))
                names.extend(name for name, _ in chunk)
                continue
            except RadzooError:
                pass
        for name, item in chunk:
            try:
                if isinstance(item, BaseException):
                    raise item
                rows.append(forward([item])[0])
                names.append(name)
            except RadzooError as exc:
                failed.append((name, str(exc)))
                print(f"skipped {name}: {exc}", file=sys.stderr)
    if not rows:
        raise InputError(f"none of the {len(items)} inputs could be embedded")
    emb = np.stack(rows).astype(np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    suffix = args.out.suffix.lower()
    if suffix == ".npy":
        with open(tmp, "wb") as fh:
            np.save(fh, emb)
        args.out.with_suffix(f".{key}s.txt").write_text("\n".join(names) + "\n")
    elif suffix == ".csv":
        import csv

        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow([key, *(f"e{i}" for i in range(emb.shape[1]))])
            for name, row in zip(names, emb, strict=True):
                writer.writerow([name, *(f"{v:.7g}" for v in row)])
    else:
        payload = {"model": model.name, "output": model.resolve_output(args.output),
                   "random_weights": model.random_init,
                   "items": [{key: n, "embedding": r.tolist()} for n, r in zip(names, emb, strict=True)],
                   "errors": [{key: p, "error": e} for p, e in failed]}
        tmp.write_text(json.dumps(payload))
    tmp.replace(args.out)
    print(f"embedded {len(rows)}/{len(items)} {key.replace('path', 'image')}s with {model.name} "
          f"({model.resolve_output(args.output)}, dim {emb.shape[1]}) -> {args.out}")
    return 1 if failed else 0
