"""``radzoo train <method>``: pretrain a method and write a zoo artifact ``radzoo.load`` reads.

Every config key is also a ``--key=value`` option (generated from the method's config
dataclass, with its help text), applied on top of ``--config FILE``. The same command runs in one
process or under ``torchrun`` (``torchrun --nproc-per-node N -m radzoo.cli train ...``); only
rank 0 prints. torch is imported only when a run starts.

A method is one :class:`TrainCommand` entry in :data:`COMMANDS`: its help text, what ``--data``
takes, the training function (``module:function``, called as ``fn(config, data, out, resume=...,
overwrite=..., **extras)``) and any method-specific options.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radzoo.training.hparams import CONFIGS, ConfigError, config_help

_PAIRED_DATA = (
    "paired images and reports: a manifest (.csv/.jsonl with columns image, report and optional "
    "patient_id, study_id, view, split; paths relative to the manifest) or a MIMIC-CXR-JPG folder "
    "(files/pXX/pXXXXXXXX/sXXXXXXXX/*.jpg with sXXXXXXXX.txt reports)"
)


@dataclass(frozen=True)
class TrainCommand:
    help: str
    description: str
    train: str  # "module:function"
    data_help: str
    #: extra options: (flags, argparse kwargs); their dest is passed to the training function
    options: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    #: turns parsed args into config overrides (e.g. --init-random -> init=random)
    overrides: Callable[[argparse.Namespace, dict[str, str]], None] | None = field(default=None)
    #: the config class as "module:Class" when it is not in ``hparams.CONFIGS``
    config: str = ""


def config_class(method: str) -> type:
    """The config dataclass of ``method`` (``hparams.CONFIGS`` or the command's own ``config``)."""
    if method in CONFIGS:
        return CONFIGS[method]
    module, _, name = COMMANDS[method].config.partition(":")
    return getattr(importlib.import_module(module), name)


def _moco_overrides(args: argparse.Namespace, out: dict[str, str]) -> None:
    if getattr(args, "init_random", False):
        if out.get("init", "random") != "random":
            raise ConfigError(f"--init-random conflicts with --init={out['init']}")
        out["init"] = "random"


_VAL_DATA = (
    ("--val-data",),
    {
        "type": Path,
        "default": None,
        "help": "validation pairs (same formats as --data); without it, rows whose split column is "
        "'validate'/'val' (MIMIC's split CSV or the manifest) are used when present",
    },
)

#: method -> how ``radzoo train <method>`` runs it.
COMMANDS: dict[str, TrainCommand] = {
    "mococxr": TrainCommand(
        help="MoCo-CXR (MoCo v2) image-only pretraining",
        description="MoCo-CXR pretraining (MoCo v2: momentum key encoder, queue of negatives, "
        "InfoNCE). Defaults are the paper's; override any key with --key=value.",
        train="radzoo.training.methods.mococxr_pretraining:train_mococxr",
        data_help="folder of images (searched recursively) or a text file listing them",
        options=(
            (
                ("--init-random",),
                {"action": "store_true", "help": "start from random weights instead of ImageNet (same as --init=random)"},
            ),
        ),
        overrides=_moco_overrides,
    ),
    "lovt": TrainCommand(
        help="LoVT image-report pretraining (global + local alignment)",
        description="LoVT pretraining (ECCV 2022): global NT-Xent between images and reports plus local "
        "intra-sample losses between regions and sentences. Defaults are LoVT_100's; override any key "
        "with --key=value (text_preset=tiny / image_preset=tiny for smoke runs).",
        train="radzoo.training.methods.lovt_pretraining:train_lovt",
        data_help=_PAIRED_DATA,
        options=(_VAL_DATA,),
    ),
    "prior": TrainCommand(
        help="PRIOR image-report pretraining (three stages, sentence prototypes, reconstruction)",
        description="PRIOR pretraining (ICCV 2023): stage 1 global + local alignment, stage 2 adds the "
        "sentence prototype bank, stage 3 cross-modal reconstruction; a new optimiser and schedule per "
        "stage. Defaults are train_prior.yaml's; override any key with --key=value.",
        train="radzoo.training.methods.prior_pretraining:train_prior",
        data_help=_PAIRED_DATA,
        options=(_VAL_DATA,),
    ),
    "igcl": TrainCommand(
        help="IGCL: CLIP-style image vs RadGraph report-graph contrastive pretraining",
        description="IGCL pretraining (METHODS 4.4): CLIP ViT-B/32 image tower vs the DRACON graph encoder "
        "over RadGraph report graphs, symmetric CLIP loss with a learnable temperature, AdamW 1e-3, image "
        "encoder frozen for the first 20 batches, 500 pairs held out. Writes an igcl_vitb32-layout artifact "
        "whose embed_graphs() works (it carries the node-feature BERT).",
        train="radzoo.training.methods.igcl_pretraining:train_igcl",
        data_help="manifest (.csv/.jsonl) with columns image and report_id (+ optional split); image paths "
        "relative to the manifest; report_id is a key of the --radgraph file",
        options=(
            (("--radgraph",), {"type": Path, "required": True,
                               "help": "RadGraph JSON (report_id -> {text, entities}) or JSON Lines"}),
            (("--feature-cache",), {"type": Path, "default": None,
                                    "help": "node-feature cache directory (default <out>.train/node_features)"}),
            (("--features-only",), {"dest": "features_only", "action": "store_const", "const": True, "default": False,
                                    "help": "prepare the node-feature BERT and cache, then stop (do this before torchrun)"}),
        ),
        config="radzoo.training.graph_hparams:IGCLConfig",
    ),
    "graphct": TrainCommand(
        help="graph-CT: patch- and graph-level MoCo on lung CT volumes (context-aware SSL)",
        description="graph-CT pretraining (METHODS 5.4): CT volumes go through radzoo.ct (lung mask, atlas "
        "registration, 581 landmarks) into a patch cache once; then patch-level location-conditioned MoCo "
        "with per-landmark queues and graph-level MoCo on the GCN alternate (SGD 0.03, cosine). Writes a "
        "graphct_copdgene-layout artifact that `radzoo ct-features` and `radzoo extract` run.",
        train="radzoo.training.methods.graphct_pretraining:train_graphct",
        data_help="CT volumes: NIfTI/MHA/NRRD files, DICOM series folders, folders of them, or @list.txt",
        options=(
            (("--cache",), {"type": Path, "default": None,
                            "help": "patch cache directory (default <out>.train/patch_cache); reused across runs"}),
            (("--cache-only",), {"dest": "cache_only", "action": "store_const", "const": True, "default": False,
                                 "help": "build (or finish) the patch cache and stop"}),
        ),
        config="radzoo.training.graph_hparams:GraphCTConfig",
    ),
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="pretrain a method on your data; writes an artifact radzoo.load reads",
        description="Pretrain a representation method and save it as a zoo artifact. Runs in one "
        "process or under torchrun (--nproc-per-node N: one process per GPU, or CPU processes with "
        "gloo); batch_size is the global batch.",
    )
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name, cmd in COMMANDS.items():
        if name not in CONFIGS and not cmd.config:
            continue
        m = methods.add_parser(name, help=cmd.help, description=cmd.description)
        m.add_argument("--data", required=True, type=Path, help=cmd.data_help)
        m.add_argument("--out", required=True, type=Path, help="artifact directory to write")
        m.add_argument("--config", type=Path, help="flat .json or .toml file of config keys")
        m.add_argument(
            "--resume",
            action="store_true",
            help="continue from the checkpoint in <out>/../<name>.train/ (any number of processes)",
        )
        m.add_argument("--overwrite", action="store_true", help="replace an existing artifact and checkpoint")
        for flags, kwargs in cmd.options:
            m.add_argument(*flags, **kwargs)
        _add_config_options(m, name)
        m.set_defaults(func=_run, config_method=name)


def _add_config_options(parser: argparse.ArgumentParser, method: str) -> None:
    group = parser.add_argument_group("config keys (override --config; defaults are the paper's)")
    for key, (default, text) in config_help(config_class(method)).items():
        flags = [f"--{key}"]
        if "_" in key:
            flags.append(f"--{key.replace('_', '-')}")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(*flags, dest=f"cfg__{key}", metavar="V", default=None, help=f"{text} [{shown}]")


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out = {k[len("cfg__") :]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}
    cmd = COMMANDS[args.config_method]
    if cmd.overrides is not None:
        cmd.overrides(args, out)
    return out


def _is_main_process() -> bool:
    """Rank 0 under torchrun (or the only process): the one that prints and logs progress."""
    from radzoo.training.distributed import launch_env

    rank, _, _ = launch_env()
    if rank != 0:
        logging.getLogger("radzoo").setLevel(logging.WARNING)
    return rank == 0


def _run(args: argparse.Namespace) -> int:
    from radzoo.training.hparams import resolve_config
    from radzoo.training.runner import checkpoint_dir

    cmd = COMMANDS[args.config_method]
    main = _is_main_process()
    config = resolve_config(config_class(args.config_method), args.config, _overrides(args))
    module, _, fn_name = cmd.train.partition(":")
    train = getattr(importlib.import_module(module), fn_name)
    extras = {}
    for flags, kwargs in cmd.options:
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        if kwargs.get("action") == "store_true":
            continue  # flags feed config overrides
        extras[dest] = getattr(args, dest)
    out = train(config, args.data, args.out, resume=args.resume, overwrite=args.overwrite, **extras)
    if main:
        print(f"wrote {out} (resume state, metrics and resolved config in {checkpoint_dir(out)})")
    return 0
