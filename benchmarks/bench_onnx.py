"""ResNet-50 (224 px) images/s: torch eager vs onnxruntime default vs onnxruntime tuned, one run.

The graph is exported exactly as ``radzoo export`` does it (``radzoo.onnx.export``: TorchScript
tracer, opset 17, dynamic batch). Random weights (``radzoo.build``): speed does not depend on them.
Numbers are only comparable within one run on one machine, so the script prints ratios to torch
eager measured side by side. Usage:

    python benchmarks/bench_onnx.py [--batches 1 8 32] [--seconds 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import rates_interleaved

import radzoo
from radzoo.nets import ImageOutput
from radzoo.onnx.export import DEFAULT_OPSET, _export_one
from radzoo.onnx.graphs import EMBEDDING, IMAGE_INPUT, GraphDef
from radzoo.onnx.ort_runtime import make_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per configuration and batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for torch and tuned ORT")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = radzoo.build("mococxr_resnet50", device="cpu")
    module = ImageOutput(model.net, "trunk").eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        example = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
        graph = GraphDef(
            name="image_trunk",
            kind="image",
            module=module,
            input_names=[IMAGE_INPUT],
            output_names=[EMBEDDING],
            dynamic_axes={IMAGE_INPUT: {0: "batch"}, EMBEDDING: {0: "batch"}},
            parity_inputs=[(example,)],
            output="trunk",
        )
        t0 = time.perf_counter()
        _export_one(graph, path, DEFAULT_OPSET)
        print(f"export: {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 1e6:.0f} MB, opset {DEFAULT_OPSET}")
        import onnxruntime as ort

        default = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        tuned = make_session(
            path,
            ["CPUExecutionProvider"],
            graph_optimization_level="all",
            intra_op_num_threads=args.threads,
            inter_op_num_threads=1,
            execution_mode="sequential",
        )
        with torch.inference_mode():
            ref = module(torch.from_numpy(example)).numpy()
        diff = float(np.abs(tuned.run(None, {IMAGE_INPUT: example})[0] - ref).max())
        print(f"parity torch vs onnxruntime (tuned): max abs diff {diff:.2e}")
        print(f"threads={args.threads}  cpu_count={os.cpu_count()}  load average={os.getloadavg()[0]:.2f} (1 min)")

        rows = []
        for batch in args.batches:
            x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            xt = torch.from_numpy(x)

            def eager(xt: torch.Tensor = xt) -> object:
                with torch.inference_mode():
                    return module(xt)

            r = rates_interleaved({"torch": (eager, batch),
                                   "default": ((lambda x=x: default.run(None, {IMAGE_INPUT: x})), batch),
                                   "tuned": ((lambda x=x: tuned.run(None, {IMAGE_INPUT: x})), batch)},
                                  args.seconds * args.repeats, args.repeats)
            r_torch, r_default, r_tuned = r["torch"], r["default"], r["tuned"]
            rows.append((batch, r_torch, r_default, r_tuned))
            print(f"  batch {batch:>3}: torch {r_torch:6.1f}  ort default {r_default:6.1f}  ort tuned {r_tuned:6.1f} img/s")

    print()
    print("| batch | torch eager img/s | ORT default img/s | ORT tuned img/s | default / torch | tuned / torch |")
    print("|---|---|---|---|---|---|")
    for batch, a, b, c in rows:
        print(f"| {batch} | {a:.1f} | {b:.1f} | {c:.1f} | {b / a:.2f}x | {c / a:.2f}x |")
    print(f"(load average at end: {os.getloadavg()[0]:.2f}; numbers on a shared machine are noisy, compare ratios)")


if __name__ == "__main__":
    main()
