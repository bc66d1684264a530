"""Serving memory over time: the server's RSS every N requests after a warm-up.

A real ``radzoo serve`` (its own process group, 127.0.0.1, a free port) serves a random-weight
model from a temporary RADZOO_HOME; clients send bounded requests (one to ``--max-items`` PNGs
each, at ``--concurrency``) and we print the RSS of the server's whole process tree every
``--every`` requests. Goal: after ``--warmup`` (500) requests, RSS grows < 3% over the next
``--requests`` (5,000). The server's process group is stopped at the end, whatever happened.

    python benchmarks/bench_serving_soak.py [--model mococxr_resnet50] [--runtime auto]
        [--warmup 500] [--requests 5000] [--every 500] [--concurrency 4] [--env NAME=VALUE ...]

``--env`` passes extra variables to the server (e.g. ``MALLOC_ARENA_MAX=8`` to compare allocator
settings). On a shared machine the timing varies; the RSS curve does not depend on it.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

import radzoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import find_images, start_server, stop  # noqa: E402  (benchmarks/ is not a package)


def prepare_home(home: Path, model: str, runtime: str) -> None:
    from radzoo import zoo
    from radzoo.zoo.tiny import tiny_specs

    spec = tiny_specs().get(model, model)
    target = home / "models" / model
    zoo.save(radzoo.build(spec), target)
    if runtime in ("auto", "onnx"):
        from radzoo.artifacts import export_artifact

        export_artifact(target, outputs=["trunk"])


def tree_rss_mb(pid: int) -> dict[int, float]:
    """RSS (MB) of the process and each of its descendants (BentoML serves from child processes)."""
    root = psutil.Process(pid)
    out = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            out[p.pid] = p.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mococxr_resnet50", help="registry or tiny-random-* name (random weights)")
    ap.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"])
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-items", type=int, default=3, help="images per request cycle through 1..max-items")
    ap.add_argument("--images")
    ap.add_argument("--env", nargs="*", default=[], help="NAME=VALUE for the server's environment")
    args = ap.parse_args()
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    images = find_images(args.images)
    payloads = [base64.b64encode(p.read_bytes()).decode() for p in images]
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        items = [payloads[(i + k) % len(payloads)] for k in range(1 + i % args.max_items)]
        r = local.s.post(url + "/v1/embeddings", json={"model": args.model, "input": items}, timeout=300)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")

    with tempfile.TemporaryDirectory(prefix="radzoo-soak-") as tmp:
        home = Path(tmp)
        prepare_home(home, args.model, args.runtime)
        proc, url = start_server(home, args.runtime, args.model, extra_env, home / "server.log")
        print(f"model {args.model} (random weights), runtime {args.runtime}, {os.cpu_count()} CPUs, "
              f"concurrency {args.concurrency}, 1-{args.max_items} images/request, env {extra_env or '{}'}", flush=True)
        try:
            curve: list[tuple[int, float]] = [(0, sum(tree_rss_mb(proc.pid).values()))]
            done, start = 0, time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                for target in [args.warmup, *range(args.warmup + args.every, args.warmup + args.requests + 1, args.every)]:
                    list(pool.map(one, range(done, target)))
                    done = target
                    per_process = tree_rss_mb(proc.pid)
                    curve.append((done, sum(per_process.values())))
                    print(f"{done:>6} requests  RSS {curve[-1][1]:8.1f} MB  ({time.perf_counter() - start:6.0f} s)  "
                          "per process: " + ", ".join(f"{mb:.0f}" for mb in per_process.values()), flush=True)
        finally:
            stop(proc)
    base = next(rss for n, rss in curve if n == args.warmup)
    growth = (curve[-1][1] - base) / base
    print(f"\nafter {args.warmup} warm-up requests: {base:.1f} MB -> {curve[-1][1]:.1f} MB over the next "
          f"{curve[-1][0] - args.warmup} ({growth:+.1%}; goal < +3%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
