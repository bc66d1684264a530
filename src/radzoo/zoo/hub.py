"""Artifacts on the Hugging Face Hub (or any HF-compatible endpoint: HF_ENDPOINT is honoured).

Download (``download``, used by ``radzoo.load``) and upload (``push``, ``radzoo push``) live
together. huggingface_hub handles HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and its cache; we add
pinned revisions and translate its errors into a reason string the resolver can report. A push
checks the artifact first (config readable, weights sha256 as recorded, strict load), so a
broken directory never reaches the Hub, and regenerates the model card from the config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from radzoo.errors import ArtifactError, InputError, RadzooError

#: Files an artifact may hold; anything else in a Hub repo is not downloaded.
ARTIFACT_PATTERNS = ["config.json", "model.safetensors", "README.md", "assets/*", "tokenizer/*", "onnx/*", "golden/*"]


class HubMiss(Exception):
    """The artifact is not obtainable from the Hub; ``str(self)`` says why (for the final error)."""


def download(repo_id: str, revision: str | None, *, token: str | None = None) -> Path:
    """Snapshot of ``repo_id`` at ``revision`` (a tag, branch or commit) in the HF cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = snapshot_download(
            repo_id, revision=revision, repo_type="model", allow_patterns=ARTIFACT_PATTERNS, token=token
        )
    except RevisionNotFoundError as exc:
        raise HubMiss(f"revision {revision!r} not found in Hub repo {repo_id}") from exc
    except RepositoryNotFoundError as exc:
        raise HubMiss(
            f"Hub repo {repo_id} at revision {revision!r} not found (or private without a token)"
        ) from exc
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise HubMiss(f"{repo_id}@{revision} is not in the local HF cache and the Hub is offline or unreachable") from exc
    except (EntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise HubMiss(f"Hub download of {repo_id}@{revision} failed: {exc}") from exc
    path = Path(path)
    if not (path / "config.json").is_file():
        raise HubMiss(f"Hub repo {repo_id}@{revision} holds no radzoo artifact (no config.json)")
    return path


class PushError(RadzooError):
    """The Hub refused or failed an upload; the message says which step and why."""


@dataclass
class PushResult:
    repo_id: str
    commit: str
    revision: str | None
    url: str


def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(p.startswith(".") for p in parts):
        raise InputError(f"--repo must be ORG/NAME, got {repo_id!r}")


def push(
    directory: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    message: str | None = None,
) -> PushResult:
    """Upload the artifact in ``directory`` to ``repo_id``; tag the commit ``revision`` if given."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from radzoo.zoo.artifact import CARD, load_artifact, read_config
    from radzoo.zoo.card import render_card

    _check_repo_id(repo_id)
    directory = Path(directory)
    config = read_config(directory)
    load_artifact(directory)  # strict load + weights sha256: refuse to publish a broken artifact
    (directory / CARD).write_text(render_card(config))
    api = HfApi(endpoint=endpoint, token=token)
    step = "create_repo"
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        step = "upload_folder"
        info = api.upload_folder(
            folder_path=str(directory),
            repo_id=repo_id,
            repo_type="model",
            allow_patterns=ARTIFACT_PATTERNS + ["onnx/**", "tokenizer/**", "assets/**", "golden/**"],
            commit_message=message or f"radzoo artifact {config['spec']['name']} ({config['weights']['sha256'][:12]})",
        )
        commit = info.oid
        if revision:
            step = "create_tag"
            api.create_tag(repo_id, tag=revision, revision=commit, repo_type="model", exist_ok=True)
    except HfHubHTTPError as exc:
        raise PushError(f"pushing {directory} to {repo_id} failed at {step}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise PushError(f"pushing {directory} to {repo_id} failed at {step}: {exc}") from exc
    if not commit:
        raise ArtifactError(f"the Hub returned no commit for {repo_id}")
    return PushResult(repo_id=repo_id, commit=commit, revision=revision, url=str(info.commit_url))
