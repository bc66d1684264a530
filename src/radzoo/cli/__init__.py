"""The ``radzoo`` command line: the top layer. Each subcommand group lives in its own module here.

Command modules expose ``register(subparsers)``; they keep heavy imports (torch, onnxruntime,
bentoml, ray) inside their handlers so ``radzoo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from radzoo import __version__
from radzoo.errors import RadzooError

#: Modules that contribute subcommands, in help order.
COMMAND_MODULES = (
    "radzoo.cli.zoo",
    "radzoo.cli.convert",
    "radzoo.cli.export_verify",
    "radzoo.cli.zeroshot",
    "radzoo.cli.eval",
    "radzoo.cli.task_heads",
    "radzoo.cli.ct",
    "radzoo.cli.extract",
    "radzoo.cli.search",
    "radzoo.cli.train",
    "radzoo.cli.serve",
    "radzoo.cli.bento",
    "radzoo.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radzoo",
        description="Medical image representation models: zoo, converters, serving, batch extraction.",
    )
    parser.add_argument("--version", action="version", version=f"radzoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                # command module not present in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RadzooError as exc:
        print(f"radzoo {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

