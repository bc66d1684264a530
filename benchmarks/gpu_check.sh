#!/usr/bin/env bash
# GPU throughput check (issue 15), <= 6 minutes on one GPU. Run it whenever a GPU is at hand:
#
#   benchmarks/gpu_check.sh [--quick]
#
# Needs: an NVIDIA GPU, the `gpu` extra (onnxruntime-gpu, NOT the CPU wheel onnxruntime; with
# TensorRT libraries on the library path for the TensorRT EP), and optionally nvidia-nvimgcodec-cu12
# or -cu13 for GPU JPEG 2000 decoding. Models use random weights (speed does not depend on them).
#
# Reports, in one run:
#   1. ResNet-50 / DenseNet-121 / ViT-B/32 (mococxr_resnet50 at its 320 px, plus ResNet-50 at 224 px for
#      the >= 5,000 img/s H100 goal, mococxr_densenet121, igcl_vitb32) images/s at fp16 on the CUDA EP
#      and the TensorRT EP, batch 1 / 32 / 256: "radzoo" = model.embed_batch from host memory (what
#      extraction does: H2D copy + IO binding); "device" = the session on an input already on the GPU.
#      Torch CUDA (channels_last + fp16 autocast, the fallback path) at batch 32 for comparison.
#   2. JPEG 2000 lossless decode (2048x2048, 12-bit DX DICOMs written from real example CXRs):
#      images/s with nvImageCodec on the GPU vs pydicom/OpenJPEG on one CPU core, and the
#      cross-check against pydicom (exact for lossless).
# Python prints one line per measurement; exit status 2 means the GPU stack is missing (named).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="${PWD}/src${PYTHONPATH:+:$PYTHONPATH}"
export RADZOO_HOME="${RADZOO_HOME:-$(mktemp -d)/radzoo-home}"
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec timeout 360 "$PYTHON" - "$QUICK" <<'PY'
import os, sys, tempfile, time
from pathlib import Path

import numpy as np

QUICK = sys.argv[1] == "1"
BATCHES = (1, 32) if QUICK else (1, 32, 256)
SECONDS = 0.5 if QUICK else 2.0


def fail(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr)
    sys.exit(2)


import torch

if not torch.cuda.is_available():
    fail(f"no CUDA GPU visible to torch {torch.__version__} (CUDA build: {torch.version.cuda})")
try:
    import onnxruntime as ort
except ImportError:
    fail("onnxruntime is not installed: pip install 'radzoo[gpu]' (onnxruntime-gpu)")
providers = ort.get_available_providers()
if "CUDAExecutionProvider" not in providers:
    fail(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider ({providers}): the CPU wheel is installed; "
         "pip uninstall onnxruntime && pip install 'radzoo[gpu]'")
print(f"gpu_check: {torch.cuda.get_device_name(0)}; onnxruntime {ort.__version__} providers {providers}; torch {torch.__version__}")

import radzoo
from radzoo import zoo
from radzoo.zoo.golden import input_shape
from radzoo.zoo.spec import Preprocess


def rate(fn, items: int, seconds: float = SECONDS) -> float:
    fn()
    torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    torch.cuda.synchronize()
    return n * items / (time.perf_counter() - start)


work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
spec50 = radzoo.build("mococxr_resnet50", runtime="torch", device="cpu").spec
steps224 = tuple({**s, "size": 224} if s.get("size") == 320 else dict(s) for s in spec50.preprocess.steps)
r50_224 = zoo.save(radzoo.build(spec50.with_(name="resnet50_224px", preprocess=Preprocess("image2d", steps224)),
                                runtime="torch", device="cpu"), work / "resnet50_224px")
models = [("ResNet-50 224px", str(r50_224)), ("ResNet-50 (mococxr 320px)", "mococxr_resnet50"),
          ("DenseNet-121 (mococxr 320px)", "mococxr_densenet121"), ("ViT-B/32 (igcl 224px)", "igcl_vitb32")]
if QUICK:
    models = models[:1]
