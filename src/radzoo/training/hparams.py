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
    num_workers: int = _f(
        -1,
        "DataLoader worker processes per training process: -1 = auto from the cores per process "
        "(min(8, cores - 1); 0 with one core), 0 = read in the training process",
    )
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
        if self.num_workers < -1:
            raise ConfigError(f"num_workers: must be >= 0, or -1 for auto, got {self.num_workers}")
        for name in ("max_steps", "checkpoint_every", "checkpoint_every_steps", "log_every"):
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


#: Image and text tower presets of the image-report methods. ``tiny`` keeps every module of the
#: method but shrinks it so CPU tests and smoke runs take seconds; it is never the paper's model.
IMAGE_PRESETS = ("resnet50", "tiny")
TEXT_PRESETS = ("bio_clinicalbert", "tiny")


@dataclass
class ImageTextConfig(RunConfig):
    """Fields shared by LoVT and PRIOR: towers, initial weights, tokenizer and which studies are usable."""

    image_preset: str = _f(
        "resnet50", "image tower: resnet50 (the paper's, METHODS 2.1 / 3.1) | tiny (resnet18, 64 px: tests only)"
    )
    text_preset: str = _f(
        "bio_clinicalbert",
        "text tower config when text_init gives none: bio_clinicalbert (BERT-base, METHODS 2.1 / 3.1) | "
        "tiny (2 layers, hidden 128: tests only)",
    )
    image_size: int = _f(0, "input size in px (0 = the preset's: 224 for resnet50, 64 for tiny)")
    init: str = _f(
        "imagenet",
        "image tower start: imagenet (torchvision IMAGENET1K_V1, as the originals) | random | a zoo "
        "model name or artifact directory whose image tower is copied",
    )
    text_init: str = _f(
        "random",
        "text tower start: random (from text_preset) | a Hugging Face BERT directory with "
        "model.safetensors (the originals: Bio_ClinicalBERT) | a zoo model with a text tower",
    )
    tokenizer: str = _f(
        "",
        "Hugging Face tokenizer directory (e.g. Bio_ClinicalBERT's); empty = the text_init "
        "directory's tokenizer, else a WordPiece vocabulary trained on the training reports",
    )
    lowercase: bool = _f(True, "lower-case report text before tokenising (METHODS 0.6: the originals did)")
    vocab_size: int = _f(30522, "size of the WordPiece vocabulary trained when no tokenizer is given")
    view: str = _f("PA,AP", "views to train on (frontal, as both originals); 'all' keeps every view")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_preset not in IMAGE_PRESETS:
            raise ConfigError(f"image_preset: must be one of {', '.join(IMAGE_PRESETS)}, got {self.image_preset!r}")
        if self.text_preset not in TEXT_PRESETS:
            raise ConfigError(f"text_preset: must be one of {', '.join(TEXT_PRESETS)}, got {self.text_preset!r}")
        if self.image_size < 0 or (self.image_size and self.image_size % 32):
            raise ConfigError(f"image_size: must be a multiple of 32 (the ResNet stride), got {self.image_size}")
        _positive(self, "vocab_size")

    @property
    def size(self) -> int:
        """The input size in pixels (``image_size`` or the preset's)."""
        return self.image_size or (224 if self.image_preset == "resnet50" else 64)


