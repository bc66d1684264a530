"""``radzoo convert`` and ``radzoo push``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from radzoo.errors import InputError


def register(sub: Any) -> None:
    from radzoo.converters import FORMATS

    p = sub.add_parser(
        "convert",
        help="convert an original research checkpoint into a zoo artifact",
        description="Explicit per-format keep/drop/rename rules, a strict key and shape check, golden "
        "outputs and provenance; the artifact is written atomically (nothing partial on error).",
    )
    p.add_argument("method", choices=sorted(FORMATS), help="checkpoint format")
    p.add_argument("checkpoint", type=Path, help="the original file (graph_ct: the PATCH checkpoint)")
    p.add_argument("--out", required=True, type=Path, help="artifact directory to create")
    p.add_argument("--graph", type=Path, help="graph_ct: the GRAPH checkpoint")
    p.add_argument("--arch", help="moco_cxr: trunk (resnet18, resnet50, densenet121, mnasnet1_0); must match the file's own")
    p.add_argument("--name", help="model name recorded in the artifact (default: the registry name)")
    p.add_argument("--keep-head", action="store_true", help="moco_cxr / graph_ct: keep the 128-d MoCo projection head")
    p.add_argument("--tokenizer", type=Path, help="prior_full / lovt: tokenizer directory (vocab must match)")
    p.add_argument("--arch-config", type=Path, help="JSON file of architecture overrides (own variants, e.g. text_config)")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling (only for files you trust)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing artifact directory")
    p.set_defaults(func=_convert)

    p = sub.add_parser("push", help="upload an artifact directory to the Hugging Face Hub (HF_ENDPOINT honoured)")
    p.add_argument("directory", type=Path)
    p.add_argument("--repo", required=True, help="ORG/NAME")
    p.add_argument("--revision", help="tag to create on the uploaded commit (e.g. v1)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN / the stored login)")
    p.set_defaults(func=_push)


def _convert(args: argparse.Namespace) -> int:
    from radzoo.converters import convert

    options: dict[str, Any] = {"name": args.name, "trust_pickle": args.trust_pickle or None}
    if args.graph is not None:
        options["graph"] = args.graph
    if args.arch is not None:
        if args.method != "moco_cxr":
            raise InputError("--arch applies to moco_cxr only")
        options["arch"] = args.arch
    if args.keep_head:
        if args.method not in ("moco_cxr", "graph_ct"):
            raise InputError("--keep-head applies to moco_cxr and graph_ct only")
        options["keep_head"] = True
    if args.tokenizer is not None:
        options["tokenizer"] = args.tokenizer
    if args.arch_config is not None:
        try:
            options["arch_args"] = json.loads(args.arch_config.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--arch-config {args.arch_config}: {exc}") from exc
        if not isinstance(options["arch_args"], dict):
            raise InputError(f"--arch-config {args.arch_config} must hold a JSON object")
    out = convert(args.method, args.checkpoint, args.out, overwrite=args.overwrite, **options)
    config = json.loads((out / "config.json").read_text())
    spec = config["spec"]
    print(f"wrote {out}: {spec['name']} outputs {spec['outputs']} (default {spec['default_output']})")
    print(f"source {config['provenance']['source_file']} sha256 {config['provenance']['source_sha256']}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from radzoo.zoo.hub import push

    result = push(args.directory, args.repo, revision=args.revision, token=args.token, private=args.private)
    print(f"pushed {args.directory} to {result.repo_id} at commit {result.commit}" + (f" (tag {result.revision})" if result.revision else ""))
    return 0
