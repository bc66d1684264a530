"""Where radzoo keeps things on disk: ``$RADZOO_HOME`` and the local zoo beneath it."""

from __future__ import annotations

import os
from pathlib import Path

#: The file that makes a directory an artifact.
CONFIG = "config.json"


def is_artifact(path: Path) -> bool:
    """Whether ``path`` is an artifact directory (it holds ``config.json``)."""
    return (path / CONFIG).is_file()


def radzoo_home() -> Path:
    """``$RADZOO_HOME``, default ``~/.cache/radzoo`` (``$XDG_CACHE_HOME`` honoured)."""
    env = os.environ.get("RADZOO_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "radzoo"


def local_zoo_dir() -> Path:
    """``$RADZOO_HOME/models``: one artifact directory per model name."""
    return radzoo_home() / "models"


def local_models() -> list[str]:
    """Names of artifacts in the local zoo directory."""
    root = local_zoo_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_artifact(p))


def offline() -> bool:
    """True when the user asked for no network (``HF_HUB_OFFLINE`` or ``RADZOO_OFFLINE`` truthy)."""
    from huggingface_hub import constants

    env = os.environ.get("RADZOO_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or env in ("1", "true", "yes", "on")
