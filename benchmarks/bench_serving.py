"""Service throughput vs model-only throughput, measured in the same run.

A random-weight ResNet50 (``mococxr_resnet50``, built with ``radzoo.build`` and saved to a temporary
RADZOO_HOME; exported to ONNX when radzoo.onnx is available) is served by the real HTTP service
(``radzoo serve``). Clients send one PNG per request at concurrency 1, 4 and 16; we report
images/s and p50/p99 latency, and the ratio to the model-only images/s of the SAME runtime
(preprocessed batches straight into ``embed_batch``; no decode, no HTTP).

    python benchmarks/bench_serving.py [--runtime auto|torch|onnx] [--requests 48] [--images DIR]

Goal: at concurrency 16 the service delivers >= 80% of model-only images/s on a 2-core CPU.
The machine is shared: compare the ratios, not the absolute numbers, and repeat when noisy.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

import radzoo

MODEL = "mococxr_resnet50"
REPO = Path(__file__).resolve().parents[1]


def find_images(given: str | None) -> list[Path]:
    candidates = [Path(given)] if given else []
    candidates += [REPO.parent / "shared" / "data" / "cxr_nih" / "images"]
    for folder in candidates:
        found = sorted(folder.glob("*.png"))[:16]
        if found:
            return found
    sys.exit("no PNG images found: pass --images DIR")


def prepare_home(home: Path, runtime: str) -> str:
    from radzoo import zoo

    target = home / "models" / MODEL
    zoo.save(radzoo.build(MODEL), target)
    if runtime in ("auto", "onnx"):
        try:
            from radzoo.artifacts import export_artifact
        except ImportError:
            if runtime == "onnx":
                raise
            return "torch"
        t = time.perf_counter()
        export_artifact(target, outputs=["trunk"])
        print(f"exported ONNX in {time.perf_counter() - t:.1f} s")
        return "onnx"
    return "torch"


def model_only(home: Path, runtime: str, images: list[Path], batch_sizes: tuple[int, ...], seconds: float) -> dict[int, float]:
    """images/s of ``embed_batch`` on preprocessed batches; key 0: the whole in-process pipeline
    (read + preprocess + infer, one image at a time), i.e. the service minus HTTP."""
    from radzoo.io import read_image

    model = radzoo.load(home / "models" / MODEL, runtime=runtime)
    out: dict[int, float] = {}
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.embed_batch(model.prepare([read_image(images[n % len(images)].read_bytes())]).numpy())
        n += 1
    out[0] = n / (time.perf_counter() - start)
    for b in batch_sizes:
        batch = model.prepare([images[i % len(images)] for i in range(b)]).numpy()
        model.embed_batch(batch)  # warm-up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model.embed_batch(batch)
            n += b
        out[b] = n / (time.perf_counter() - start)
    return out


def start_server(home: Path, runtime: str, model: str = MODEL, extra_env: dict[str, str] | None = None,
                 log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``radzoo serve`` on a free port in its own process group, once ``/readyz`` answers; the
    benchmark exits with the end of the server's log if it dies or never gets ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RADZOO_HOME": str(home), "BENTOML_HOME": str(home / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "True", "RADZOO_MAX_IN_FLIGHT": "64", **(extra_env or {})}
    log = log or home / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "radzoo.cli", "serve", "--port", str(port), "--models", model, "--runtime", runtime],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(900):
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}; its log ends:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop(proc)
    sys.exit(f"server did not become ready; its log ends:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def load_test(url: str, payloads: list[str], concurrency: int, n_requests: int) -> dict[str, float]:
    def one(i: int) -> float:
        t = time.perf_counter()
        r = session_for().post(url + "/v1/embeddings", json={"model": MODEL, "input": [payloads[i % len(payloads)]]}, timeout=300)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        return time.perf_counter() - t

    import threading

    local = threading.local()

    def session_for() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return local.s

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm-up round
        start = time.perf_counter()
        latencies = list(pool.map(one, range(n_requests)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"img_s": n_requests / wall, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "mean_ms": statistics.fmean(latencies) * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"])
    ap.add_argument("--requests", type=int, default=48, help="requests per concurrency level (>= 16)")
    ap.add_argument("--model-seconds", type=float, default=8.0, help="seconds per model-only batch size")
    ap.add_argument("--images")
    args = ap.parse_args()
    images = find_images(args.images)
    payloads = [base64.b64encode(p.read_bytes()).decode() for p in images]
    with tempfile.TemporaryDirectory(prefix="radzoo-bench-") as tmp:
        home = Path(tmp)
        runtime = prepare_home(home, args.runtime)
        print(f"model {MODEL} (random weights), runtime {runtime}, {os.cpu_count()} CPUs, {len(images)} PNGs")
        # model-only before AND after the service runs (never at the same time): the mean of the two
        # cancels slow drifts of foreign load on a shared machine
        before = model_only(home, runtime, images, (1, 8), args.model_seconds)
        proc, url = start_server(home, runtime)
        try:
            served = {c: load_test(url, payloads, c, max(args.requests, c)) for c in (1, 4, 16)}
        finally:
            stop(proc)
        after = model_only(home, runtime, images, (1, 8), args.model_seconds)
    ref = {b: (before[b] + after[b]) / 2 for b in before}
    best = max(ref[1], ref[8])
    print(f"\nmodel-only ({runtime}, before/after): " + ", ".join(
        f"batch {b}: {before[b]:.2f}/{after[b]:.2f} img/s" for b in (1, 8)))
    print(f"in-process pipeline (read + preprocess + infer, 1 image): {before[0]:.2f}/{after[0]:.2f} img/s")
    print(f"{'concurrency':>11} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs model b=1':>13} {'vs best model':>14}")
    for c, r in served.items():
        print(f"{c:>11} {r['img_s']:>8.2f} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} "
              f"{r['img_s'] / ref[1]:>13.2f} {r['img_s'] / best:>14.2f}")
    ratio = served[16]["img_s"] / best
    print(f"\nconcurrency 16: {ratio:.0%} of the best model-only throughput (goal >= 80%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
