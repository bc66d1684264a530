"""``radzoo index build|remove|info`` and ``radzoo search``: similar cases from extracted embeddings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    from radzoo.search.faiss_backend import CODES  # numpy only; FAISS loads on first use

    idx = sub.add_parser("index", help="build, grow or prune a similar-case index from `radzoo extract` outputs")
    isub = idx.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="index extraction outputs (rerun: adds only new rows)")
    b.add_argument("extract_dirs", nargs="+", metavar="EXTRACT_DIR", help="`radzoo extract --out` folders")
    b.add_argument("--out", required=True, help="index folder (created, or grown)")
    b.add_argument("--rebuild", action="store_true", help="rebuild from scratch (compacts removed rows away)")
    b.add_argument("--exact-below", type=int, default=None,
                   help="rows below which search stays exact (default 20000); above it: HNSW with measured recall")
    b.add_argument("--threads", type=int, default=None, help="build threads (default: all cores)")
    b.add_argument("--low-memory", action="store_true", default=None,
                   help="IVF codes re-ranked exactly from the extraction's Parquet embeddings (no float32 copy; "
                        "keep the extraction folders); recall@10 measured and stored")
    b.add_argument("--codes", choices=CODES, default=None,
                   help="--low-memory compression: sq4 (default, 1/8 of float32), sq8 (1/4, fastest) or pq (1/16, "
                        "slowest: re-ranks the most candidates)")
    b.set_defaults(func=_build)
    r = isub.add_parser("remove", help="remove rows by UID at once (tombstones; compacted by --rebuild)")
    r.add_argument("index", help="index folder")
    r.add_argument("--uids", required=True, type=Path, help="file with one SOP, Series or Study Instance UID per line")
    r.set_defaults(func=_remove)
    i = isub.add_parser("info", help="model identity, row counts, backend and measured recall")
    i.add_argument("index", help="index folder")
    i.set_defaults(func=_info)

    s = sub.add_parser("search", help="ranked similar cases by image, text or indexed UID",
                       description="Neighbours of IMAGEs, a --text (joint image-text models) or an indexed --uid. "
                                   "Queries are embedded with the index's model and refused when the model, "
                                   "revision, preprocessing, output or precision differ.")
    s.add_argument("images", nargs="*", metavar="IMAGE", help="DICOM/PNG/JPEG query images")
    s.add_argument("--index", required=True, help="index folder, or milvus://host:port/collection")
    s.add_argument("--text", action="append", default=[], help="text query (PRIOR, LoVT indexes)")
    s.add_argument("--uid", action="append", default=[], help="SOP Instance UID of an indexed row (as stored)")
    s.add_argument("-k", type=int, default=10, help="neighbours per query (1..1000, default 10)")
    s.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE[,VALUE]",
                   help="modality, view (view_position), study_date (YYYYMMDD or FROM..TO), patient_key, "
                        "source, study_instance_uid, series_instance_uid; repeat to combine")
    s.add_argument("--exclude-same-patient", action="store_true", help="drop the query patient's rows inside the search")
    s.add_argument("--model", default=None, help="model to embed queries (default: the index's, via radzoo.load)")
    s.add_argument("--out", type=Path, default=None, help="also write the results as .csv or .json")
    s.set_defaults(func=_search)


def _build(args: argparse.Namespace) -> int:
    from radzoo.search import build_index
    from radzoo.search.faiss_backend import EXACT_BELOW

    m = build_index(args.extract_dirs, args.out, rebuild=args.rebuild,
                    exact_below=EXACT_BELOW if args.exact_below is None else args.exact_below, threads=args.threads,
                    low_memory=args.low_memory, codes=args.codes)
    ann = m.get("ann", {})
    tuned = f"nprobe {ann.get('nprobe')}, re-rank {ann.get('rerank')}x" if ann.get("kind") in ("ivf", "ivfpq") \
        else f"efSearch {ann.get('ef_search')}"
    recall = f", recall@10 {ann['recall_at_10']:.3f} at {tuned}" if "recall_at_10" in ann else ""
    print(f"radzoo index: {m['rows']} rows ({m.get('added_last', 0)} added, {m.get('removed', 0)} removed), "
          f"{ann.get('kind')}{recall} -> {args.out}", file=sys.stderr)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from radzoo.errors import InputError
    from radzoo.search import remove_uids

    try:
        lines = args.uids.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read UID file {args.uids}: {exc.strerror or exc}") from exc
    done = remove_uids(args.index, lines)
    print(f"radzoo index: {done['removed']} rows removed; {len(done['unknown'])} UIDs matched nothing", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    from radzoo.search import index_info

    print(json.dumps(index_info(args.index), indent=2, default=str))
    return 0


def _search(args: argparse.Namespace) -> int:
    from radzoo.search import open_index
    from radzoo.search.similar import check_k, parse_filters

    check_k(args.k)
    filters = parse_filters(args.filter)  # bad input refused before any model is loaded
    if args.out is not None and args.out.suffix not in (".csv", ".json"):
        from radzoo.errors import InputError

        raise InputError(f"--out {args.out}: write .csv or .json")
    index = open_index(args.index)
    results = index.query(images=args.images, texts=args.text, uids=args.uid, k=args.k, filters=filters,
                          exclude_same_patient=args.exclude_same_patient, model=args.model)
    rows = [{"query": r.query, **h} for r in results for h in r.hits]
    _print_table(results)
    if args.out is not None:
        _write(args.out, rows)
    return 0


def _print_table(results: list[Any]) -> None:
    for r in results:
        print(f"# {r.query}")
        print(f"{'rank':>4}  {'score':>8}  {'modality':8}  {'view':4}  {'patient':16}  key")
        for h in r.hits:
            key = h.get("sop_instance_uid") or h.get("path") or ""
            print(f"{h['rank']:>4}  {h['score']:8.4f}  {str(h.get('modality') or ''):8}  "
                  f"{str(h.get('view_position') or ''):4}  {str(h.get('patient_key') or '')[:16]:16}  {key}")


def _write(out: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import os

    tmp = out.with_name(f".tmp-{out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        tmp.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    else:
        with open(tmp, "w", newline="") as fh:
            fields = list(rows[0]) if rows else ["query", "rank", "score"]
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, out)
