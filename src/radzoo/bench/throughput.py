"""``radzoo bench``: images/s (volumes/s for CT) per model, precision, device and batch size.

Each model is opened through ``radzoo.load`` exactly as users get it (``runtime="auto"`` unless
asked otherwise), then measured three ways in one run:

* ``model``: preprocessed batches straight into ``model.embed_batch`` (CT: the 581 patches of
  one volume through the patch encoder plus the GCN, i.e. a volume's model work);
* ``png``: ``radzoo extract`` end to end over a folder of PNG chest X-rays (discovery, hashing,
  decoding, preprocessing, inference, Parquet shards), at the default worker setting;
* ``dicom``: the same over DICOM files (CT: ``radzoo.ct.features`` on a volume, segmentation
  and registration included).

Inputs: ``png_dir`` / ``dicom_dir`` / ``ct_file`` when given, else the packaged example chest
X-rays copied up to ``images`` files, DICOMs written from them (uncompressed, or JPEG 2000
lossless with ``dicom_codec="j2k"``), and the synthetic chest phantom for CT (timing only).
Reduced precisions also report their cosine to fp32 on the PNG images.

The result (JSON + Markdown) names the hardware (CPU model and flags, cores, GPUs), threads and
library versions; ``record_on_cards`` writes the latest run into each writable artifact's
config, where the model card shows it as "Throughput".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.bench import DEFAULT_BATCHES, DEFAULT_MODELS, DICOM_CODECS, PATHS
from radzoo.errors import InputError, RadzooError

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One measurement (``error`` set instead of a rate when the configuration was refused)."""

    model: str
    precision: str
    runtime: str
    device: str
    path: str
    batch: int
    items_per_s: float | None
    unit: str
    reason: str = ""
    cosine_to_fp32: float | None = None
    error: str | None = None
    low: float | None = None  # min-max of items/s over the timed calls (items_per_s is their median)
    high: float | None = None
    calls: int = 0  # timed calls (an end-to-end run is one call)
    warmup_calls: int = 0
    warmed_up: bool = True  # False: the warm-up cap was reached before two calls agreed


#: Warm-up ends when two consecutive calls agree within this fraction (or after WARMUP_CAP calls).
WARMUP_TOLERANCE = 0.10
WARMUP_CAP = 20
#: Timed calls per measurement, at least (more while ``seconds`` have not passed).
MIN_CALLS = 5


@dataclass(frozen=True)
class Timing:
    """Items/s of one configuration: the median and the min-max over the timed calls, and how the
    warm-up went (``warmed_up`` False: WARMUP_CAP calls never agreed within WARMUP_TOLERANCE)."""

    median: float
    low: float
    high: float
    calls: int
    warmup_calls: int
    warmed_up: bool


def measure(fn: Callable[[], Any], items: int, seconds: float, *, min_calls: int = MIN_CALLS,
            warmup_cap: int = WARMUP_CAP) -> Timing:
    """Time ``fn`` (which handles ``items`` items) per call.

    Warm-up: call until two consecutive calls agree within :data:`WARMUP_TOLERANCE` (oneDNN and
    onnxruntime pick kernels and grow arenas over the first calls; at batch 32, bf16 ResNet50 ran
    11 img/s on its second call and 18-19 from then on), at most ``warmup_cap`` calls. Then at
    least ``min_calls`` timed calls, more until ``seconds`` have passed."""
    previous, warmup_calls, warmed = None, 0, False
    while warmup_calls < warmup_cap:
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        warmup_calls += 1
        if previous is not None and abs(took - previous) <= WARMUP_TOLERANCE * min(took, previous):
            warmed = True
            break
        previous = took
    rates: list[float] = []
    begin = time.perf_counter()
    while len(rates) < min_calls or time.perf_counter() - begin < seconds:
        start = time.perf_counter()
        fn()
        rates.append(items / (time.perf_counter() - start))
    return Timing(float(np.median(rates)), min(rates), max(rates), len(rates), warmup_calls, warmed)


