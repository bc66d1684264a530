"""Zero-shot with cached vs freshly computed prompt embeddings (tiny random PRIOR, one image).

Prints the time per call of both and their ratio, measured in the same run. Usage:
    python benchmarks/zeroshot_prompt_cache.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

import radzoo


def main() -> None:
    from radzoo.zoo.tiny import tiny_specs, write_test_vocab

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = radzoo.build(tiny_specs()["tiny-random-prior"], tokenizer=write_test_vocab(tmp))
        image = (np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)
        model.zero_shot([image])  # warm-up

        def run(clear: bool) -> float:
            times = []
            for _ in range(args.repeats):
                if clear:
                    for key in [k for k in model._cache if isinstance(k, tuple)]:
                        del model._cache[key]
                t = time.perf_counter()
                model.zero_shot([image])
                times.append(time.perf_counter() - t)
            return float(np.median(times))

        fresh, cached = run(True), run(False)
    print(f"uncached prompts: {fresh * 1e3:.1f} ms/call, cached: {cached * 1e3:.1f} ms/call, "
          f"speed-up {fresh / cached:.2f}x (tiny model, 5 prompts at max_length 32)")


if __name__ == "__main__":
    main()
