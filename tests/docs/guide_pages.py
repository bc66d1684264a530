"""Run a guide page's own commands: the ``bash`` and ``python`` fenced blocks of ``docs/guides/*.md``.

Conventions (HTML comments, invisible on the site):

* Every ``bash`` / ``python`` block runs, in page order, in one scratch working folder that looks
  like a checkout: ``examples/`` is the repository's, ``../shared`` the shared data set. Bash runs
  with ``-e -o pipefail``; the virtual environment's ``bin/`` is first on ``PATH``.
* Comment lines right above a block change how it runs:
  ``<!-- test: skip: REASON -->`` not run (the page says why in words too);
  ``<!-- test: exit N -->`` expected exit status (default 0);
  ``<!-- test: creates PATH... -->`` files the block must leave, non-empty;
  ``<!-- test: prints TEXT -->`` text its output must contain;
  ``<!-- test: background URL -->`` a server: started in its own process group, waited for until
  URL answers 200, stopped (the whole group) when the page ends;
  ``<!-- test: instead NAME -->`` the test runs its own step NAME in place of the block (a step
  the test infrastructure cannot do as written, e.g. uploading to a read-only test Hub).
* ``<!-- test: run`` ... ``-->`` is a bash script only the test runs (set-up a reader does another
  way, e.g. a random checkpoint in the original layout in place of a download).
* ``<!-- test: needs orthanc -->`` / ``<!-- test: needs hub -->`` anywhere on the page: the test
  starts that service and passes its address in environment variables the page's skipped set-up
  block names.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ROOT / "docs" / "guides"

_FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.S | re.M)
_MARK = re.compile(r"<!-- test: (?P<kind>skip|exit|creates|prints|background|instead)\b:?\s*(?P<arg>.*?)\s*-->")
_HIDDEN = re.compile(r"<!-- test: run\n(?P<body>.*?)\n-->", re.S)
_NEEDS = re.compile(r"<!-- test: needs (?P<what>[\w ]+?) -->")


@dataclass
class Block:
    lang: str
    code: str
    line: int
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.lang} block at line {self.line}"


def needs(page: Path) -> set[str]:
    return {w for m in _NEEDS.finditer(page.read_text()) for w in m.group("what").split()}


def blocks(page: Path) -> list[Block]:
    """The page's runnable blocks in order: fenced bash/python blocks and hidden test-only scripts."""
    text = page.read_text()
    found: list[tuple[int, Block]] = []
    for m in _HIDDEN.finditer(text):
        found.append((m.start(), Block("bash", m.group("body"), text.count("\n", 0, m.start()) + 1, {"hidden": ""})))
    for m in _FENCE.finditer(text):
        if m.group("lang") not in ("bash", "python"):
            continue
        if any(h.start() < m.start() < h.end() for h in _HIDDEN.finditer(text)):
            continue
        indent = len(m.group("indent"))
        code = "\n".join(line[indent:] for line in m.group("body").splitlines())
        marks: dict[str, str] = {}
        before = text[: m.start()].rstrip("\n ").splitlines()
        while before and _MARK.fullmatch(before[-1].strip()):
            mark = _MARK.fullmatch(before.pop().strip())
            marks[mark.group("kind")] = mark.group("arg")
        found.append((m.start(), Block(m.group("lang"), code, text.count("\n", 0, m.start()) + 1, marks)))
    return [b for _, b in sorted(found, key=lambda item: item[0])]


def scratch(tmp: Path, shared: Path | None) -> Path:
    """A working folder shaped like a checkout: ``examples/`` and ``../shared``."""
    work = tmp / "work"
    work.mkdir(parents=True)
    (work / "examples").symlink_to(ROOT / "examples")
    if shared is not None:
        (tmp / "shared").symlink_to(shared)
    return work


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RADZOO_", "HF_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "RADZOO_HOME": str(tmp / "radzoo-home"),
        "HF_HOME": str(tmp / "hf-home"),
        "HF_HUB_OFFLINE": "1",
        "RADZOO_OFFLINE": "1",
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "OMP_NUM_THREADS": "2",
        "MPLBACKEND": "Agg",
    })
    return env


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def run_page(page: Path, work: Path, env: dict[str, str], steps: dict[str, Callable[[], None]] | None = None,
             timeout: float = 600.0) -> list[str]:
    """Run every block of ``page`` in ``work``; returns the labels of the blocks not run (skipped)."""
    skipped: list[str] = []
    servers: list[subprocess.Popen] = []
    try:
        for block in blocks(page):
            where = f"{page.name}, {block.label}"
            if "skip" in block.marks:
                skipped.append(f"{where}: {block.marks['skip']}")
                continue
            if "instead" in block.marks:
                (steps or {})[block.marks["instead"]]()
                continue
            argv = (["bash", "-e", "-o", "pipefail", "-c", block.code] if block.lang == "bash"
                    else [sys.executable, "-c", block.code])
            if "background" in block.marks:
                log = work.parent / f"server-{block.line}.log"
                with open(log, "wb") as out:
                    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
                servers.append(proc)
                _wait(block.marks["background"], proc, log)
                continue
            started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            print(f"{where}: {time.monotonic() - started:.1f} s wall, "
                  f"{used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime:.1f} s CPU")
            output = done.stdout + done.stderr
            expected = int(block.marks.get("exit", "0"))
            assert done.returncode == expected, (
                f"{where} exited {done.returncode}, the page expects {expected}:\n{block.code}\n---\n{output[-4000:]}")
            for path in block.marks.get("creates", "").split():
                assert (work / path).exists() and (work / path).stat().st_size > 0, f"{where} did not create {path}"
            if "prints" in block.marks:
                assert block.marks["prints"] in output, f"{where} did not print {block.marks['prints']!r}:\n{output[-4000:]}"
    finally:
        for proc in servers:
            _stop(proc)
    return skipped