def rate(fn: Callable[[], Any], items: int, seconds: float, min_reps: int = 2) -> float:
    """Median items/s of ``fn`` (see :func:`measure`; ``min_reps`` timed calls at least)."""
    return measure(fn, items, seconds, min_calls=max(min_reps, 1)).median


# ---- inputs -------------------------------------------------------------------------------------


def sample_pngs(folder: Path, count: int) -> list[Path]:
    """``count`` PNG files in ``folder``: the packaged example chest X-rays, copied round-robin."""
    from radzoo.onnx.precision_graphs import default_calibration_files

    sources, _ = default_calibration_files("cxr")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        src = sources[i % len(sources)]
        dst = folder / f"{i:05d}_{src.name}"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def write_dicoms(pngs: Sequence[Path], folder: Path, codec: str = "raw") -> list[Path]:
    """One DX DICOM (12-bit MONOCHROME2) per PNG; ``codec="j2k"``: JPEG 2000 lossless."""
    from PIL import Image as PILImage
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        generate_uid,
    )

    if codec not in DICOM_CODECS:
        raise InputError(f"dicom codec must be one of {', '.join(DICOM_CODECS)}, got {codec!r}")
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    out = []
    for i, png in enumerate(pngs):
        pixels = (np.asarray(PILImage.open(png).convert("L"), dtype=np.uint16) * 16).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientID, ds.InstanceNumber = "DX", "BENCH", i + 1
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.tobytes()
        if codec == "j2k":
            ds.compress(JPEG2000Lossless, pixels)
        path = folder / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


# ---- measurements -------------------------------------------------------------------------------


def _model_only(model: Any, batch: int, seconds: float) -> tuple[Timing, str]:
    if "ct" in model.capabilities:
        return _ct_model_only(model, batch, seconds), "vol/s"
    from radzoo.zoo.golden import input_shape

    x = np.random.default_rng(0).standard_normal((batch, *input_shape(model.spec.preprocess))).astype(np.float32)
    return measure(lambda: model.embed_batch(x), batch, seconds), "img/s"


def _ct_model_only(model: Any, batch: int, seconds: float) -> Timing:
    """A volume's model work: its 581 landmark patches through the encoder, then the GCN."""
    from radzoo.ct.graph import EDGE_THRESHOLD, edge_index, overlap_adjacency

    atlas_patches = 581
    rng = np.random.default_rng(0)
    patches = rng.uniform(-1.0, 1.0, size=(atlas_patches, 1, 32, 32, 32)).astype(np.float32)
    corners = rng.integers(0, 200, size=(atlas_patches, 3))
    edges = edge_index(overlap_adjacency(corners, 32), EDGE_THRESHOLD)
    runtime = model.runtime

    def volume() -> None:
        emb = np.concatenate([runtime.encode_patches(patches[i:i + batch]) for i in range(0, atlas_patches, batch)])
        runtime.encode_graph(emb, edges)

    return measure(volume, 1, seconds)


def _once(value: float) -> Timing:
    """An end-to-end run: one timed call (the model is warm from the model-only rows before it)."""
    return Timing(value, value, value, 1, 0, True)


def _extract_rate(model: Any, folder: Path, count: int, batch: int, work: Path) -> Timing:
    from radzoo.extract.api import extract_features

    out = Path(tempfile.mkdtemp(prefix="extract-", dir=work))
    try:
        start = time.perf_counter()
        result = extract_features(model, [folder], out, batch_size=batch, quiet=True)
        elapsed = time.perf_counter() - start
        if result.counts.written != count:
            raise RadzooError(f"end-to-end run embedded {result.counts.written} of {count} files (see {out}/errors)")
        return _once(count / elapsed)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _ct_end_to_end(model: Any, ct_file: str | None) -> Timing:
    from radzoo.ct.phantom import chest_phantom
    from radzoo.ct.pipeline import features

    volume = ct_file or chest_phantom()
    start = time.perf_counter()
    features(volume, model)
    return _once(1.0 / (time.perf_counter() - start))


