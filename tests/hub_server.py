"""A real Hugging Face-compatible server on 127.0.0.1 for tests (pytest plugin).

``olah`` serves plain git work trees under ``<mirrors>/models/<org>/<name>`` offline, so Hub
downloads (``snapshot_download``, ``hf_hub_download``, tags and branches) run against real HTTP
without the internet. It is read-only: repos are created here with git (``add_repo``).

Use the session fixture ``hub_server`` for the endpoint and ``add_repo``; the function fixture
``hub_env`` points huggingface_hub at it (HF_ENDPOINT is read by huggingface_hub at import time, so
the module constants are patched too) with an empty HF cache per test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "radzoo-tests",
    "GIT_AUTHOR_EMAIL": "tests@radzoo.invalid",
    "GIT_COMMITTER_NAME": "radzoo-tests",
    "GIT_COMMITTER_EMAIL": "tests@radzoo.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV, "HOME": str(cwd)}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class HubServer:
    """A running olah server: ``endpoint`` for HF_ENDPOINT, ``mirrors`` holds the git repos."""

    endpoint: str
    mirrors: Path
    root: Path
    process: subprocess.Popen = field(repr=False)

    def repo_dir(self, repo_id: str) -> Path:
        return self.mirrors / "models" / repo_id

    def add_repo(
        self,
        repo_id: str,
        files_dir: str | Path,
        tags: list[str] | tuple[str, ...] = (),
        *,
        message: str = "add files",
    ) -> str:
        """Make ``files_dir``'s content the new head of model repo ``repo_id``; return the commit sha.

        A first call creates the repo (branch ``main``); a later call for the same id replaces the
        work tree with the new files in a new commit, so tests can publish several revisions.
        Each tag in ``tags`` points at the new commit (moved if it exists).
        """
        if repo_id.count("/") != 1 or any(not p or p.startswith(".") for p in repo_id.split("/")):
            raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
        src = Path(files_dir)
        if not src.is_dir():
            raise ValueError(f"files_dir {src} is not a directory")
        repo = self.repo_dir(repo_id)
        fresh = not (repo / ".git").is_dir()
        repo.mkdir(parents=True, exist_ok=True)
        if fresh:
            _git(repo, "init", "-q", "-b", "main")
        for item in repo.iterdir():
            if item.name == ".git":
                continue
            shutil.rmtree(item) if item.is_dir() else item.unlink()
        shutil.copytree(src, repo, dirs_exist_ok=True)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", message)
        for tag in tags:
            _git(repo, "tag", "-f", tag)
        return _git(repo, "rev-parse", "HEAD")

    def remove_repo(self, repo_id: str) -> None:
        """Forget ``repo_id`` (tests that need the Hub to miss a name the session published earlier)."""
        shutil.rmtree(self.repo_dir(repo_id), ignore_errors=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen, endpoint: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"olah exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            urllib.request.urlopen(endpoint + "/api/whoami-v2", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"olah did not answer within {timeout:.0f}s:\n{log.read_text(errors='replace')[-4000:]}")


def start_hub_server(root: Path) -> HubServer:
    """Start olah offline on a free 127.0.0.1 port with its state under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    mirrors = root / "mirrors"
    (mirrors / "models").mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = root / "olah.toml"
    config.write_text(
        "[basic]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'repos-path = "{root / "repos"}"\n'
        f'mirrors-path = ["{mirrors}"]\n'
        "[accessibility]\n"
        "offline = true\n"
    )
    log = root / "olah.out"
    env = {**os.environ, "OLAH_LOG_PATH": str(root / "logs")}
    env.pop("HF_ENDPOINT", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "olah.server", "-c", str(config), "--log-path", str(root / "logs")],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    server = HubServer(endpoint=endpoint, mirrors=mirrors, root=root, process=proc)
    try:
        _wait_ready(proc, endpoint, log)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory):
    """A real offline HF-compatible server for the whole session; skips if olah is not installed."""
    pytest.importorskip("olah")
    if shutil.which("git") is None:
        pytest.skip("git is not installed (olah serves git work trees)")
    server = start_hub_server(tmp_path_factory.mktemp("olah"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_env(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """Point huggingface_hub at ``hub_server`` with a fresh cache, online, for one test."""
    import huggingface_hub.constants as hfc

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hfc, "ENDPOINT", hub_server.endpoint)
    monkeypatch.setattr(hfc, "HUGGINGFACE_CO_URL_TEMPLATE", hub_server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)
    import huggingface_hub.hf_api as hf_api

    # the module-level HfApi behind list_repo_files/model_info... fixed its endpoint at import
    monkeypatch.setattr(hf_api.api, "endpoint", hub_server.endpoint)
    return hub_server
