"""Task heads on the 201 NIH images: what ``radzoo head train`` finds, what a head costs at run time,
and how AUROC grows with the number of labelled patients.

    python benchmarks/bench_heads.py [--model mococxr_resnet18 --random-weights] [--out bench_heads/]

1. heads for AP vs PA and Effusion (5-fold patient-grouped CV, 1000 bootstrap resamples): CV
   AUROC with CIs next to the raw-pixels floor, ECE before/after calibration, the operating-point
   table; and ``radzoo eval linear-probe``'s AUROC on the same rows and seed (must agree);
2. the head's share of ``radzoo extract`` time (the head applied to all 201 embeddings vs the
   extraction of the 201 images, same run), and ``/classify`` next to ``/v1/embeddings``
   (in-process ``Endpoints``, one image per request, interleaved);
3. data efficiency: a fixed patient-level test split (80 patients), heads trained on 25, 50, 100
   and all 121 training patients (3 draws below all), test AUROC with patient-bootstrap CIs, as a
   figure (``data_efficiency.png``).

Without real weights (no download here) the model is the seeded random-weight build: its numbers
are a protocol check, not a result.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import radzoo
from radzoo.eval.head_fit import train_head
from radzoo.eval.label_table import read_labels
from radzoo.eval.probes import ProbeSettings
from radzoo.eval.tasks import linear_probe
from radzoo.heads.head_apply import probabilities

LABELS = ["view:AP=AP vs PA", "Effusion"]
SIZES = (25, 50, 100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/cxr_nih")
    ap.add_argument("--model", default="mococxr_resnet18")
    ap.add_argument("--random-weights", action="store_true", default=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("bench_heads"))
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    csv_path = args.data / "labels.csv"
    model = radzoo.load(args.model, random_weights=args.random_weights, seed=args.seed, runtime=args.runtime)
    print(f"model {model.name} (random weights: {model.random_init}, runtime {model.runtime.name})")
    data = read_labels(csv_path, LABELS)

    # ---- 1. heads with calibration and operating points; agreement with radzoo eval ------------------
    start = time.perf_counter()
    result = train_head(model, data, out / "head", n_boot=args.bootstrap, baselines=["raw-pixels"],
                        cache=out / "cache", overwrite=True)
    train_s = time.perf_counter() - start
    doc = result.document
    print(f"\n## 1. heads on {doc['data']['n_rows']} images ({train_s:.1f} s incl. embedding)\n")
    print(doc["cv"]["markdown"])
    print("| label | prevalence | calibration | ECE before | ECE after | Brier before | Brier after |")
    print("|---|---|---|---|---|---|---|")
    for label in doc["labels"]:
        h = doc["heads"][label]
        rb, ra = h["reliability"]["before"], h["reliability"]["after"]
        print(f"| {label} | {h['prevalence']:.3f} | {h['calibration']['method']} | {rb['ece']:.3f} | {ra['ece']:.3f} | "
              f"{rb['brier']:.3f} | {ra['brier']:.3f} |")
    print()
    print(result.summary())
    report = linear_probe(model, data, n_boot=args.bootstrap, cache=out / "cache")
    for label in doc["labels"]:
        a = doc["heads"][label]["cv_auroc"]["value"]
        b = report.result("model").metrics[f"{label}/auroc"].value
        print(f"agreement {label}: head CV AUROC {a:.6f}, radzoo eval linear-probe {b:.6f}, |diff| {abs(a - b):.2e}")

    # ---- 2. run-time cost -------------------------------------------------------------------------
    from radzoo.extract import extract_features
    from radzoo.heads import read_head

    head = read_head(out / "head")
    images = [str(p) for p in data.paths]
    times = {}
    for name, kwargs in (("plain", {}), ("with head", {"head": out / "head"})):
        folder = out / f"extract-{name.replace(' ', '-')}"
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        extract_features(model, images, folder, quiet=True, workers=0, **kwargs)
        times[name] = time.perf_counter() - start
    x = np.random.default_rng(0).standard_normal((len(images), head.base["dim"])).astype(np.float32)
    reps = 200
    start = time.perf_counter()
    for _ in range(reps):
        probabilities(head, x)
    head_s = (time.perf_counter() - start) / reps
    print(f"\n## 2. run-time cost\n\nextract of {len(images)} images: {times['plain']:.2f} s plain, "
          f"{times['with head']:.2f} s with --head; the head itself on {len(images)} embeddings: "
          f"{head_s * 1e3:.3f} ms = {100 * head_s / times['plain']:.4f}% of the plain extraction")
    print(_serving_latency(args, out, images[:1]))

    # ---- 3. data efficiency -----------------------------------------------------------------------
    curve = _data_efficiency(model, csv_path, out, args)
    (out / "summary.json").write_text(json.dumps({"train_seconds": train_s, "extract_seconds": times,
                                                   "head_seconds_per_201": head_s, "data_efficiency": curve},
                                                  indent=2) + "\n")
    return 0


def _serving_latency(args: argparse.Namespace, out: Path, images: list[str]) -> str:
    from radzoo.serving.endpoints import Endpoints
    from radzoo.serving.settings import ServeSettings

    settings = ServeSettings(models=(args.model,), random_weights=args.random_weights, runtime=args.runtime,
                             heads=(str(out / "head"),))
    endpoints = Endpoints(settings)
    b64 = base64.b64encode(Path(images[0]).read_bytes()).decode()
    calls = {"/v1/embeddings": lambda: endpoints.embeddings({"input": [b64]}),
             "/classify": lambda: endpoints.classify({"input": [b64]})}
    for fn in calls.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(20):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    endpoints.close()
    med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    return (f"in-process latency, 1 image, median of 20 interleaved: /v1/embeddings {med['/v1/embeddings']:.1f} ms, "
            f"/classify {med['/classify']:.1f} ms (ratio {med['/classify'] / med['/v1/embeddings']:.3f})")


def _data_efficiency(model, csv_path: Path, out: Path, args: argparse.Namespace) -> dict:
    """A given split (80 test patients); label fractions of the 121 training patients = 25/50/100/all."""
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = list(reader.fieldnames or []), list(reader)
    rng = np.random.default_rng(args.seed)
    patients = sorted({r["patient_id"] for r in rows})
    test = set(rng.choice(patients, size=80, replace=False).tolist())
    for r in rows:
        r["split"] = "test" if r["patient_id"] in test else "train"
        r["path"] = str((csv_path.parent / r["path"]).resolve())
    split_csv = out / "labels_split.csv"
    with open(split_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*header, "split"])
        w.writeheader()
        w.writerows(rows)
    n_train = len(patients) - len(test)
    fractions = [s / n_train for s in SIZES] + [1.0]
    data = read_labels(split_csv, LABELS, split_column="split")
    report = linear_probe(model, data, settings=ProbeSettings(fractions=fractions, draws=3), n_boot=args.bootstrap,
                          cache=out / "cache")
    curve: dict[str, list[dict]] = {}
    print(f"\n## 3. data efficiency (test: {len(test)} patients; training pool {n_train} patients)\n")
    print("| label | patients | test AUROC [95% CI] |\n|---|---|---|")
    for label in data.labels:
        for size, fraction in zip([*SIZES, n_train], fractions, strict=True):
            est = report.result("model", fraction).metrics[f"{label}/auroc"]
            curve.setdefault(label, []).append({"patients": size, "auroc": est.value, "ci": [est.low, est.high]})
            print(f"| {label} | {size} | {est.text()} |")
    _figure(curve, out / "data_efficiency.png", model)
    print(f"\nfigure: {out / 'data_efficiency.png'}")
    return curve


def _figure(curve: dict, path: Path, model) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    for label, points in curve.items():
        n = [p["patients"] for p in points]
        auc = np.asarray([p["auroc"] for p in points])
        lo = np.asarray([p["ci"][0] for p in points])
        hi = np.asarray([p["ci"][1] for p in points])
        ax.errorbar(n, auc, yerr=[auc - lo, hi - auc], marker="o", capsize=3, label=label)
    ax.axhline(0.5, ls=":", color="grey", lw=1, label="chance")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks([p["patients"] for p in next(iter(curve.values()))])
    ax.set_xticklabels([str(p["patients"]) for p in next(iter(curve.values()))])
    ax.set_xlabel("labelled training patients")
    ax.set_ylabel("test AUROC (95% patient-bootstrap CI)")
    rnd = " (RANDOM weights)" if model.random_init else ""
    ax.set_title(f"data efficiency: {model.name}{rnd}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
