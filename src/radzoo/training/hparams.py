"""Training configuration: one dataclass per method with the paper's defaults.

A run is configured by a flat JSON or TOML file (``key = value`` pairs, no nesting) plus
``key=value`` overrides from the command line; the resolved config is written next to the
output so a run can be repeated. Each field carries its explanation in ``metadata["help"]``
(shown by ``radzoo train <method> --help``). This module imports no torch.
"""

from __future__ import annotations

import difflib
import json
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from radzoo.errors import InputError


class ConfigError(InputError):
    """A config file, key or value is unusable; the message names the file and the key."""


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's wording
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class RunConfig:
    """How a run is executed, shared by every method: seeds, devices, processes, precision, logs.

    These keys change nothing about the method itself; several of them (``device``, ``precision``,
    ``num_workers``, ``max_steps``, logging and checkpoint frequency) may change when a run is
    resumed. The number of processes is not a key: ``torchrun --nproc-per-node N`` sets it, and
    ``batch_size`` is always the *global* batch, split evenly over the processes.
    """

    seed: int = _f(0, "seed for init, shuffling, augmentation and noise (same data order at any world size)")
    device: str = _f(
        "auto",
        "auto | cpu | cuda | cuda:N; under torchrun, auto/cuda give each process cuda:<LOCAL_RANK>",
    )
    precision: str = _f(
        "auto",
        "32 | bf16 | fp16 | auto: bf16 autocast (CPU or GPU), fp16 autocast + GradScaler (GPU only); "
        "auto = the paper's setting on a GPU, 32 on CPU",
    )
    dist_backend: str = _f("auto", "torch.distributed backend under torchrun: auto (nccl on GPU, gloo on CPU) | gloo | nccl")
    num_workers: int = _f(0, "DataLoader worker processes per training process (0 = read in the training process)")
    max_steps: int = _f(0, "stop after this many optimiser steps in total (0 = no limit; smoke runs)")
    checkpoint_every: int = _f(1, "write a resume checkpoint every N epochs (0 = only at the end)")
    checkpoint_every_steps: int = _f(0, "also write one every N optimiser steps, mid-epoch (0 = off)")
    log_every: int = _f(10, "log the loss every N optimiser steps (metrics.jsonl gets every step)")
    progress: bool = _f(True, "show a progress bar on the terminal (rank 0 only)")
    sync_bn: bool = _f(False, "SyncBatchNorm across processes (GPUs only)")

    method = "run"

    def __post_init__(self) -> None:
        from radzoo.training.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.dist_backend not in ("auto", "gloo", "nccl"):
            raise ConfigError(f"dist_backend: must be auto, gloo or nccl, got {self.dist_backend!r}")
        for name in ("num_workers", "max_steps", "checkpoint_every", "checkpoint_every_steps", "log_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


#: Keys of :class:`RunConfig` (plus ``epochs``) that may change when a run is resumed.
RESUMABLE_KEYS = frozenset(
    {"epochs", "device", "precision", "dist_backend", "num_workers", "max_steps", "log_every",
     "checkpoint_every", "checkpoint_every_steps", "progress"}
)


@dataclass
class MoCoCXRConfig(RunConfig):
    """MoCo v2 as MoCo-CXR ran it (METHODS 1.3-1.4; main_moco.py and the training scripts)."""

    arch: str = _f("resnet18", "trunk: resnet18 | resnet50 | densenet121 (zoo spec mococxr_<arch>)")
    init: str = _f(
        "imagenet",
        "initial trunk weights: 'imagenet' (torchvision IMAGENET1K_V1, as --from-imagenet), "
        "'random', or a zoo model name / artifact directory whose trunk is copied",
    )
    image_size: int = _f(
        320,
        "Resize(size) shorter side, then RandomCrop(size); the saved spec's "
        "inference resize/crop follow it",
    )
    proj_dim: int = _f(
        128, "MoCo head output width (--moco-dim 128; head = Linear-ReLU-Linear, --mlp)"
    )
    moco_k: int = _f(24576, "queue length K (negatives); code default, no script overrides it")
    moco_m: float = _f(
        0.999, "key-encoder momentum m: key = m*key + (1-m)*query after each optimiser step"
    )
    moco_t: float = _f(
        0.2, "softmax temperature T (--moco-t 0.2 in every script; code default 0.07)"
    )
    epochs: int = _f(20, "training epochs")
    batch_size: int = _f(
        24,
        "global images per step, split over the processes (24 default/generator script, 16 in "
        "r8w1n416; one GPU under DDP); last incomplete batch dropped",
    )
    lr: float = _f(1e-4, "Adam learning rate (1e-4 for the released best runs)")
    beta1: float = _f(0.9, "Adam beta1")
    beta2: float = _f(0.999, "Adam beta2")
    weight_decay: float = _f(1e-4, "Adam weight decay (L2, as torch.optim.Adam applies it)")
    schedule: tuple[int, ...] = _f(
        (12, 18), "epochs at which lr is multiplied by lr_gamma (--schedule 12 18 24)"
    )
    lr_gamma: float = _f(0.1, "step-decay factor")
    rotation: float = _f(10.0, "RandomRotation max degrees")
    flip_p: float = _f(0.5, "RandomHorizontalFlip probability")
    keep_head: bool = _f(
        False,
        "also export the 128-d head (outputs 'trunk' and 'proj'); the zoo "
        "spec exports the trunk only",
    )
    accumulate: int = _f(
        1, "micro-batches per optimiser step (gradient accumulation; 1 = the paper)"
    )

    method = "mococxr"
    #: what precision=auto means on a GPU (the original trained in fp32)
    paper_precision = "32"

    def __post_init__(self) -> None:
        from radzoo.zoo.registry import is_registered

        super().__post_init__()
        self.schedule = tuple(int(v) for v in self.schedule)
        if not is_registered(f"mococxr_{self.arch}"):
            raise ConfigError(
                f"arch: {self.arch!r} has no zoo spec mococxr_{self.arch}; use resnet18, resnet50 or densenet121"
            )
        _positive(self, "image_size", "proj_dim", "moco_k", "epochs", "accumulate", "lr", "moco_t")
        if self.batch_size < 2:
            raise ConfigError(
                f"batch_size: must be >= 2 (BatchNorm and contrastive pairs), got {self.batch_size}"
            )
        if not 0.0 <= self.moco_m <= 1.0:
            raise ConfigError(f"moco_m: momentum must be in [0, 1], got {self.moco_m}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ConfigError(f"flip_p: must be in [0, 1], got {self.flip_p}")
        for name in ("weight_decay", "rotation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if list(self.schedule) != sorted(self.schedule):
            raise ConfigError(f"schedule: milestones must be increasing, got {list(self.schedule)}")


#: Method name -> config class (one per implemented method).
CONFIGS: dict[str, type] = {"mococxr": MoCoCXRConfig}

C = TypeVar("C")


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name}: must be > 0, got {getattr(cfg, name)}")


def config_help(cls: type) -> dict[str, tuple[Any, str]]:
    """``{key: (default, help)}`` for a config class (CLI help and docs)."""
    out = {}
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = (default, f.metadata.get("help", ""))
    return out


def _types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown(cls: type, key: str, where: str) -> ConfigError:
    names = [f.name for f in fields(cls)]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(
        f"unknown {getattr(cls, 'method', cls.__name__)} config key {key!r} in {where}{hint} "
        f"(known keys: {', '.join(names)})"
    )


def _coerce(cls: type, key: str, value: Any, where: str) -> Any:
    """Turn a file value or an override string into the field's type, or say why not."""
    typ = _types(cls)[key]
    text = isinstance(value, str)
    bad = ConfigError(f"{key} in {where}: expected {_type_name(typ)}, got {value!r}")
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if text and value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if text and value.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise bad
        if typ is int:
            if isinstance(value, bool):
                raise bad
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if text:
                return int(value.strip())
            raise bad
        if typ is float:
            if isinstance(value, bool):
                raise bad
            if isinstance(value, (int, float)):
                return float(value)
            if text:
                return float(value.strip())
            raise bad
        if typ is str:
            if text:
                return value
            raise bad
        if typing.get_origin(typ) is tuple:
            items = [v for v in value.split(",") if v.strip()] if text else value
            if not isinstance(items, (list, tuple)):
                raise bad
            return tuple(_coerce_item(int, v, bad) for v in items)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise bad from None
    raise ConfigError(f"{key}: unsupported field type {_type_name(typ)}")


def _coerce_item(typ: type, value: Any, bad: ConfigError) -> Any:
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        return typ(value.strip())
    if isinstance(value, (int, float)) and float(value).is_integer():
        return typ(value)
    raise bad


def _type_name(typ: Any) -> str:
    if typing.get_origin(typ) is tuple:
        return "a list of integers (file: [12, 18]; command line: 12,18)"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        typ, str(typ)
    )


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a flat ``.json`` or ``.toml`` file into a dict (no validation against a class)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(path.read_text())
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text())
        else:
            raise ConfigError(
                f"config file {path}: use a .json or .toml file, not {suffix or 'no suffix'!r}"
            )
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold one object of key/value pairs")
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(
                f"config file {path}: key {key!r} is a table; configs are flat key = value pairs"
            )
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["--lr=1e-3", "epochs=2"]`` -> ``{"lr": "1e-3", "epochs": "2"}`` (dashes in keys become underscores)."""
    out: dict[str, str] = {}
    for item in items:
        body = item[2:] if item.startswith("--") else item
        if "=" not in body:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. --lr=1e-3)")
        key, value = body.split("=", 1)
        out[key.strip().replace("-", "_")] = value
    return out


def resolve_config(
    cls: type[C],
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
) -> C:
    """Defaults <- file <- overrides, each key checked against ``cls`` and coerced to its type."""
    values: dict[str, Any] = {}
    known = {f.name for f in fields(cls)}
    if path is not None:
        where = f"config file {path}"
        for key, value in read_config_file(path).items():
            if key not in known:
                raise _unknown(cls, key, where)
            values[key] = _coerce(cls, key, value, where)
    if overrides is not None:
        items = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
        for key, value in items.items():
            key = str(key).replace("-", "_")
            if key not in known:
                raise _unknown(cls, key, "overrides")
            values[key] = _coerce(cls, key, value, "overrides")
    return cls(**values)


def config_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain JSON values, with its method name."""
    data = asdict(config)
    for key, value in data.items():
        if isinstance(value, tuple):
            data[key] = list(value)
    return {"method": config.method, **data}


def write_config(config: Any, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as JSON; ``resolve_config(type(config), path)`` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config_dict(config)
    data.pop("method")
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
