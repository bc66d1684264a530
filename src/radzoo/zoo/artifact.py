"""The artifact directory: identical on disk and on the Hub.

```
config.json          schema_version, spec, weights (file + sha256), provenance, optional sections
model.safetensors    canonical state dict (never a pickle)
README.md            model card with Hub metadata
assets/...           files that travel with the weights (graph-CT atlas, licences)
tokenizer/...        tokenizer files for text-bearing models
graph_text/...       IGCL: the BERT + vocabulary that turn RadGraph entries into node features
onnx/...             exported graphs (radzoo export)
```
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from radzoo import __version__
from radzoo.errors import ArtifactError, SchemaVersionError
from radzoo.zoo.home import CONFIG
from radzoo.zoo.instantiate import instantiate
from radzoo.zoo.model import ZooModel
from radzoo.zoo.spec import SCHEMA_VERSION, ModelSpec
from radzoo.zoo.weights import load_strict, read_weights, save_weights, sha256_file

WEIGHTS = "model.safetensors"
CARD = "README.md"
ASSETS = "assets"
#: Directories that travel with the weights and become ``model.assets[name]``: the text tokenizer,
#: and IGCL's node-feature BERT (``graph_text/``, what ``embed_graphs`` turns RadGraph entries with).
CARRIED_DIRS = ("tokenizer", "graph_text")


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory")
    if not path.is_file():
        raise ArtifactError(
            f"{directory} is not a radzoo artifact: no {CONFIG} (expected config.json + model.safetensors)"
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or "schema_version" not in config:
        raise ArtifactError(f"{path} has no schema_version: not a radzoo artifact config")
    version = config["schema_version"]
    if not isinstance(version, int):
        raise ArtifactError(f"{path}: schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{directory} was written with artifact schema_version {version}, but this radzoo "
            f"({__version__}) reads up to {SCHEMA_VERSION}: upgrade radzoo"
        )
    if "spec" not in config:
        raise ArtifactError(f"{path} has no 'spec' section")
    return config


def load_artifact(directory: str | Path, device: Any = None, cls: type[ZooModel] = ZooModel) -> ZooModel:
    """Build the network from ``config.json`` and load ``model.safetensors`` strictly.

    The low-level reader under ``radzoo.load``; callers outside the zoo open models there.
    """

    directory = Path(directory)
    config = read_config(directory)
    try:
        spec = ModelSpec.from_dict(config["spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory / CONFIG}: invalid spec: {exc}") from exc
    weights_path = directory / config.get("weights", {}).get("file", WEIGHTS)
    expected_sha = config.get("weights", {}).get("sha256")
    if expected_sha and weights_path.is_file() and sha256_file(weights_path) != expected_sha:
        raise ArtifactError(
            f"{weights_path}: sha256 does not match config.json (file corrupt or replaced); re-download the artifact"
        )
    state = read_weights(weights_path)
    try:
        net = instantiate(spec)
    except ArtifactError as exc:
        raise ArtifactError(f"{directory}: {exc}") from exc
    load_strict(net, state, f"weights {weights_path}")
    assets = {}
    asset_dir = directory / ASSETS
    for name in spec.assets:
        path = asset_dir / name
        if not path.is_file():
            raise ArtifactError(f"{directory}: asset {name!r} listed in the spec is missing from {asset_dir}")
        assets[name] = path
    for name in CARRIED_DIRS:
        if (directory / name).is_dir():
            assets[name] = directory / name
    return cls(spec, net, device=device, assets=assets, directory=directory, config=config)


def swap_in_directory(tmp: Path, directory: Path) -> None:
    """Put the finished folder ``tmp`` at ``directory`` by renames only, so a reader sees the old
    folder or the new one, never a half-written one (the old one is removed after the swap)."""
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)


def save_artifact(
    model: ZooModel,
    directory: str | Path,
    *,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write ``model`` as an artifact directory, atomically (temp dir, then rename).

    ``sections`` adds top-level config sections (e.g. ``golden``, ``onnx``, ``zero_shot``);
    ``extra_files`` copies files or directories into the artifact (relative name -> source).
    """
    from radzoo.zoo.card import render_card

    directory = Path(directory)
    if directory.exists() and not overwrite:
        if any(directory.iterdir()):
            raise ArtifactError(f"{directory} exists and is not empty; pass overwrite=True to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        sha = save_weights(model.net, tmp / WEIGHTS)
        config: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "radzoo_version": __version__,
            "spec": model.spec.to_dict(),
            "weights": {"file": WEIGHTS, "sha256": sha, "format": "safetensors"},
            "provenance": provenance if provenance is not None else dict(model.config.get("provenance", {})),
        }
        for key, value in model.config.items():
            # exported ONNX graphs are not carried over: they belong to the old weights file
            if key not in config and key not in ("schema_version", "radzoo_version", "onnx"):
                config[key] = value
        config.update(sections or {})
        if model.spec.assets:
            (tmp / ASSETS).mkdir()
            for name in model.spec.assets:
                src = model.assets.get(name)
                if src is None:
                    raise ArtifactError(f"model {model.name!r} lacks asset {name!r} required by its spec")
                shutil.copyfile(src, tmp / ASSETS / name)
        files = dict(extra_files or {})
        for name in CARRIED_DIRS:
            if name in model.assets and name not in files:
                files[name] = model.assets[name]
        for rel, src in files.items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if Path(src).is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copyfile(src, dst)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
        (tmp / CARD).write_text(render_card(config))
        swap_in_directory(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
