"""``radzoo train <method>``: pretrain on a folder of images and write a zoo artifact.

Every config key is also a ``--key=value`` option (generated from the method's config
dataclass, with its help text), applied on top of ``--config FILE``. torch is imported only
when a run starts.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from radzoo.training.hparams import CONFIGS, ConfigError, config_help


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="pretrain a method on your images; writes an artifact radzoo.load reads",
        description="Pretrain a representation method and save its encoder as a zoo artifact.",
    )
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    m = methods.add_parser(
        "mococxr",
        help="MoCo-CXR (MoCo v2) image-only pretraining",
        description="MoCo-CXR pretraining (MoCo v2: momentum key encoder, queue of negatives, "
        "InfoNCE). Defaults are the paper's; override any key with --key=value.",
    )
    m.add_argument(
        "--data",
        required=True,
        type=Path,
        help="folder of images (searched recursively) or a text file listing them",
    )
    m.add_argument("--out", required=True, type=Path, help="artifact directory to write")
    m.add_argument("--config", type=Path, help="flat .json or .toml file of config keys")
    m.add_argument(
        "--init-random",
        action="store_true",
        help="start from random weights instead of ImageNet (same as --init=random)",
    )
    m.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in <out>/../<name>.train/",
    )
    m.add_argument(
        "--overwrite", action="store_true", help="replace an existing artifact and checkpoint"
    )
    _add_config_options(m, "mococxr")
    m.set_defaults(func=_train_mococxr, config_method="mococxr")


def _add_config_options(parser: argparse.ArgumentParser, method: str) -> None:
    group = parser.add_argument_group("config keys (override --config; defaults are the paper's)")
    for key, (default, text) in config_help(CONFIGS[method]).items():
        flags = [f"--{key}"]
        if "_" in key:
            flags.append(f"--{key.replace('_', '-')}")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            *flags, dest=f"cfg__{key}", metavar="V", default=None, help=f"{text} [{shown}]"
        )


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out = {
        k[len("cfg__") :]: v
        for k, v in vars(args).items()
        if k.startswith("cfg__") and v is not None
    }
    if getattr(args, "init_random", False):
        if out.get("init", "random") != "random":
            raise ConfigError(f"--init-random conflicts with --init={out['init']}")
        out["init"] = "random"
    return out


def _is_main_process() -> bool:
    """Rank 0 under torchrun (or the only process): the one that prints and logs progress."""
    from radzoo.training.distributed import launch_env

    rank, _, _ = launch_env()
    if rank != 0:
        logging.getLogger("radzoo").setLevel(logging.WARNING)
    return rank == 0


def _train_mococxr(args: argparse.Namespace) -> int:
    from radzoo.training.hparams import resolve_config
    from radzoo.training.methods.mococxr_pretraining import checkpoint_dir, train_mococxr

    main = _is_main_process()
    config = resolve_config(CONFIGS["mococxr"], args.config, _overrides(args))
    out = train_mococxr(config, args.data, args.out, resume=args.resume, overwrite=args.overwrite)
    if main:
        print(f"wrote {out} (resume state, metrics and resolved config in {checkpoint_dir(out)})")
    return 0