def _cosine_to_fp32(reference: Any, model: Any, pngs: Sequence[Path]) -> float:
    from radzoo.onnx.precision_graphs import cosines

    if "embed" not in model.capabilities:
        return float("nan")
    items = [str(p) for p in pngs[:16]]
    return float(cosines(reference.embed(items), model.embed(items)).mean())


# ---- the run ------------------------------------------------------------------------------------


def run_bench(
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    precisions: Sequence[str] = ("fp32",),
    runtimes: Sequence[str] = ("auto",),
    device: str | None = None,
    batches: Sequence[int] = DEFAULT_BATCHES,
    paths: Sequence[str] = PATHS,
    seconds: float = 3.0,
    images: int = 64,
    random_weights: bool = False,
    threads: int | None = None,
    png_dir: str | os.PathLike[str] | None = None,
    dicom_dir: str | os.PathLike[str] | None = None,
    dicom_codec: str = "raw",
    ct_file: str | None = None,
) -> dict[str, Any]:
    """Measure every model x runtime x precision x path x batch; returns the result record."""
    from radzoo import __version__
    from radzoo.bench.hardware import describe_machine, versions
    from radzoo.extract.discovery import discover
    from radzoo.resolve import load

    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise InputError(f"unknown bench path(s) {unknown}; choose from {', '.join(PATHS)}")
    if not batches or any(b < 1 for b in batches):
        raise InputError(f"batch sizes must be >= 1, got {list(batches)}")
    if seconds <= 0 or images < 1:
        raise InputError("seconds must be > 0 and images >= 1")
    rows: list[Row] = []
    spec_names: dict[tuple[str, str, str, str], str] = {}  # (model as given, runtime, precision, device) -> name
    with tempfile.TemporaryDirectory(prefix="radzoo-bench-") as tmp:
        work = Path(tmp)
        pngs = [Path(i.path) for i in discover([png_dir]).items] if png_dir else sample_pngs(work / "png", images)
        png_folder = Path(png_dir) if png_dir else work / "png"
        if "dicom" in paths:
            dicom_folder = Path(dicom_dir) if dicom_dir else work / "dicom"
            dicoms = [Path(i.path) for i in discover([dicom_dir]).items] if dicom_dir else write_dicoms(pngs, dicom_folder, dicom_codec)
        for name in models:
            reference = None
            for runtime in runtimes:
                for precision in precisions:
                    common = {"model": name, "precision": precision, "runtime": runtime, "device": str(device or "auto")}
                    try:
                        model = load(name, random_weights=random_weights, device=device, runtime=runtime,
                                     precision=precision, threads=threads)
                    except RadzooError as exc:
                        rows.append(Row(**common, path="load", batch=0, items_per_s=None, unit="", error=str(exc)))
                        log.warning("bench %s %s %s: %s", name, runtime, precision, exc)
                        continue
                    common.update(runtime=model.runtime.name, precision=model.runtime.precision, device=str(model.device))
                    reason = model.runtime.reason
                    cosine = None
                    if precision != "fp32" and "embed" in model.capabilities:
                        if reference is None:
                            reference = load(name, random_weights=random_weights, device=device, threads=threads)
                        cosine = _cosine_to_fp32(reference, model, pngs)
                    ct = "ct" in model.capabilities
                    for batch in batches:
                        for path in paths:
                            unit = "vol/s" if ct else "img/s"
                            try:
                                if path == "model":
                                    timing, unit = _model_only(model, batch, seconds)
                                elif ct:
                                    if path == "png" or batch != batches[0]:
                                        continue  # a CT volume has no PNG form; one end-to-end run per volume
                                    timing = _ct_end_to_end(model, ct_file)
                                elif path == "png":
                                    timing = _extract_rate(model, png_folder, len(pngs), batch, work)
                                else:
                                    timing = _extract_rate(model, dicom_folder, len(dicoms), batch, work)
                            except RadzooError as exc:
                                rows.append(Row(**common, path=path, batch=batch, items_per_s=None, unit=unit,
                                                reason=reason, error=str(exc)))
                                continue
                            rows.append(Row(**common, path=path, batch=batch, items_per_s=timing.median, unit=unit,
                                            reason=reason, cosine_to_fp32=cosine, low=timing.low, high=timing.high,
                                            calls=timing.calls, warmup_calls=timing.warmup_calls,
                                            warmed_up=timing.warmed_up))
                            log.info("bench %s %s/%s %s b=%d: %.2f %s (%.2f-%.2f, %d calls after %d warm-up)", name,
                                     common["runtime"], common["precision"], path, batch, timing.median, unit,
                                     timing.low, timing.high, timing.calls, timing.warmup_calls)
                    spec_names[(name, common["runtime"], common["precision"], common["device"])] = model.name
    import torch

    return {
        "format": "radzoo-bench/1",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "radzoo_version": __version__,
        "hardware": describe_machine(),
        "threads": threads or torch.get_num_threads(),
        "versions": versions(),
        "settings": {"seconds": seconds, "images": len(pngs), "dicom_codec": None if dicom_dir else dicom_codec,
                     "random_weights": random_weights, "png_dir": os.fspath(png_dir) if png_dir else "packaged example CXRs",
                     "ct_file": ct_file or "synthetic chest phantom"},
        "warmup": {"tolerance": WARMUP_TOLERANCE, "cap": WARMUP_CAP, "min_calls": MIN_CALLS},
        "rows": [asdict(r) for r in rows],
        "best_batches": best_batches([asdict(r) for r in rows], spec_names),
    }


