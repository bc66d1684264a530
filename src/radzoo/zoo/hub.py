"""Artifacts on the Hugging Face Hub (or any HF-compatible endpoint: HF_ENDPOINT is honoured).

huggingface_hub handles HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and its cache; we add pinned
revisions and translate its errors into a reason string the resolver can report.
"""

from __future__ import annotations

from pathlib import Path

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
