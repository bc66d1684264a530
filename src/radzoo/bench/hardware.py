"""What a throughput number was measured on: CPU model and flags, cores, GPUs, library versions."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from typing import Any

#: CPU flags that decide which kernels onnxruntime and oneDNN can use.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
_LIBRARIES = ("radzoo", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "pillow", "pydicom",
              "nvidia-nvimgcodec-cu12", "nvidia-nvimgcodec-cu13")


def cpu_info() -> dict[str, Any]:
    """Model name and the relevant flags from ``/proc/cpuinfo`` (Linux), else ``platform``."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        text = ""
    if m := re.search(r"^model name\s*:\s*(.+)$", text, re.M):
        model = m.group(1).strip()
    if m := re.search(r"^flags\s*:\s*(.+)$", text, re.M):
        flags = set(m.group(1).split())
    family = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.M)
    number = re.search(r"^model\s*:\s*(\d+)$", text, re.M)
    return {
        "model": model,
        "family": int(family.group(1)) if family else None,
        "model_number": int(number.group(1)) if number else None,
        "flags": [f for f in CPU_FLAGS if f in flags],
    }


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def describe_machine() -> dict[str, Any]:
    """The hardware record a benchmark result carries (``name`` is what the model card shows)."""
    import torch

    cpu = cpu_info()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    try:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
    except ImportError:
        providers = []
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        pass
    name = gpus[0] if gpus else cpu["model"]
    return {
        "name": f"{name} ({', '.join(cpu['flags'][-3:])})" if not gpus and cpu["flags"] else name,
        "cpu": cpu,
        "cores": cores(),
        "memory_gib": memory,
        "gpus": gpus,
        "onnxruntime_providers": providers,
        "platform": platform.platform(),
    }
