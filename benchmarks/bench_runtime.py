"""The default path's speed, as ratios measured side by side in one run (issue 15).

1. **Default path vs torch eager**, model only and ``radzoo extract`` end to end (the CLI,
   start-up included, ONNX cache warm), for ResNet-50 (``mococxr_resnet50``), DenseNet-121
   (``mococxr_densenet121``) and ViT-B/32 (``igcl_vitb32``). Goal: >= 3x for ResNet-50.
2. **int8 vs fp32** (onnxruntime static QDQ, model only), calibrated on real NIH chest X-rays
   (``--cxr-dir``, every third image held apart for the cosine gate) plus the cosine to fp32 on
   further NIH images that neither calibrated nor gated. Goal: >= 2x on a VNNI CPU.
3. **bf16 vs fp32** (torch oneDNN autocast vs the fp32 default path and vs torch eager fp32).
4. **radzoo extract vs TorchXRayVision's ``process_batch.py``** on the same PNGs, DenseNet-121
   with random weights and ``input_resolution=224``: torchxrayvision is pip-installed into a
   throwaway venv created inside this run (it sees this environment's torch through a ``.pth``).
   ``process_batch.py`` is not in the PyPI package: pass a copy with ``--txv-script`` (it is run
   unchanged, with ``xrv.models.get_model`` returning the random DenseNet); without one, a
   driver doing the same steps (``xrv.utils.load_image`` per file, one image per forward pass,
   ``torch.no_grad``, pandas CSV) is used and the output says so. radzoo runs at its defaults
   (``mococxr_densenet121``: 320 px) and, for the same pixels, a 224 px variant. Goal: >= 5x.
5. **Fraction of the machine's fp32 GEMM peak**: onnxruntime's own MatMul (4096^2) GFLOP/s,
   against each model's achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode).

Model-only numbers of one row (eager, default, int8, bf16 and the GEMM peak) are measured in
round-robin windows, so the machine's drift during the run does not end up in their ratios.

Weights are random (``--random-weights``; no downloads): speed does not depend on them, the
int8 cosine does (real weights quantise differently), so the gate result is for these weights.
Numbers are only comparable within one run on one machine; run it on a quiet machine.

    python benchmarks/bench_runtime.py --cxr-dir ../shared/data/cxr_nih/images [--txv-script process_batch.py]
    python benchmarks/bench_runtime.py --smoke --cxr-dir ...   # seconds, not minutes: proves it runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from timing import rate, rates_interleaved

MODELS = {"ResNet-50": "mococxr_resnet50", "DenseNet-121": "mococxr_densenet121", "ViT-B/32": "igcl_vitb32"}
RADZOO = [sys.executable, "-m", "radzoo.cli"]


def model_gflop(model: Any, shape: tuple[int, ...]) -> float:
    """GFLOP of one image's forward pass (2 per multiply-add), counted by torch's FlopCounterMode on
    the torch network: convolutions and matrix products, whatever shapes the ONNX graph leaves symbolic."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = np.zeros((1, *shape), dtype=np.float32)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.embed_batch(x)
    return counter.get_total_flops() / 1e9


def gemm_call(threads: int, n: int = 4096) -> tuple[Callable[[], Any], float]:
    """onnxruntime's own fp32 MatMul ``n x n``: ``(one call, GFLOP per call)``."""
    import onnxruntime as ort

    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", [a, b], [c])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                   so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    return (lambda: session.run(None, feeds)), 2 * n**3 / 1e9


def gemm_peak(threads: int, n: int = 4096, seconds: float = 3.0) -> float:
    """onnxruntime's own fp32 MatMul, ``n x n``, in GFLOP/s."""
    call, gflop = gemm_call(threads, n)
    return rate(call, 1, seconds) * gflop


def timed_cli(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])} ... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def extract_rate(model: str, images: Path, count: int, runtime: str, env: dict[str, str], work: Path,
                 extra: tuple[str, ...] = ()) -> float:
    """``radzoo extract`` as users run it (new process, defaults), images/s over the whole command."""
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))
    try:
        args = [*RADZOO, "extract", str(images), "--model", model, "--out", str(out), "--runtime", runtime, "-q", *extra]
        if not Path(model).is_dir():
            args.append("--random-weights")
        return count / timed_cli(args, env)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def subset(folder: Path, count: int, work: Path) -> tuple[Path, int]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")[:count]
    target = work / f"png{len(files)}"
    target.mkdir(exist_ok=True)
    for f in files:
        if not (target / f.name).exists():
            (target / f.name).symlink_to(f.resolve())
    return target, len(files)


def at_224(preprocess: Any) -> Any:
    """The same preprocessing with every 320 px size at 224 px (TorchXRayVision's resolution)."""
    from radzoo.zoo.spec import Preprocess

    steps = [{**s, "size": 224} if s.get("size") == 320 else dict(s) for s in preprocess.steps]
    return Preprocess(preprocess.input, tuple(steps), notes=preprocess.notes + " (benchmark variant at 224 px)")


