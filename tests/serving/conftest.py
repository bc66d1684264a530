"""A real radzoo HTTP server in a subprocess, on a free 127.0.0.1 port, with tiny random models.

The local zoo (``$RADZOO_HOME/models``) holds explicitly named ``tiny-random-*`` artifacts built
with ``zoo.build`` so ``zoo.load`` resolves them offline. Each test module starts one server per
configuration (module-scoped) and stops it with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import radzoo

TINY_SERVED = ("tiny-random-mococxr", "tiny-random-prior", "tiny-random-lovt", "tiny-random-graphct")
TEXT_MODELS = ("tiny-random-prior", "tiny-random-lovt")
STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RADZOO_HOME whose local zoo holds the tiny random-weight test models."""
    from radzoo import zoo
    from radzoo.zoo.tiny import tiny_specs, write_test_vocab

    home = tmp_path_factory.mktemp("radzoo_home")
    specs = tiny_specs()
    vocab = write_test_vocab(home / "vocab")
    for name in TINY_SERVED:
        extra = {"tokenizer": vocab} if name in TEXT_MODELS else {}
        zoo.save(radzoo.build(specs[name], **extra), home / "models" / name)
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_server(home: Path, tmp: Path, env: dict[str, str], *, via: str = "bentoml", port: int | None = None,
                 cli_args: list[str] | None = None, wait_for: str = "/readyz", argv: list[str] | None = None,
                 startup_timeout: float = STARTUP_TIMEOUT_S) -> Server:
    """Start the service (``bentoml serve`` or ``radzoo serve``, or ``argv`` + ``--port``) and wait
    until ``wait_for`` answers 200."""
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RADZOO_")}
    full_env.update({
        "RADZOO_HOME": str(home),
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
    })
    full_env.update(env)
    if argv is not None:
        argv = [*argv, "--port", str(port)]
    elif via == "bentoml":
        argv = [sys.executable, "-m", "bentoml", "serve", "radzoo.serving.service:RadzooService",
                "--port", str(port), "--host", "127.0.0.1"]
    else:
        argv = [sys.executable, "-m", "radzoo.cli", "serve", "--port", str(port), *(cli_args or [])]
    log_path = tmp / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} during start-up:\n{server.log()[-4000:]}")
        try:
            if requests.get(server.url + wait_for, timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"server not ready after {startup_timeout} s:\n{server.log()[-4000:]}")


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start servers for one module (``home``: RADZOO_HOME, default empty); SIGTERM at module end."""
    started: list[Server] = []

    def make(env: dict[str, str], home: Path | None = None, **kwargs) -> Server:
        home = home or tmp_path_factory.mktemp("empty_home")
        server = start_server(home, tmp_path_factory.mktemp("server"), env, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def launch_server():
    """``start_server`` itself, for a test that starts (and stops) its server its own way."""
    return start_server
