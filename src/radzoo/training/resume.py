"""Resume checkpoints: the whole training state as ``state.safetensors`` + ``state.json``.

Tensors (model incl. key encoder and queue, optimiser moments) go to safetensors; everything
else (epoch, step, optimiser hyperparameters, the resolved config) to JSON. No pickle is written
or read. ``state.json`` is written last and records the tensor file's sha256, so a half-written
checkpoint is detected instead of loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from radzoo.errors import ArtifactError
from radzoo.zoo.weights import sha256_file

STATE = "state.safetensors"
META = "state.json"
FORMAT = "radzoo.training.resume/1"


def has_training_state(directory: str | os.PathLike[str]) -> bool:
    return (Path(directory) / META).is_file()


def save_training_state(
    directory: str | os.PathLike[str],
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
) -> Path:
    """Write module + optimiser state and ``meta`` (JSON values) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"model.{k}": v.detach().to("cpu").contiguous().clone()
        for k, v in module.state_dict().items()
    }
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in opt["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    tmp = directory / (STATE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, directory / STATE)
    record = {
        "format": FORMAT,
        "tensors_sha256": sha256_file(directory / STATE),
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        **meta,
    }
    tmp_meta = directory / (META + ".tmp")
    tmp_meta.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp_meta, directory / META)
    return directory


def load_training_state(
    directory: str | os.PathLike[str], module: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore module (strictly) and optimiser from ``directory``; return the saved ``meta``."""
    from radzoo.zoo.weights import load_strict

    directory = Path(directory)
    meta_path, state_path = directory / META, directory / STATE
    if not meta_path.is_file() or not state_path.is_file():
        raise ArtifactError(f"no resume checkpoint in {directory} (expected {META} and {STATE})")
    try:
        record = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
    if record.get("format") != FORMAT:
        raise ArtifactError(
            f"{meta_path}: unknown checkpoint format {record.get('format')!r} (expected {FORMAT})"
        )
    if sha256_file(state_path) != record.get("tensors_sha256"):
        raise ArtifactError(
            f"{state_path} does not match {meta_path} (interrupted write?); delete {directory} to restart"
        )
    tensors = load_file(str(state_path), device="cpu")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_strict(module, model_state, f"resume checkpoint {state_path}")
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
        raise ArtifactError(
            f"optimiser state in {directory} does not fit this model: {exc}"
        ) from exc
    return {k: v for k, v in record.items() if k not in ("format", "tensors_sha256", "optimizer")}