def best_batches(rows: Sequence[dict[str, Any]], spec_names: dict[tuple[str, str, str, str], str]) -> list[dict[str, Any]]:
    """Per model, runtime, precision and device: the batch with the highest median model-only rate
    (end-to-end PNG when no model-only rows were measured). ``name``: the model's registry name,
    the key of the default-batch record."""
    best: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for path in ("model", "png"):
        for r in rows:
            key = (r["model"], r["runtime"], r["precision"], r["device"])
            if r["path"] != path or r["items_per_s"] is None or (key in best and best[key]["path"] != path):
                continue
            compared = sorted(best[key]["compared"] + [r["batch"]]) if key in best else [r["batch"]]
            if key not in best or r["items_per_s"] > best[key]["items_per_s"]:
                best[key] = {"compared": compared, "model": r["model"], "name": spec_names.get(key, r["model"]), "runtime": r["runtime"],
                             "precision": r["precision"], "device": r["device"], "path": path, "batch": r["batch"],
                             "items_per_s": r["items_per_s"], "low": r["low"], "high": r["high"], "unit": r["unit"]}
            best[key]["compared"] = compared
    return list(best.values())


# ---- outputs ------------------------------------------------------------------------------------


def to_markdown(result: dict[str, Any]) -> str:
    """The table users read: one line per measurement, hardware and versions on top."""
    hw = result["hardware"]
    v = result["versions"]
    warm = result.get("warmup") or {"tolerance": WARMUP_TOLERANCE, "cap": WARMUP_CAP, "min_calls": MIN_CALLS}
    lines = [
        f"# radzoo bench ({result['date']})",
        "",
        f"- hardware: **{hw['name']}**; CPU {hw['cpu']['model']} (flags: {', '.join(hw['cpu']['flags']) or 'none'}), "
        f"{hw['cores']} cores, {hw.get('memory_gib')} GiB; GPUs: {', '.join(hw['gpus']) or 'none'}",
        f"- threads: {result['threads']}; onnxruntime providers: {', '.join(hw['onnxruntime_providers']) or 'none'}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- settings: {json.dumps(result['settings'])}",
        "",
        f"- timing: warm-up until two consecutive calls agree within {warm['tolerance']:.0%} (at most {warm['cap']} "
        f"calls; * = cap reached), then at least {warm['min_calls']} timed calls over {result['settings']['seconds']} s "
        "or more; throughput is their median. End-to-end rows are one run each.",
        "",
        "| model | runtime | precision | device | path | batch | throughput (median) | min-max | calls (warm-up) "
        "| cosine to fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        shown = f"{r['items_per_s']:.2f} {r['unit']}" if r["items_per_s"] is not None else f"refused: {r['error']}"
        spread = "" if r.get("low") is None else f"{r['low']:.2f}-{r['high']:.2f}"
        calls = "" if r["items_per_s"] is None else \
            f"{r.get('calls', 1)} ({r.get('warmup_calls', 0)}{'' if r.get('warmed_up', True) else '*'})"
        cos = "" if r.get("cosine_to_fp32") is None else f"{r['cosine_to_fp32']:.4f}"
        lines.append(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['device']} | {r['path']} | "
                     f"{r['batch']} | {shown} | {spread} | {calls} | {cos} |")
    if result.get("best_batches"):
        lines += ["", "## Best batch per precision", "",
                  "| model | runtime | precision | device | best batch | throughput (median) | min-max | from |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {b['model']} | {b['runtime']} | {b['precision']} | {b['device']} | **{b['batch']}** | "
                  f"{b['items_per_s']:.2f} {b['unit']} | {b['low']:.2f}-{b['high']:.2f} | {b['path']} |"
                  for b in result["best_batches"]]
    return "\n".join(lines) + "\n"


