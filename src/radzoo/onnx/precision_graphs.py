"""Reduced-precision graphs derived from a model's fp32 ONNX export: int8 (static QDQ) and fp16.

**int8** (CPU, fast on AVX512-VNNI / AMX): onnxruntime's own static quantisation,
``onnxruntime.quantization.quantize_static`` in QDQ format, after its ``quant_pre_process``
(shape inference + graph optimisation). Weights are int8 per output channel (symmetric),
activations uint8 per tensor (asymmetric, MinMax ranges), the U8S8 combination that x86's
VNNI ``vpdpbusd`` instruction computes without the saturation older AVX2 kernels suffered.

Calibration uses real images: the caller's (``radzoo export DIR --precision int8 --calibration
IMAGES``), else the default set of the spec's modality. For chest X-rays that is the six NIH
ChestX-ray14 radiographs packaged in ``radzoo/assets/calibration/cxr`` (the README's
``examples/cxr``); CT has no packaged set (no small redistributable lung CT), so CT int8
needs ``--calibration`` with CT volumes, from which 32^3 patches are sampled.

The images are sorted by content hash and every third one is **held apart**: it never
calibrates, it only measures. Each int8 graph's embeddings are compared with the fp32 graph's
on the held-apart inputs; below ``GATE_MEAN`` mean or ``GATE_MIN`` minimum cosine the int8
graph is refused (``PrecisionGateError``, with the measured cosines) and nothing is saved.
The record (``onnx.int8``) keeps the calibration digest (over the files' sha256 and the split
rule), the counts and the measured cosines; the model card shows them.

**fp16** (CUDA): ``onnxruntime.transformers.float16.convert_float_to_float16`` with float32
inputs and outputs kept (the cast happens on the GPU), checked against fp32 on the golden
inputs (cosine >= ``FP16_MIN_COSINE``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError
from radzoo.onnx.export import export_lock
from radzoo.onnx.export_cache import (
    GraphStore,
    reload_section,
    save_store_section,
    section_problem,
    weights_sha256,
)
from radzoo.zoo.model import ZooModel
from radzoo.zoo.weights import sha256_file

log = logging.getLogger(__name__)

GATE_MEAN = 0.99
GATE_MIN = 0.98
HELD_APART_EVERY = 3  # every third input (by content hash) only measures
MAX_CALIBRATION = 64  # inputs that calibrate (more adds time, not accuracy, with MinMax)
MAX_HELD_APART = 64
CT_PATCHES_PER_VOLUME = 24
FP16_MIN_COSINE = 0.999
QUANTIZER = {
    "tool": "onnxruntime.quantization.quantize_static",
    "format": "QDQ",
    "activations": "QUInt8 per tensor, asymmetric",
    "weights": "QInt8 per channel, symmetric",
    "calibration_method": "MinMax",
    "kept_float": ["LayerNormalization", "InstanceNormalization", "Softmax", "EmbedLayerNormalization"],
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}


class PrecisionGateError(InputError):
    """A reduced-precision graph is too far from fp32 on held-apart inputs; nothing was saved."""


@dataclass
class CalibrationSet:
    """Preprocessed model inputs split into calibration and held-apart parts."""

    calibrate: list[np.ndarray]  # each one model input (C, H, W) or a patch (1, 32, 32, 32)
    held_apart: list[np.ndarray]
    digest: str
    source: str
    files: int
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "source": self.source,
            "files": self.files,
            "calibration_inputs": len(self.calibrate),
            "held_apart_inputs": len(self.held_apart),
            "split": f"sorted by content sha256; every {HELD_APART_EVERY}rd held apart",
        }


# ---- calibration data ---------------------------------------------------------------------------


def default_calibration_files(modality: str) -> tuple[list[Path], str]:
    """The packaged calibration set of ``modality`` and a sentence saying where it comes from."""
    if modality != "cxr":
        raise InputError(
            f"radzoo ships no default int8 calibration set for {modality!r} models (no small, "
            "redistributable lung CT exists); pass CT volumes: radzoo export DIR --precision int8 "
            "--calibration CT_FILES_OR_SERIES_FOLDERS"
        )
    from importlib import resources

    folder = Path(str(resources.files("radzoo").joinpath("assets", "calibration", "cxr")))
    files = sorted(folder.glob("*.png"))
    if not files:
        raise InputError(f"the packaged calibration set {folder} is missing from this installation")
    return files, "packaged example chest X-rays (radzoo/assets/calibration/cxr: 6 NIH ChestX-ray14 PA/AP radiographs)"


def expand_inputs(sources: Sequence[str | os.PathLike[str]], volumes: bool) -> list[Path]:
    """Files from files, folders (recursive; for CT, folders holding DICOM files are series) and globs."""
    out: list[Path] = []
    for raw in sources:
        text = os.fspath(raw)
        matches = [Path(p) for p in sorted(glob.glob(text))] if any(c in text for c in "*?[") else [Path(text)]
        if not matches:
            raise InputError(f"calibration input {text!r} matches no file")
        for path in matches:
            if not path.exists():
                raise InputError(f"calibration input {path} does not exist")
            if path.is_file():
                out.append(path)
            elif volumes and _is_series_folder(path):
                out.append(path)
            else:
                for child in sorted(path.rglob("*")):
                    if child.is_file() and not child.name.startswith(".") and (
                        volumes or child.suffix.lower() in _IMAGE_SUFFIXES
                    ):
                        out.append(child)
    if not out:
        raise InputError(f"no calibration files found under {', '.join(map(os.fspath, sources))}")
    return list(dict.fromkeys(out))


def _is_series_folder(path: Path) -> bool:
    files = [p for p in path.iterdir() if p.is_file()]
    return bool(files) and not any(p.is_dir() for p in path.iterdir())


def _content_sha(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(sha256_file(child).encode())
    return h.hexdigest()


def calibration_set(model: ZooModel, sources: Sequence[str | os.PathLike[str]] | None = None) -> CalibrationSet:
    """Read and preprocess calibration inputs for ``model`` (the default set when ``sources`` is None)."""
    ct = "ct" in model.capabilities
    if sources:
        files = expand_inputs(sources, volumes=ct)
        origin = f"{len(files)} {'CT volume(s)' if ct else 'image(s)'} given with --calibration"
    else:
        files, origin = default_calibration_files(model.spec.modality)
    keyed = sorted((_content_sha(p), p) for p in files)
    digest = hashlib.sha256(
        ("|".join(sha for sha, _ in keyed) + f"|every{HELD_APART_EVERY}|max{MAX_CALIBRATION}").encode()
    ).hexdigest()
    if ct:
        return _ct_set(model, keyed, digest, origin)
    from radzoo.io import read_image
    from radzoo.zoo.pixels import check_modality

    inputs: list[tuple[int, np.ndarray]] = []
    for index, (_, path) in enumerate(keyed):
        image = read_image(path)
        check_modality(image, model.spec.modality, str(path))
        tensor = model.transform(image.pixels)
        inputs.append((index, np.ascontiguousarray(tensor.numpy(), dtype=np.float32)))
    return _split(inputs, digest, origin, len(files))


def _split(inputs: list[tuple[int, np.ndarray]], digest: str, origin: str, files: int,
           notes: list[str] | None = None) -> CalibrationSet:
    held = [x for i, x in inputs if i % HELD_APART_EVERY == HELD_APART_EVERY - 1][:MAX_HELD_APART]
    calibrate = [x for i, x in inputs if i % HELD_APART_EVERY != HELD_APART_EVERY - 1][:MAX_CALIBRATION]
    if len(calibrate) < 2 or not held:
        raise InputError(
            f"int8 calibration needs at least {HELD_APART_EVERY} inputs (two calibrate, one is held apart "
            f"to measure the result), got {len(inputs)} from {origin}"
        )
    return CalibrationSet(calibrate, held, digest, origin, files, notes or [])


def _ct_set(model: ZooModel, keyed: list[tuple[str, Path]], digest: str, origin: str) -> CalibrationSet:
    """Patches of 32^3 voxels at 1 mm, sampled reproducibly inside the body of each CT volume.

    With three or more volumes whole volumes are held apart; with fewer, every third patch.
    """
    from radzoo.io import read_volume, resample

    per_volume: list[list[np.ndarray]] = []
    for sha, path in keyed:
        volume = resample(read_volume(path, modality="CT"), spacing=(1.0, 1.0, 1.0), interpolator="linear")
        hu = np.asarray(volume.array, dtype=np.float32)  # (z, y, x)
        if min(hu.shape) < 32:
            raise InputError(f"calibration volume {path} is smaller than one 32 mm patch at 1 mm spacing")
        rng = np.random.default_rng(int(sha[:12], 16))
        patches: list[np.ndarray] = []
        for _ in range(CT_PATCHES_PER_VOLUME * 20):
            z, y, x = (int(rng.integers(0, n - 31)) for n in hu.shape)
            block = hu[z:z + 32, y:y + 32, x:x + 32]
            if float(block.mean()) < -980.0:  # air outside the body
                continue
            patches.append(np.asarray(model.transform(block.copy()), dtype=np.float32)[None])
            if len(patches) == CT_PATCHES_PER_VOLUME:
                break
        if not patches:
            raise InputError(f"calibration volume {path}: no 32^3 patch inside the body was found")
        per_volume.append(patches)
    if len(per_volume) >= HELD_APART_EVERY:
        inputs = [(v, p) for v, patches in enumerate(per_volume) for p in patches]
        note = "whole volumes held apart"
    else:
        flat = [p for patches in per_volume for p in patches]
        inputs = list(enumerate(flat))
        note = f"only {len(per_volume)} volume(s): every {HELD_APART_EVERY}rd patch held apart"
    return _split(inputs, digest, origin, len(keyed), [note])


# ---- int8 ---------------------------------------------------------------------------------------


def int8_graph_names(model: ZooModel) -> list[str]:
    """Graphs that get an int8 version: every image output; graph-CT's patch encoder (its GCN is
    a few small matrix products and stays fp32)."""
    if "ct" in model.capabilities:
        return ["patch_encoder"]
    return [f"image_{o}" for o in model.spec.outputs if o in model.net.image_outputs]


def _input_name(graph: str) -> str:
    return "patches" if graph == "patch_encoder" else "image"


class _Reader:
    """``CalibrationDataReader`` over preprocessed inputs, batch by batch."""

    def __init__(self, name: str, inputs: list[np.ndarray], batch: int = 8) -> None:
        self.name = name
        self.batches = [np.stack(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {self.name: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantiser logs every copied bias (INFO) and every 1-D weight it cannot quantise per
    channel (WARNING: standalone BatchNormalization scales, then quantised per tensor) on the root
    logger; hide that here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32_path: Path, out_path: Path, input_name: str, inputs: list[np.ndarray]) -> None:
    """Static QDQ quantisation of one graph with onnxruntime's tools (see the module docs)."""
    from radzoo.extras import require_extra

    require_extra("onnx", "onnxruntime.quantization", feature="int8 quantisation")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Reader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory(prefix=".int8-", dir=out_path.parent) as tmp, _quiet_root_logger():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            Reader(input_name, inputs),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # onnxruntime's own default op list, minus the normalisations and softmax whose
            # reductions int8 hurts most (they stay fp32 between dequantize/quantize pairs)
            op_types_to_quantize=sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - set(QUANTIZER["kept_float"])),
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64 (a zero row against a zero row counts as 1)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-30)
    return np.where(both_zero, 1.0, cos)


