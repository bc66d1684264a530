"""Timing helpers shared by the benchmark scripts (``python benchmarks/X.py`` puts this folder on the path)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def rate(fn: Callable[[], Any], items: int, seconds: float, repeats: int = 3) -> float:
    """Median items/s over ``repeats`` windows of at least ``seconds / repeats`` (after a warm-up)."""
    fn()
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / repeats and n >= 1:
                break
        rates.append(n * items / elapsed)
    return statistics.median(rates)


def rates_interleaved(fns: dict[str, tuple[Callable[[], Any], float]], seconds: float, repeats: int = 3) -> dict[str, float]:
    """Median items/s of each ``name -> (fn, items per call)``, measured in round-robin windows.

    The machine's speed drifts (other tenants, clocks): measuring one configuration after the other
    would put that drift into the ratios; interleaving the windows spreads it over all of them."""
    for fn, _ in fns.values():
        fn()  # warm-up
    window = seconds / repeats
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (fn, items) in fns.items():
            n, start = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= window:
                    break
            samples[name].append(n * items / elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}
