"""``radzoo zero-shot`` and ``radzoo ground``: zero-shot labels (optionally as DICOM SR) and grounding
overlays (optionally as DICOM Parametric Maps). Zero-shot *evaluation* is ``radzoo eval zero-shot``
(``radzoo.cli.eval``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from radzoo.cli.model_options import add_model_options, open_model
from radzoo.cli.pacs_options import add_pacs_options
from radzoo.errors import InputError


def register(sub: Any) -> None:
    register_classify(sub)

    g = sub.add_parser("ground", help="render where an image-text model finds a text in an image")
    g.add_argument("image", help="chest X-ray (DICOM/PNG/JPEG), or a DICOMweb instance URL "
                                 "(http://pacs/dicom-web/studies/S/series/R/instances/I)")
    g.add_argument("text", help='the text, e.g. "Pleural Effusion is observed"')
    add_model_options(g, runtime=False)
    g.add_argument("--out", type=Path, help="overlay image (.png, .jpg, .pdf, .svg)")
    g.add_argument("--dicom-pmap", type=Path, metavar="OUT_DIR",
                   help="also write the heatmap as a DICOM Parametric Map (float32, real-world value mapping) "
                        "into OUT_DIR; the image must be DICOM")
    g.add_argument("--heatmap", type=Path, help="also save the heatmap (image-sized float32) as .npy")
    g.add_argument(
        "--method",
        choices=("auto", "gradcam", "tokens"),
        default="auto",
        help="PRIOR: gradcam (default, spatial) or tokens (the literal 7x7 token-vs-prompt map)",
    )
    add_pacs_options(g, stow=True)
    g.set_defaults(func=_ground)


def _ground(args: argparse.Namespace) -> int:
    import numpy as np

    from radzoo.zeroshot.grounding import ground
    from radzoo.zeroshot.overlay import SUFFIXES, render_overlay

    if args.out is None and args.dicom_pmap is None and args.heatmap is None:
        raise InputError("say what to write: --out overlay.png, --dicom-pmap OUT_DIR and/or --heatmap map.npy")
    if args.out is not None and args.out.suffix.lower() not in SUFFIXES:
        raise InputError(f"--out must end in one of {', '.join(SUFFIXES)}, got {args.out.name!r}")
    if args.stow and args.dicom_pmap is None:
        raise InputError("--stow sends the DICOM results: add --dicom-pmap OUT_DIR")
    name, image = _one_image(args)
    model = open_model(args, runtime="torch")  # prompt scoring and Grad-CAM run the torch towers
    result = ground(model, image, args.text, method=args.method)
    for note in result.truncated:
        print(f"note: {note}", file=sys.stderr)
    size = f"map {result.grid.shape[0]}x{result.grid.shape[1]} -> {result.heatmap.shape[0]}x{result.heatmap.shape[1]}"
    if args.out is not None:
        title = args.text + ("  [random weights]" if model.random_init else "")
        render_overlay(result.pixels, result.heatmap, title, args.out)
        print(f"wrote {args.out} ({result.method}, {size})")
    if args.heatmap:
        args.heatmap.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.heatmap, result.heatmap)
    if args.dicom_pmap is not None:
        from radzoo.dicom_out import grounding_pmap, write_dicom

        written = write_dicom(grounding_pmap(result, image, model, label=name), args.dicom_pmap)
        print(f"wrote {written} (DICOM Parametric Map, {result.method}, {size})")
        if args.stow:
            return _stow(args, [written])
    return 0


def _one_image(args: argparse.Namespace) -> tuple[str, Any]:
    """(name, path or bytes) of ``radzoo ground``'s image: a file or one DICOMweb instance."""
    from radzoo.cli.pacs_options import check_no_pacs_filters, dicomweb_source, has_pacs_filters
    from radzoo.pacs import InstanceRef, fetch_instance, is_dicomweb_url

    if not is_dicomweb_url(args.image):
        check_no_pacs_filters(args)
        path = Path(args.image)
        if not path.is_file():
            raise InputError(f"image {path} does not exist")
        return str(path), path
    if has_pacs_filters(args):
        raise InputError("radzoo ground takes one instance: name it in the URL (.../studies/S/series/R/instances/I)")
    source = dicomweb_source(args, args.image)
    t = source.target
    if not t.instance:
        raise InputError("radzoo ground takes one DICOMweb instance: the URL must end in /studies/S/series/R/instances/I")
    ref = InstanceRef(t.study or "", t.series or "", t.instance)
    return ref.key, fetch_instance(source.connection, ref)


def _stow(args: argparse.Namespace, files: list[Path]) -> int:
    """STOW-RS the written results with the PACS credentials; the PACS's refusal reasons on failure."""
    from radzoo.pacs import read_auth, stow

    result = stow(files, args.stow, auth=read_auth(args.pacs_auth_file), timeout=args.pacs_timeout,
                  retries=args.pacs_retries)
    print(f"stored {len(result.stored)} of {len(files)} DICOM result(s) at {args.stow} (STOW-RS)")
    return 0


# ---- radzoo zero-shot ----------------------------------------------------------------------


