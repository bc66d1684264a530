"""How long a linear probe takes next to computing the embeddings it probes, in one run.

Eval must never be the bottleneck. This measures, on this machine:

* **probe**: ``radzoo.eval`` 5-fold patient-grouped linear probe (StandardScaler +
  LogisticRegressionCV over the default C grid, 3 grouped inner folds, float64, one BLAS thread per
  fit, ``--jobs`` parallel fits) on N x D embeddings with L
  binary labels, then the patient-bootstrap CIs (``--bootstrap`` resamples, AUROC/AP/F1/kappa per
  label + macro AUROC). The embeddings and labels are SYNTHETIC (Gaussian features, each label a
  noisy linear function of them, prevalence 5-30%, 1-3 images per patient): the cost of the probe
  depends on the shapes, not on where the numbers came from.
* **embedding**: ``radzoo.extract.extract_features`` (read, decode, preprocess, inference, Parquet)
  with ``--model`` (random weights) on ``--embed-sample`` real NIH images, repeated to the sample
  size; the time for N images is EXTRAPOLATED from that throughput (N / images per second).

Prints both times and their ratio. Usage::

    python benchmarks/bench_eval.py [--n 10000] [--dim 2048] [--labels 14] [--folds 5] [--bootstrap 1000]
        [--model mococxr_resnet50] [--embed-sample 64] [--jobs N] [--shared ../shared]

Smoke run: ``--n 400 --dim 128 --labels 3 --bootstrap 20 --model tiny-random-mococxr --embed-sample 16``.
The machine may be shared: compare the numbers printed in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import radzoo
from radzoo.eval.folding import plan_folds
from radzoo.eval.label_table import LabelledData, LabelSpec
from radzoo.eval.probes import ProbeSettings, probe_estimates, run_probe


def synthetic(n: int, dim: int, n_labels: int, seed: int = 0) -> tuple[np.ndarray, LabelledData]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    y = np.zeros((n, n_labels), dtype=np.int8)
    for j in range(n_labels):
        w = rng.standard_normal(dim) / np.sqrt(dim)
        logit = x @ w + 0.7 * rng.standard_normal(n)
        prevalence = 0.05 + 0.25 * j / max(1, n_labels - 1)
        y[:, j] = logit > np.quantile(logit, 1 - prevalence)
    patients = np.repeat(np.arange(n), rng.integers(1, 4, n))[:n]
    specs = [LabelSpec(f"finding{j}", None, f"finding{j}") for j in range(n_labels)]
    data = LabelledData(source=Path("synthetic.csv"), lines=list(range(2, n + 2)), paths=[None] * n,
                        labels=[s.name for s in specs], specs=specs, y=y,
                        groups=np.asarray([f"P{p}" for p in patients], dtype=object), group_column="patient_id")
    return x, data


def time_probe(x: np.ndarray, data: LabelledData, folds: int, n_boot: int, jobs: int | None) -> tuple[float, float, float]:
    """(probe seconds, bootstrap seconds, macro AUROC)."""
    settings = ProbeSettings(kind="linear", n_jobs=jobs)
    start = time.perf_counter()
    plan = plan_folds(data, folds, seed=0)
    run = run_probe(x, data, plan, settings, seed=0)
    probe_s = time.perf_counter() - start
    start = time.perf_counter()
    _, overall, _ = probe_estimates(run, data, 1.0, n_boot=n_boot, seed=0, n_jobs=jobs)
    return probe_s, time.perf_counter() - start, overall["macro_auroc"].value


def open_model(name: str):
    from radzoo.zoo.tiny import tiny_specs

    tiny = tiny_specs()
    return radzoo.build(tiny[name] if name in tiny else name, seed=0)


def embedding_rate(model_name: str, images: list[Path], sample: int, batch_size: int) -> tuple[float, int]:
    """End-to-end extraction throughput (images/s) on ``sample`` images (the NIH PNGs repeated)."""
    from radzoo.extract import extract_features

    model = open_model(model_name)
    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    try:
        files = []
        for i in range(sample):  # distinct paths so nothing is skipped as already done
            src = images[i % len(images)]
            dst = tmp / "in" / f"{i:06d}_{src.name}"
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(src, dst)
            files.append(dst)
        extract_features(model, [str(files[0])], tmp / "warm", quiet=True, batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        result = extract_features(model, [str(tmp / "in")], tmp / "out", quiet=True, batch_size=batch_size)
        seconds = time.perf_counter() - start
        return result.counts.written / seconds, int(result.manifest["model"]["dim"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--labels", type=int, default=14)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=None, help="parallel fits / resamples (default: radzoo's choice)")
    ap.add_argument("--model", default="mococxr_resnet50", help="registry or tiny-random-* model for the embedding rate")
    ap.add_argument("--embed-sample", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    args = ap.parse_args()

    images = sorted((args.shared / "data" / "cxr_nih" / "images").glob("*.png"))
    if not images:
        raise SystemExit(f"no NIH images under {args.shared}/data/cxr_nih/images (use --shared)")
    print(f"machine: {os.cpu_count()} cores; probe on {args.n} x {args.dim} SYNTHETIC embeddings, "
          f"{args.labels} labels, {args.folds} folds, bootstrap {args.bootstrap}")
    x, data = synthetic(args.n, args.dim, args.labels)
    probe_s, boot_s, macro = time_probe(x, data, args.folds, args.bootstrap, args.jobs)
    eval_s = probe_s + boot_s
    print(f"probe fits: {probe_s:8.1f} s   bootstrap CIs: {boot_s:8.1f} s   eval total: {eval_s:8.1f} s"
          f"   (macro AUROC {macro:.3f}, a sanity check)")

    rate, dim = embedding_rate(args.model, images, args.embed_sample, args.batch_size)
    embed_s = args.n / rate
    print(f"embedding: {args.model} (random weights, {dim}-d) extract_features at {rate:.2f} img/s, measured on "
          f"{args.embed_sample} real NIH images; EXTRAPOLATED to {args.n} images: {embed_s:8.1f} s")
    if dim != args.dim:
        print(f"note: the model's output is {dim}-d; the probe ran on {args.dim}-d")
    print(f"eval / embedding time: {eval_s / embed_s:.3f}  (probe fits alone {probe_s / embed_s:.3f})")


if __name__ == "__main__":
    main()