# ---- TorchXRayVision --------------------------------------------------------------------------

_TXV_DRIVER = """
import os, runpy, sys, torch, torchxrayvision as xrv
def random_densenet(*_args, **_kwargs):
    torch.manual_seed(0)
    model = xrv.models.DenseNet(weights=None)  # random weights, 18 pathologies
    model.input_resolution = 224  # as the published weights: fix_resolution resizes to 224
    return model.eval()
torch.set_num_threads({threads})
script = {script!r}
if script:
    xrv.models.get_model = random_densenet
    sys.argv = [script, sys.argv[1], sys.argv[2]]
    runpy.run_path(script, run_name="__main__")
    print("TXV: ran", script)
else:
    import pandas as pd
    from tqdm import tqdm
    model = random_densenet()
    rows = []
    for name in tqdm(os.listdir(sys.argv[1])):
        img = torch.from_numpy(xrv.utils.load_image(os.path.join(sys.argv[1], name))).unsqueeze(0)
        with torch.no_grad():
            preds = model(img).cpu().numpy()
        row = dict(zip(xrv.datasets.default_pathologies, preds[0]))
        row["filename"] = name
        rows.append(row)
    pd.DataFrame(rows).set_index("filename").to_csv(sys.argv[2])
    print("TXV: process_batch.py steps (no script given)")
"""


def txv_venv(work: Path) -> Path:
    """A throwaway venv that sees this environment's packages (torch is not downloaded again; a
    ``.pth`` file adds our site-packages, since ``--system-site-packages`` would only add the base
    interpreter's) and gets torchxrayvision and whatever it lacks from PyPI."""
    import sysconfig

    venv = work / "txv-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "radzoo-bench-shared.pth").write_text("\n".join(sorted(ours)) + "\n")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    proc = subprocess.run([*pip, "torchxrayvision"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install torchxrayvision failed: {proc.stderr[-2000:]}")
    return venv / "bin" / "python"


def txv_rate(python: Path, images: Path, count: int, script: str | None, threads: int, work: Path) -> tuple[float, str]:
    driver = work / "txv_driver.py"
    driver.write_text(textwrap.dedent(_TXV_DRIVER.format(threads=threads, script=script or "")))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    start = time.perf_counter()
    proc = subprocess.run([str(python), str(driver), str(images), str(work / "txv.csv")], capture_output=True,
                          text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"TorchXRayVision run failed: {proc.stderr[-2000:]}")
    rows = sum(1 for _ in open(work / "txv.csv")) - 1
    if rows != count:
        raise RuntimeError(f"TorchXRayVision wrote {rows} rows for {count} images")
    return count / elapsed, proc.stdout.strip().splitlines()[-1]