def register_classify(sub: Any) -> None:
    z = sub.add_parser(
        "zero-shot",
        help="label images with an image-text model's prompts (optionally as DICOM SR, TID 1500)",
        description=(
            "Per-image, per-label zero-shot probabilities of an image-text model (PRIOR, LoVT). IMAGES are DICOM/PNG/JPEG "
            "files or folders, or one DICOMweb URL with QIDO filters. --dicom-sr writes one Comprehensive 3D SR "
            "(TID 1500 Measurement Report: one finding per label with its probability) per DICOM image; --stow "
            "sends them to a PACS. Exit codes: 0 all done, 1 some images (or the STOW) failed."
        ),
    )
    z.add_argument("images", nargs="+", metavar="IMAGE", help="DICOM/PNG/JPEG files, folders or globs; or one DICOMweb URL")
    add_model_options(z, runtime=False)
    z.add_argument("--labels", nargs="+", metavar="LABEL", help="labels to score (default: the prompt set's classes)")
    z.add_argument("--prompts", help="a prompt set stored in the model (NAME or NAME@VERSION) or a template with {label}")
    z.add_argument("--mode", choices=["single-label", "multi-label"], default=None,
                   help="softmax over the labels, or each label against its negative prompts (default: the prompt set's)")
    z.add_argument("--batch-size", type=int, default=16)
    z.add_argument("--out", type=Path, help="also write the probabilities as JSON")
    z.add_argument("--dicom-sr", type=Path, metavar="OUT_DIR", help="write one DICOM SR (TID 1500) per DICOM image here")
    add_pacs_options(z, stow=True)
    z.set_defaults(func=_zero_shot)


def _inputs(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(name, path | bytes | error) per image: files and folders, or a DICOMweb selection."""
    from radzoo.cli.pacs_options import check_no_pacs_filters, dicomweb_items
    from radzoo.cli.zoo import expand_inputs

    items = dicomweb_items(args, args.images)
    if items is not None:
        return items
    check_no_pacs_filters(args)
    return [(str(p), p) for p in expand_inputs(args.images)]


def read_inputs(items: list[tuple[str, Any]], modality: str) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, str]]]:
    """Decode each (name, source) item: ``good`` = (name, source, image), ``failed`` = (name,
    reason), each failure reported on stderr; an error when none could be read."""
    from radzoo.errors import RadzooError
    from radzoo.io import read_image
    from radzoo.zoo.pixels import check_modality

    failed: list[tuple[str, str]] = []
    good: list[tuple[str, Any, Any]] = []
    for name, item in items:
        try:
            if isinstance(item, BaseException):
                raise item
            image = read_image(item)
            check_modality(image, modality, name)
            good.append((name, item, image))
        except RadzooError as exc:
            failed.append((name, str(exc)))
            print(f"skipped {name}: {exc}", file=sys.stderr)
    if not good:
        raise InputError(f"none of the {len(items)} images could be read")
    return good, failed


def _zero_shot(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.stow and args.dicom_sr is None:
        raise InputError("--stow sends the DICOM results: add --dicom-sr OUT_DIR")
    items = _inputs(args)
    model = open_model(args, runtime="torch")
    model.spec.require("zero_shot", "zero-shot labels")
    good, failed = read_inputs(items, model.spec.modality)
    result = model.zero_shot([g[2] for g in good], args.labels, args.prompts, mode=args.mode, batch_size=args.batch_size)
    for (name, _, _), row in zip(good, result.probabilities, strict=True):
        ranked = sorted(zip(result.labels, row, strict=True), key=lambda x: -x[1])
        print(name + "\t" + "  ".join(f"{lab} {p:.3f}" for lab, p in ranked))
    for note in result.truncated:
        print(f"note: {note}", file=sys.stderr)
    written: list[Path] = []
    if args.dicom_sr is not None:
        written = _write_srs(args.dicom_sr, model, result, good, failed)
    if args.out:
        payload = {"model": model.name, "random_weights": model.random_init, "prompt_set": result.prompt_set,
                   "mode": result.mode, "labels": result.labels,
                   "items": [{"image": n, "probabilities": dict(zip(result.labels, map(float, row), strict=True))}
                             for (n, _, _), row in zip(good, result.probabilities, strict=True)],
                   "errors": [{"image": n, "error": e} for n, e in failed]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(args.out)
    status = 1 if failed else 0
    if args.stow and written:
        status = max(status, _stow(args, written))
    return status


def _write_srs(out_dir: Path, model: Any, result: Any, good: list[tuple[str, Any, Any]],
               failed: list[tuple[str, str]]) -> list[Path]:
    """One zero-shot SR per DICOM image (see :func:`write_srs_per_image`)."""
    from radzoo.dicom_out import zero_shot_sr

    return write_srs_per_image(out_dir, good, failed, lambda index, header, series, number, name: zero_shot_sr(
        result, header, model, index=index, series_instance_uid=series, instance_number=number, label=name))


def write_srs_per_image(out_dir: Path, good: list[tuple[str, Any, Any]], failed: list[tuple[str, str]],
                        build: Any) -> list[Path]:
    """One SR per DICOM image, in one new series per study; non-DICOM images are failures here.

    ``build(index, header, series_uid, instance_number, name)`` makes the SR of ``good[index]``
    (zero-shot labels, or a task head's predictions); a failure is recorded and the others go on."""
    from radzoo.dicom_out import SeriesPlan, read_source, write_dicom
    from radzoo.errors import RadzooError

    plan = SeriesPlan()
    written = []
    for index, (name, source, image) in enumerate(good):
        try:
            if image.format != "dicom":
                raise InputError(f"{name}: a {image.format.upper()} image has no DICOM header; --dicom-sr needs DICOM images")
            header = read_source(source, name)
            series, number = plan.next(str(header.StudyInstanceUID), "sr")
            written.append(write_dicom(build(index, header, series, number, name), out_dir))
        except RadzooError as exc:
            failed.append((name, str(exc)))
            print(f"no SR for {name}: {exc}", file=sys.stderr)
    print(f"wrote {len(written)} DICOM SR(s) (TID 1500) to {out_dir}", file=sys.stderr)
    return written