trt = "TensorrtExecutionProvider" in providers
for label, name in models:
    random = not Path(name).is_dir()
    eps = [("CUDA EP", [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"])]
    if trt:
        eps.append(("TensorRT EP", None))  # radzoo's own chain: TensorRT (fp16, engine cache, batch profile) first
    for ep_label, chain in eps:
        options = {} if chain is None else {"providers": chain}
        try:
            start = time.perf_counter()
            model = radzoo.load(name, random_weights=random, device="cuda", precision="fp16", runtime="onnx",
                                runtime_options=options)
            shape = input_shape(model.spec.preprocess)
            graph = f"image_{model.default_output}"
            model.embed_batch(np.zeros((1, *shape), np.float32))  # engine build / first session
            setup = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{label:<30} {ep_label:<12} FAILED: {type(exc).__name__}: {exc}")
            continue
        session = model.runtime.session(graph)
        for batch in BATCHES:
            x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
            host = rate(lambda: model.embed_batch(x), batch)
            on_device = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            binding = session.io_binding()
            binding.bind_ortvalue_input(session.get_inputs()[0].name, on_device)
            binding.bind_output(session.get_outputs()[0].name, "cuda", 0)
            device = rate(lambda: session.run_with_iobinding(binding), batch)
            print(f"{label:<30} {ep_label:<12} fp16 b={batch:<4} radzoo {host:9.1f} img/s | device {device:9.1f} img/s"
                  f"  (setup {setup:.0f} s; providers {session.get_providers()[0]})")
    torch_model = radzoo.load(name, random_weights=random, device="cuda", precision="fp16", runtime="torch")
    x = np.random.default_rng(0).standard_normal((32, *input_shape(torch_model.spec.preprocess))).astype(np.float32)
    print(f"{label:<30} torch CUDA   fp16 b=32   radzoo {rate(lambda: torch_model.embed_batch(x), 32):9.1f} img/s"
          " (channels_last + autocast)")

# ---- JPEG 2000 decode: nvImageCodec on the GPU vs pydicom on the CPU ---------------------------
from PIL import Image as PILImage

from radzoo.bench.throughput import write_dicoms
from radzoo.io import gpu_decode, read_image
from radzoo.onnx.precision_graphs import default_calibration_files

count = 4 if QUICK else 16
big = work / "png2048"
big.mkdir()
sources, _ = default_calibration_files("cxr")
pngs = []
for i in range(count):
    out = big / f"{i:03d}.png"
    PILImage.open(sources[i % len(sources)]).resize((2048, 2048), PILImage.BICUBIC).save(out)
    pngs.append(out)
dicoms = write_dicoms(pngs, work / "j2k", codec="j2k")
os.environ[gpu_decode.MODE_ENV] = "off"
start = time.perf_counter()
cpu = [read_image(p).pixels for p in dicoms]
cpu_rate = count / (time.perf_counter() - start)
why = None
os.environ[gpu_decode.MODE_ENV] = "on"
os.environ[gpu_decode.CHECKS_ENV] = "1"  # radzoo's own check on the first frame; all frames compared below
why = gpu_decode.unavailable_reason()
if why:
    print(f"JPEG 2000 decode 2048x2048 12-bit: CPU (pydicom) {cpu_rate:.2f} img/s; GPU decode unavailable: {why}")
else:
    read_image(dicoms[0])  # decoder start-up
    start = time.perf_counter()
    gpu = [read_image(p).pixels for p in dicoms]
    gpu_rate = count / (time.perf_counter() - start)
    same = all(np.array_equal(a, b) for a, b in zip(cpu, gpu))
    print(f"JPEG 2000 decode 2048x2048 12-bit: CPU (pydicom, 1 core) {cpu_rate:.2f} img/s | GPU (nvImageCodec) "
          f"{gpu_rate:.2f} img/s ({gpu_rate / cpu_rate:.1f}x); pixels identical to pydicom: {same}; "
          f"GPU decoding still on after cross-checks: {gpu_decode.unavailable_reason() is None}")
PY
