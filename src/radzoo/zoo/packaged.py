"""Files shipped inside the radzoo package (``radzoo/assets/``) that travel with some models."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from radzoo.errors import ArtifactError
from radzoo.zoo.spec import ModelSpec


def packaged_asset(resource: str) -> Path:
    """Path of a file shipped inside the radzoo package (``radzoo/assets/<resource>``)."""
    path = Path(str(resources.files("radzoo").joinpath("assets", resource)))
    if not path.is_file():
        raise ArtifactError(f"packaged asset {resource!r} is missing from this radzoo installation")
    return path


def spec_assets(spec: ModelSpec) -> dict[str, Path]:
    return {name: packaged_asset(res) for name, res in spec.assets.items()}