# ---- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cxr-dir", type=Path, required=True, help="folder of real chest X-ray PNGs (NIH cxr_nih/images)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="model-only batch sizes")
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per model-only configuration")
    parser.add_argument("--images", type=int, default=201, help="PNGs for the end-to-end runs (default: all 201)")
    parser.add_argument("--calibration", type=int, default=96, help="NIH images given to int8 calibration")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--txv-script", default=None, help="a copy of TorchXRayVision's scripts/process_batch.py")
    parser.add_argument("--skip-txv", action="store_true", help="skip the TorchXRayVision comparison")
    parser.add_argument("--only-txv", action="store_true", help="run only the TorchXRayVision comparison")
    parser.add_argument("--smoke", action="store_true", help="tiny settings: prove the script runs (numbers mean nothing)")
    parser.add_argument("--out", type=Path, default=None, help="write all numbers as JSON here")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.batches, args.seconds, args.images, args.calibration = ["ResNet-50"], [1, 8], 0.6, 12, 9

    import torch

    import radzoo
    from radzoo import zoo
    from radzoo.bench.hardware import describe_machine
    from radzoo.onnx.export_cache import find_or_export
    from radzoo.onnx.precision_graphs import cosines
    from radzoo.zoo.golden import input_shape

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"hardware": describe_machine(), "threads": args.threads, "smoke": args.smoke,
                               "models": {}}
    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    env = {**os.environ, "RADZOO_HOME": str(work / "home"), "OMP_NUM_THREADS": str(args.threads)}
    os.environ["RADZOO_HOME"] = env["RADZOO_HOME"]
    print(f"# bench_runtime on {results['hardware']['name']}, {args.threads} threads"
          + (" (SMOKE: tiny settings, ratios are not results)" if args.smoke else ""))
    try:
        if not args.only_txv:
            peak = gemm_peak(args.threads, 2048 if args.smoke else 4096, 1.0 if args.smoke else 4.0)
            results["gemm_peak_gflops"] = peak
            print(f"onnxruntime fp32 MatMul peak: {peak:.0f} GFLOP/s (alone; each model row measures it again, interleaved)")
            gemm = gemm_call(args.threads, 2048 if args.smoke else 4096)
        pngs, count = subset(args.cxr_dir, args.images, work)
        all_png = sorted(p for p in args.cxr_dir.iterdir() if p.suffix.lower() == ".png")
        calib, further = all_png[: args.calibration], all_png[args.calibration: args.calibration + 32]

        for label in [] if args.only_txv else args.models:
            name = MODELS[label]
            row: dict[str, Any] = {}
            eager = radzoo.build(name, runtime="torch")
            default = radzoo.build(name)  # the default path, as users get it (auto, fp32)
            bf16 = radzoo.build(name, precision="bf16")
            directory = zoo.save(eager, work / name)  # an artifact for int8 (calibrated on NIH CXRs)
            shape = input_shape(eager.spec.preprocess)
            find_or_export(default, [f"image_{default.default_output}"])  # exported before any timing
            gflop = model_gflop(eager, shape)
            row["gflop_per_image"] = gflop
            from radzoo.artifacts import export_artifact
            from radzoo.onnx.precision_graphs import PrecisionGateError

            held = [str(p) for p in further]
            int8: Any = None
            try:
                section = export_artifact(directory, precision="int8", calibration=[str(p) for p in calib])
            except PrecisionGateError as exc:  # the gate did its job: report the refusal, measure the rest
                row["int8_refused"] = str(exc)
                print(f"{label:<13} int8 REFUSED by the cosine gate: {exc}")
            else:
                int8 = radzoo.load(directory, precision="int8")
                gate = section["int8"]["graphs"][f"image_{default.default_output}"]["gate"]
                row["int8_gate"] = gate
                row["int8_cosine_further"] = float(cosines(default.embed(held), int8.embed(held)).min()) if held else None
            row["bf16_cosine_further"] = float(cosines(default.embed(held), bf16.embed(held)).min()) if held else None
            for batch in args.batches:
                x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
                fns = {key: ((lambda m=m, x=x: m.embed_batch(x)), batch)
                       for key, m in (("torch_eager", eager), ("default", default), ("int8", int8), ("bf16", bf16))
                       if m is not None}
                fns["gemm_gflops"] = gemm  # the GEMM peak, in the same round-robin as the models
                r = rates_interleaved(fns, args.seconds)
                peak = r["gemm_gflops"]
                row[f"model_b{batch}"] = r
                print(f"{label:<13} b={batch:<3} img/s: torch eager {r['torch_eager']:7.2f} | default ({default.runtime.name}) "
                      f"{r['default']:7.2f} ({r['default'] / r['torch_eager']:.2f}x) | "
                      + (f"int8 {r['int8']:7.2f} ({r['int8'] / r['default']:.2f}x fp32)" if "int8" in r else "int8 refused")
                      + f" | bf16 {r['bf16']:7.2f} ({r['bf16'] / r['default']:.2f}x fp32, "
                      f"{r['bf16'] / r['torch_eager']:.2f}x eager) | {r['default'] * gflop / peak:.0%} of GEMM peak ({peak:.0f} GFLOP/s)")
            if int8 is not None:
                print(f"{label:<13} int8 gate (held-apart NIH): mean {gate['cosine_mean']:.4f} min {gate['cosine_min']:.4f}; "
                      f"min cosine on {len(held)} further NIH images: int8 {row['int8_cosine_further']:.4f}, "
                      f"bf16 {row['bf16_cosine_further']:.4f}")
            # end to end: the CLI, start-up included, cache warmed by one run first
            extract_rate(name, pngs, count, "auto", env, work)
            e2e = {"torch_eager": extract_rate(name, pngs, count, "torch", env, work),
                   "default": extract_rate(name, pngs, count, "auto", env, work)}
            row["extract"] = e2e
            print(f"{label:<13} radzoo extract {count} PNGs, img/s: torch {e2e['torch_eager']:.2f} | default "
                  f"{e2e['default']:.2f} ({e2e['default'] / e2e['torch_eager']:.2f}x)")
            results["models"][label] = row

        if not args.skip_txv:
            python = txv_venv(work)
            txv, how = txv_rate(python, pngs, count, args.txv_script, args.threads, work)
            spec = radzoo.build("mococxr_densenet121", runtime="torch").spec
            same_px = zoo.save(radzoo.build(spec.with_(name="mococxr_densenet121_224px", preprocess=at_224(spec.preprocess)),
                                            runtime="torch"), work / "densenet224")
            extract_rate("mococxr_densenet121", pngs, count, "auto", env, work)  # warm the ONNX cache
            ours = extract_rate("mococxr_densenet121", pngs, count, "auto", env, work)
            extract_rate(str(same_px), pngs, count, "auto", env, work)  # warm its cache
            ours224 = extract_rate(str(same_px), pngs, count, "auto", env, work)
            results["txv"] = {"txv": txv, "how": how, "radzoo_default": ours, "radzoo_224px": ours224}
            print(f"TorchXRayVision ({how}): {txv:.2f} img/s | radzoo extract defaults (320 px): {ours:.2f} img/s "
                  f"({ours / txv:.2f}x) | same 224 px: {ours224:.2f} img/s ({ours224 / txv:.2f}x)")
    finally:
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