def record_best_batches(result: dict[str, Any]) -> Path | None:
    """Put the run's best batches into ``$RADZOO_HOME/bench/best_batches.json``, where extraction and
    serving take their default batch size from (see :mod:`radzoo.zoo.batch_record`); only
    configurations measured at two or more batch sizes."""
    from radzoo.zoo.batch_record import record_best

    entries = [{"model": b["name"], "runtime": b["runtime"], "precision": b["precision"], "device": b["device"],
                "batch": b["batch"], "items_per_s": round(b["items_per_s"], 3), "unit": b["unit"],
                "path": b["path"], "compared": b["compared"], "date": result["date"]}
               for b in result.get("best_batches", []) if len(b["compared"]) > 1]  # a choice needs two batches
    return record_best(entries) if entries else None


def write_result(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``OUT/bench.json`` and ``OUT/bench.md`` (each written atomically)."""
    from radzoo.onnx.export import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "bench.json", out / "bench.md"
    atomic_write_text(js, json.dumps(result, indent=2) + "\n")
    atomic_write_text(md, to_markdown(result))
    return js, md


def card_section(result: dict[str, Any], name: str) -> dict[str, Any]:
    """One model's measured rows of a ``radzoo bench`` result, as the model card's (and docs
    model page's) "throughput" section."""
    rows = [r for r in result["rows"] if r["model"] == name and r["items_per_s"] is not None]
    section = {k: result[k] for k in ("date", "hardware", "threads", "versions", "radzoo_version")}
    section["rows"] = [{k: r.get(k) for k in ("precision", "runtime", "device", "path", "batch", "items_per_s", "low",
                                              "high", "unit")} for r in rows]
    section["best_batches"] = [b for b in result.get("best_batches", []) if b["model"] == name]
    return section


def record_on_cards(result: dict[str, Any]) -> list[Path]:
    """Write each measured model's rows into its artifact's config (``throughput``) and card, for
    models that are writable artifact folders (a path or the local zoo); returns those folders."""
    from radzoo.onnx.export import atomic_write_text, export_lock
    from radzoo.onnx.export_cache import writable
    from radzoo.resolve import spec_of
    from radzoo.zoo.artifact import read_config
    from radzoo.zoo.card import render_card
    from radzoo.zoo.home import local_zoo_dir

    done = []
    for name in dict.fromkeys(r["model"] for r in result["rows"]):
        try:
            _, source = spec_of(name)
        except RadzooError:
            continue
        folder = Path(name).expanduser() if source == "path" else local_zoo_dir() / name if source == "local" else None
        if folder is None or not writable(folder):
            continue
        with export_lock(folder):
            config = read_config(folder)
            config["throughput"] = card_section(result, name)
            atomic_write_text(folder / "README.md", render_card(config))
            atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
        done.append(folder)
    return done
