"""The default batch size of extraction and serving: the best batch ``radzoo bench`` measured here.

The best batch depends on the precision and the machine (measured on a 2-core Sapphire Rapids CPU:
``mococxr_resnet50`` bf16 runs 20 img/s at batch 1, 30-33 at batch 8 and 18-19 at batch 32; fp32
onnxruntime is flat at 17-18), so no single constant fits. ``radzoo bench`` records its best
batch per model, runtime, precision and machine in ``$RADZOO_HOME/bench/best_batches.json``;
:func:`default_batch` returns it, or else the rule below, and always says where the number came
from (``radzoo extract`` logs it and writes it to the manifest; ``radzoo serve`` shows it in
``/models``). An explicit batch size (``--batch-size``, ``RADZOO_MAX_BATCH_SIZE``) always wins.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radzoo.zoo.home import radzoo_home

#: Without a bench record: CPUs peak at small batches (bf16 at 8, fp32 flat from 1 to 32), so 8
#: costs fp32 nothing and gives bf16 its best; GPUs need larger batches to fill the device.
RULE = {"cpu": 8, "cuda": 32}
RULE_OTHER = 8


@dataclass(frozen=True)
class BatchChoice:
    """A default batch size and where it came from (shown to users)."""

    size: int
    source: str


def record_path() -> Path:
    """``$RADZOO_HOME/bench/best_batches.json``."""
    return radzoo_home() / "bench" / "best_batches.json"


def machine_of(device: Any) -> str:
    """What a batch choice is valid on: the GPU name for CUDA, else the CPU model and core count."""
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        index = getattr(device, "index", None) or 0
        return f"cuda {torch.cuda.get_device_name(index)}"
    cpu = platform.processor() or platform.machine()
    try:
        if m := re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M):
            cpu = m.group(1).strip()
    except OSError:
        pass
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return f"{kind} {cpu} x{n}"


def _key(model: str, runtime: str, precision: str, machine: str) -> str:
    return f"{model}|{runtime}|{precision}|{machine}"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_best(entries: list[dict[str, Any]]) -> Path:
    """Merge ``entries`` (model, runtime, precision, device, batch, items_per_s, date) into the
    record, one per model/runtime/precision/machine, replacing older runs of the same key."""
    path = record_path()
    data = _read()
    for e in entries:
        machine = machine_of(e["device"])
        data[_key(e["model"], e["runtime"], e["precision"], machine)] = {**e, "machine": machine}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".best_batches.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def default_batch(model: str, runtime: str, precision: str, device: Any) -> BatchChoice:
    """The batch size to use when none was given: the bench record for this model, runtime,
    precision and machine, else :data:`RULE` for the device type."""
    entry = _read().get(_key(model, runtime, precision, machine_of(device)))
    if entry and isinstance(entry.get("batch"), int) and entry["batch"] >= 1:
        return BatchChoice(entry["batch"], f"radzoo bench {entry.get('date', '')} on this machine "
                                           f"({entry.get('items_per_s', 0):.1f} {entry.get('unit', 'img/s')}; "
                                           f"{record_path()})")
    kind = str(device).split(":")[0]
    size = RULE.get(kind, RULE_OTHER)
    return BatchChoice(size, f"rule for {kind} ({size}; no radzoo bench record for {model} {runtime}/{precision} "
                             f"on this machine: run `radzoo bench {model} --precision {precision}` to measure it)")