def _run_all(path: Path, input_name: str, inputs: list[np.ndarray], batch: int = 8,
             providers: list[Any] | None = None) -> np.ndarray:
    from radzoo.onnx.ort_runtime import make_session

    session = make_session(path, providers)
    outs = [session.run(None, {input_name: np.stack(inputs[i:i + batch])})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(outs, axis=0)


def gate(graph: str, fp32_path: Path, int8_path: Path, inputs: list[np.ndarray], model_name: str,
         thresholds: tuple[float, float] = (GATE_MEAN, GATE_MIN)) -> dict[str, Any]:
    """Cosine of int8 to fp32 on held-apart inputs; raises ``PrecisionGateError`` below the gate."""
    name = _input_name(graph)
    cos = cosines(_run_all(fp32_path, name, inputs), _run_all(int8_path, name, inputs))
    result = {"held_apart_inputs": len(inputs), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
              "gate_mean": thresholds[0], "gate_min": thresholds[1]}
    if not (result["cosine_mean"] >= thresholds[0] and result["cosine_min"] >= thresholds[1]):
        raise PrecisionGateError(
            f"int8 refused for {model_name} graph {graph!r}: cosine to fp32 on {len(inputs)} held-apart inputs is "
            f"mean {result['cosine_mean']:.4f} (gate >= {thresholds[0]}), min {result['cosine_min']:.4f} "
            f"(gate >= {thresholds[1]}); nothing was saved. Calibrate on more (and more typical) images with "
            "--calibration IMAGES, or use precision fp32 or bf16"
        )
    return result


def ensure_int8(model: ZooModel, store: GraphStore, *, calibration: Sequence[str | os.PathLike[str]] | None = None,
                force: bool = False, thresholds: tuple[float, float] = (GATE_MEAN, GATE_MIN)) -> GraphStore:
    """``store`` with int8 versions of the model's graphs, built (calibrated + gated) when missing.

    ``force`` (an explicit ``radzoo export --precision int8``) rebuilds them even when present.
    The int8 files go beside the fp32 ones and the record into the same place (artifact
    ``config.json`` or cache ``onnx.json``), under the store's export lock.
    """
    graphs = int8_graph_names(model)
    sha = weights_sha256(model)
    if not force and section_problem(store.root, store.section, graphs, sha, variant="int8") is None:
        return store
    with export_lock(store.root):
        store.section = reload_section(store, model) or store.section
        if not force and section_problem(store.root, store.section, graphs, sha, variant="int8") is None:
            return store
        data = calibration_set(model, calibration)
        log.info("%s: int8 calibration on %d inputs (%s), %d held apart", model.name, len(data.calibrate),
                 data.source, len(data.held_apart))
        with tempfile.TemporaryDirectory(prefix=".int8-build-", dir=store.root) as tmp:
            built: dict[str, Any] = {}
            for graph in graphs:
                fp32_entry = store.section["graphs"][graph]
                fp32_path = store.root / fp32_entry["file"]
                out = Path(tmp) / f"{graph}.int8.onnx"
                quantize_int8(fp32_path, out, _input_name(graph), data.calibrate)
                measured = gate(graph, fp32_path, out, data.held_apart, model.name, thresholds)
                built[graph] = (out, measured, fp32_entry)
            entries = {}
            for graph, (out, measured, fp32_entry) in built.items():
                final = store.root / "onnx" / out.name
                os.replace(out, final)
                entries[graph] = {
                    "file": f"onnx/{out.name}",
                    "sha256": sha256_file(final),
                    "weights_sha256": sha,
                    "source_sha256": fp32_entry.get("sha256"),
                    "gate": measured,
                }
        section = dict(store.section)
        section["int8"] = {
            "graphs": entries,
            "calibration": {**data.record(), "notes": data.notes},
            "quantizer": QUANTIZER,
        }
        store.section = section
        save_store_section(store, model)
    return store


# ---- fp16 (GPUs) --------------------------------------------------------------------------------


def ensure_fp16(model: ZooModel, store: GraphStore) -> GraphStore:
    """``store`` with fp16 versions of the model's graphs (CUDA), converted once and checked."""
    graphs = int8_graph_names(model)  # the same graphs carry the arithmetic
    sha = weights_sha256(model)
    if section_problem(store.root, store.section, graphs, sha, variant="fp16") is None:
        return store
    from radzoo.extras import require_extra

    float16 = require_extra("onnx", "onnxruntime.transformers.float16", feature="fp16 graphs")
    convert_float_to_float16 = float16.convert_float_to_float16
    onnx = require_extra("onnx", "onnx", feature="fp16 graphs")
    from radzoo.onnx.graphs import graph_defs

    defs = {d.name: d for d in graph_defs(model)}
    with export_lock(store.root):
        store.section = reload_section(store, model) or store.section
        if section_problem(store.root, store.section, graphs, sha, variant="fp16") is None:
            return store
        entries = {}
        for graph in graphs:
            fp32_entry = store.section["graphs"][graph]
            fp32_path = store.root / fp32_entry["file"]
            final = store.root / "onnx" / f"{graph}.fp16.onnx"
            half = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", dir=final.parent)
            os.close(fd)
            try:
                onnx.save(half, tmp)
                inputs = list(defs[graph].parity_inputs[0][0])
                gpu = [("CUDAExecutionProvider", {"device_id": model.device.index or 0}), "CPUExecutionProvider"]
                cos = cosines(_run_all(fp32_path, _input_name(graph), inputs),  # fp16 kernels: the GPU's
                              _run_all(Path(tmp), _input_name(graph), inputs, providers=gpu))
                if cos.min() < FP16_MIN_COSINE:
                    raise PrecisionGateError(
                        f"fp16 refused for {model.name} graph {graph!r}: cosine to fp32 min {cos.min():.5f} "
                        f"< {FP16_MIN_COSINE}; use fp32"
                    )
                os.replace(tmp, final)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            entries[graph] = {"file": f"onnx/{final.name}", "sha256": sha256_file(final), "weights_sha256": sha,
                              "source_sha256": fp32_entry.get("sha256"), "cosine_min": float(cos.min()),
                              "converter": "onnxruntime.transformers.float16 (keep_io_types=True)"}
        section = dict(store.section)
        section["fp16"] = {"graphs": entries}
        store.section = section
        save_store_section(store, model)
    return store

