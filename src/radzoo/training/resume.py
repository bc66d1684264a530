"""Resume checkpoints: the whole training state as safetensors + one JSON pointer, written atomically.

A checkpoint directory holds ``state.json`` and the tensor file it names
(``state-<n>.safetensors``: model incl. key encoder and queue, optimiser moments). Everything
else (epoch, step, stage, schedule position, loss scaler, the resolved config) is JSON inside
``state.json``. A save writes a *new* tensor file first and then replaces ``state.json`` in one
``os.replace``; only after that is the previous tensor file deleted. A crash or a full disk at
any point therefore leaves the previous checkpoint complete and loadable, never a half-written
one. ``state.json`` records the tensor file's sha256, so a damaged file is detected, not loaded.
No pickle is written or read.

Nothing in a checkpoint depends on the number of processes: DDP keeps one copy of the weights
and optimiser state, rank 0 writes it, and any world size can load it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from radzoo.errors import ArtifactError
from radzoo.zoo.weights import sha256_file

META = "state.json"
FORMAT = "radzoo.training.resume/2"
_TENSORS = re.compile(r"^state-(\d{8})\.safetensors$")


def has_training_state(directory: str | os.PathLike[str]) -> bool:
    return (Path(directory) / META).is_file()


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _current_index(directory: Path) -> int:
    meta = directory / META
    if meta.is_file():
        with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError, OSError):
            m = _TENSORS.match(str(json.loads(meta.read_text()).get("tensors_file", "")))
            if m:
                return int(m.group(1))
    found = [int(m.group(1)) for p in directory.glob("state-*.safetensors") if (m := _TENSORS.match(p.name))]
    return max(found, default=0)


def _write_failed(directory: Path, what: Path, exc: BaseException) -> ArtifactError:
    reason = getattr(exc, "strerror", None) or str(exc)
    full = "no space left" in reason.lower() or "too large" in reason.lower()
    hint = "free disk space (or point --out elsewhere) and resume" if full else "check the directory and resume"
    keep = f"the previous checkpoint in {directory} is intact" if has_training_state(directory) else "no checkpoint was written"
    return ArtifactError(f"could not write checkpoint file {what}: {reason}; {keep}; {hint}")


def save_training_state(
    directory: str | os.PathLike[str],
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
) -> Path:
    """Write module + optimiser state and ``meta`` (JSON values) into ``directory`` atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in opt["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    previous = _current_index(directory)
    name = f"state-{previous + 1:08d}.safetensors"
    target = directory / name
    tmp = directory / (name + ".tmp")
    tmp_meta = directory / (META + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        _fsync(tmp)
        os.replace(tmp, target)
        record = {
            "format": FORMAT,
            "tensors_file": name,
            "tensors_sha256": sha256_file(target),
            "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
            **meta,
        }
        tmp_meta.write_text(json.dumps(record, indent=2) + "\n")
        _fsync(tmp_meta)
        os.replace(tmp_meta, directory / META)
    except (OSError, SafetensorError) as exc:
        for p in (tmp, tmp_meta):
            with contextlib.suppress(OSError):
                p.unlink()
        if not (directory / META).is_file() or json.loads((directory / META).read_text()).get("tensors_file") != name:
            with contextlib.suppress(OSError):
                target.unlink()
        raise _write_failed(directory, tmp, exc) from exc
    for old in directory.glob("state-*.safetensors"):
        if old.name != name:
            with contextlib.suppress(OSError):
                old.unlink()
    return directory


def read_training_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked ``state.json`` record of a checkpoint (format and tensor digest verified)."""
    directory = Path(directory)
    meta_path = directory / META
    if not meta_path.is_file():
        raise ArtifactError(f"no resume checkpoint in {directory} (expected {META})")
    try:
        record = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
    if record.get("format") != FORMAT:
        raise ArtifactError(f"{meta_path}: unknown checkpoint format {record.get('format')!r} (expected {FORMAT})")
    state_path = directory / str(record.get("tensors_file", ""))
    if not _TENSORS.match(state_path.name) or not state_path.is_file():
        raise ArtifactError(f"{meta_path} names tensor file {state_path.name!r}, which is missing; delete {directory} to restart")
    if sha256_file(state_path) != record.get("tensors_sha256"):
        raise ArtifactError(f"{state_path} does not match {meta_path} (damaged file?); delete {directory} to restart")
    return record


def load_training_state(
    directory: str | os.PathLike[str], module: nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Restore module (strictly) and, when given, the optimiser; return the saved ``meta``."""
    from radzoo.zoo.weights import load_strict

    directory = Path(directory)
    record = read_training_meta(directory)
    state_path = directory / record["tensors_file"]
    tensors = load_file(str(state_path), device="cpu")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_strict(module, model_state, f"resume checkpoint {state_path}")
    if optimizer is not None:
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value
        for pid, entries in record["optimizer"]["scalars"].items():
            state.setdefault(int(pid), {}).update(entries)
        groups = [
            {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
            for g in record["optimizer"]["param_groups"]
        ]
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError) as exc:
            raise ArtifactError(f"optimiser state in {directory} does not fit this model: {exc}") from exc
    return {k: v for k, v in record.items() if k not in ("format", "tensors_file", "tensors_sha256", "optimizer")}
