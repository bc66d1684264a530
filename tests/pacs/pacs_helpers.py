"""Helpers the PACS tests share (a uniquely named module: tests import it by name)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def run_cli(*argv: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``radzoo ARGV`` in a subprocess (this tree first on the path)."""
    full = dict(os.environ)
    full["PYTHONPATH"] = str(SRC) + os.pathsep + full.get("PYTHONPATH", "")
    full.pop("RADZOO_PACS_AUTH", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "radzoo.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=full)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``radzoo ARGV`` in this process: (exit status, stdout, stderr)."""
    from radzoo.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err