@dataclass
class LoVTConfig(ImageTextConfig):
    """LoVT as LoVT_100 trained it (METHODS 2.1-2.4; lovt configs/experiment/LoVT_100.yaml)."""

    seed: int = _f(12345, "seed (base_config.yaml: 12345)")
    max_length: int = _f(512, "report tokens incl. [CLS]/[SEP]; sentences that do not fit are dropped (METHODS 2.1)")
    min_tokens: int = _f(3, "skip studies whose findings + impression have fewer tokens (lovt min_section_tokens)")
    swap_prob: float = _f(0.6, "sentence shuffling: Geometric(1 - swap_prob) random swaps (METHODS 2.3)")
    freeze_embeddings: bool = _f(True, "freeze BERT's embeddings (METHODS 2.1)")
    freeze_layers: int = _f(6, "freeze BERT encoder layers 0..N-1 (METHODS 2.1: 6)")
    proj_dim: int = _f(512, "d_z: projection output width (METHODS 2.1)")
    proj_hidden: int = _f(2048, "d_hidden of the BatchNorm projection MLPs (METHODS 2.1)")
    pool_heads: int = _f(8, "heads of the attention pools (METHODS 2.1)")
    temperature: float = _f(0.1, "global NT-Xent temperature (METHODS 2.4)")
    global_a2b: float = _f(0.75, "weight of the image-anchored global loss (METHODS 2.4)")
    global_b2a: float = _f(0.25, "weight of the report-anchored global loss (METHODS 2.4)")
    local_temperature: float = _f(0.3, "temperature of both local intra-sample losses (METHODS 2.4)")
    local_weight: float = _f(0.375, "weight of each of the four local terms (METHODS 2.4)")
    local_threshold: float = _f(0.5, "image positives: regions within this distance / grid diagonal (METHODS 2.4)")
    local_smooth_lambda: float = _f(1.0, "image positives weighted by exp(-lambda * distance) (METHODS 2.4)")
    local_weights: bool = _f(True, "weight local elements by the attention-pool weights, stop-gradient (METHODS 2.4)")
    lr: float = _f(1e-4, "AdamW learning rate (METHODS 2.4)")
    weight_decay: float = _f(1e-6, "AdamW weight decay (METHODS 2.4)")
    epochs: int = _f(100, "maximum epochs (METHODS 2.4)")
    batch_size: int = _f(32, "global batch per forward pass; negatives come from it (METHODS 2.4)")
    accumulate: int = _f(16, "micro-batches per optimiser step (METHODS 2.4: accumulate_grad_batches 16)")
    early_stop_patience: int = _f(10, "stop after N validation epochs without improvement; 0 = off (METHODS 2.4)")
    early_stop_min_delta: float = _f(1e-5, "smallest validation-loss drop that counts (lovt early_stopping.yaml)")

    method = "lovt"
    paper_precision = "fp16"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "max_length", "proj_dim", "proj_hidden", "pool_heads", "temperature",
                  "local_temperature", "lr", "epochs", "accumulate")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size: must be >= 2 (contrastive pairs), got {self.batch_size}")
        if not 0.0 <= self.swap_prob < 1.0:
            raise ConfigError(f"swap_prob: must be in [0, 1), got {self.swap_prob}")
        for name in ("freeze_layers", "min_tokens", "weight_decay", "early_stop_patience", "early_stop_min_delta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass
class PriorConfig(ImageTextConfig):
    """PRIOR as train_prior.yaml trained it (METHODS 3.1-3.4; PRIOR codes/prior/models/prior.py)."""

    seed: int = _f(114514, "seed (PRIOR base_config.yaml)")
    sync_bn: bool = _f(True, "SyncBatchNorm across GPUs (train_prior.yaml sync_batchnorm: true)")
    max_length: int = _f(256, "report tokens, padded and cut to this (METHODS 3.3)")
    min_sentences: int = _f(4, "skip studies with fewer sentences (METHODS 3.3, min_sentences=4)")
    normalize_mean: float = _f(0.4755, "training Normalize mean: the pretraining statistics (METHODS 3.3)")
    normalize_std: float = _f(0.3011, "training Normalize std (METHODS 3.3)")
    embed_dim: int = _f(0, "joint embedding width (0 = the text tower's hidden size: 768, METHODS 3.1)")
    pool_heads: int = _f(8, "heads of the image and sentence attention pools (METHODS 3.1)")
    spb_k: int = _f(512, "sentence prototypes in the SPB (METHODS 3.1)")
    spb_tau: float = _f(0.9, "Gumbel-softmax temperature of the SPB, fixed (METHODS 3.4, temp_decay fixed)")
    num_queries: int = _f(16, "prototype queries of the sentence decoder = sentences kept per report in stage 3 (METHODS 3.4)")
    decoder_layers: int = _f(8, "layers of the BERT prototype decoder (METHODS 3.1)")
    image_dropout: float = _f(0.5, "channel dropout on the image tokens fed to the image decoder (METHODS 3.4)")
    lambda_proto: float = _f(10.0, "weight of the SPB L1 loss and of the SPG loss (METHODS 3.4)")
    stage3_global_weight: float = _f(10.0, "weight of the global loss in stage 3 (METHODS 3.4)")
    temperature: float = _f(0.01, "initial global temperature: logit_scale = log(1/T) (METHODS 3.4)")
    local_temperature: float = _f(0.01, "initial local temperature: local_logit_scale = log(1/T) (METHODS 3.4)")
    batch_size: int = _f(588, "global batch (METHODS 3.4: 98 per GPU x 6 GPUs)")
    stage1_epochs: int = _f(20, "stage 1: global + local alignment (METHODS 3.4)")
    stage2_epochs: int = _f(30, "stage 2: + sentence prototype bank (METHODS 3.4)")
    stage3_epochs: int = _f(100, "stage 3: + cross-modal reconstruction (METHODS 3.4)")
    stage1_lr: float = _f(1e-5, "stage 1 AdamW peak lr (METHODS 3.4)")
    stage2_lr: float = _f(1e-5, "stage 2 AdamW peak lr (METHODS 3.4)")
    stage3_lr: float = _f(5e-6, "stage 3 AdamW peak lr (METHODS 3.4)")
    stage1_lr_start: float = _f(1e-7, "stage 1 warm-up start lr (METHODS 3.4)")
    stage2_lr_start: float = _f(1e-7, "stage 2 warm-up start lr (METHODS 3.4)")
    stage3_lr_start: float = _f(1e-8, "stage 3 warm-up start lr (METHODS 3.4)")
    stage1_warmup_epochs: int = _f(1, "stage 1 warm-up epochs (METHODS 3.4)")
    stage2_warmup_epochs: int = _f(1, "stage 2 warm-up epochs (METHODS 3.4)")
    stage3_warmup_epochs: int = _f(5, "stage 3 warm-up epochs (METHODS 3.4)")
    lr_end: float = _f(0.0, "eta_min of every stage's cosine (METHODS 3.4)")
    weight_decay: float = _f(1e-6, "AdamW weight decay in every stage (METHODS 3.4)")

    method = "prior"
    paper_precision = "fp16"

    @property
    def epochs(self) -> int:
        return self.stage1_epochs + self.stage2_epochs + self.stage3_epochs

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "max_length", "min_sentences", "pool_heads", "spb_k", "spb_tau", "num_queries",
                  "decoder_layers", "temperature", "local_temperature", "stage1_lr", "stage2_lr", "stage3_lr",
                  "normalize_std")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size: must be >= 2 (contrastive pairs), got {self.batch_size}")
        if not 0.0 <= self.image_dropout < 1.0:
            raise ConfigError(f"image_dropout: must be in [0, 1), got {self.image_dropout}")
        for name in ("stage1_epochs", "stage2_epochs", "stage3_epochs", "embed_dim", "weight_decay", "lr_end",
                     "stage1_warmup_epochs", "stage2_warmup_epochs", "stage3_warmup_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.epochs < 1:
            raise ConfigError("stage1_epochs + stage2_epochs + stage3_epochs must be >= 1")


#: Method name -> config class (one per implemented method).
CONFIGS: dict[str, type] = {"mococxr": MoCoCXRConfig, "lovt": LoVTConfig, "prior": PriorConfig}

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
