"""``radzoo bento build``: a Bento that carries its models and starts with the network cut.

Hospital networks are air-gapped, and a container's artifact folders are read-only. So the bento
holds everything the service opens at start-up, as BentoML models (``bentoml.models``): each
model's artifact folder (weights, config, card, tokenizer) with its parity-checked ONNX graphs
and, at ``precision="int8"``, its calibrated int8 graphs. Serving it exports and downloads
nothing (:mod:`radzoo.serving.bento_models` opens the folders read-only).

Its Python requirements come from ``pyproject.toml`` (core + the extras the service needs,
:data:`CPU_EXTRAS` / :data:`GPU_EXTRAS`), pinned to ``constraints.txt`` when it is there: one
source of dependencies. The repository's ``bentofile.yaml`` (plain ``bentoml build``) is
:func:`render_bentofile` of :func:`bentofile` and a test fails when it drifts.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from radzoo.errors import InputError

log = logging.getLogger(__name__)

SERVICE = "radzoo.serving.service:RadzooService"
#: The extras the service uses besides the core: HTTP (bentoml), the onnxruntime default path,
#: DICOM SR / Parametric Map results, Parquet (the weights revision results carry).
CPU_EXTRAS = ("serving", "onnx", "dicom", "extract")
GPU_EXTRAS = ("serving", "gpu", "dicom", "extract")  # onnxruntime-gpu instead of onnxruntime
CUDA_VERSION = "12.8.1"  # the newest BentoML 1.4.39 accepts
#: What a bento may be built at: graphs a read-only bento can hold (fp16 is converted on the GPU at load).
BENTO_PRECISIONS = ("fp32", "int8", "bf16")
MODEL_PREFIX = "radzoo-"
PACKAGE_DATA = ("radzoo/**/*.py", "radzoo/py.typed", "radzoo/assets/**", "radzoo/serving/page/**")

HEADER = """\
# BentoML build file for the radzoo HTTP service (BentoML 1.4.39). GENERATED from pyproject.toml by
# `radzoo bento bentofile --out bentofile.yaml`; edit pyproject.toml (or radzoo/serving/bento_build.py)
# and regenerate: tests/serving/test_bento_build.py fails when this file drifts.
#
#   bentoml build                       # offline: packages are listed, not locked/resolved; no models
#   radzoo bento build --models NAME[,NAME...] [--precision int8] [--gpu]
#                                       # the deployable bento: models, ONNX and int8 graphs inside,
#                                       # starts with HF_HUB_OFFLINE=1 / RADZOO_OFFLINE=1 (README "Serving")
#
# Settings are RADZOO_* environment variables (see src/radzoo/serving/settings.py).
"""


# ---- requirements: pyproject.toml (or the installed package's metadata) -> pinned list ----------
def project_dir() -> Path | None:
    """The source checkout holding ``pyproject.toml`` (None for an installed wheel)."""
    import radzoo

    root = Path(radzoo.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def declared_requirements(extras: Sequence[str]) -> list[str]:
    """The core dependencies plus ``extras``, as ``pyproject.toml`` declares them (in order, no duplicates)."""
    root = project_dir()
    if root is not None:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        optional = project.get("optional-dependencies", {})
        unknown = [e for e in extras if e not in optional]
        if unknown:
            raise InputError(f"pyproject.toml has no extras {unknown}; it has {sorted(optional)}")
        lines = list(project["dependencies"]) + [r for e in extras for r in optional[e]]
    else:  # installed: the same lists, from the wheel's metadata
        lines = _metadata_requirements(extras)
    out: list[str] = []
    seen: set[str] = set()
    for line in lines:
        name = _canonical(line)
        if name != "radzoo" and name not in seen:
            seen.add(name)
            out.append(line.strip())
    return out


def _metadata_requirements(extras: Sequence[str]) -> list[str]:
    from packaging.requirements import Requirement

    lines = []
    for text in importlib.metadata.requires("radzoo") or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
            req.marker = None
            lines.append(str(req))
    return lines


def _canonical(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise InputError(f"cannot read the package name of requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def read_constraints(path: Path) -> dict[str, str]:
    """``constraints.txt`` pins: canonical name -> version."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version.strip()
    return pins


def requirements(*, gpu: bool = False, pin: bool = True) -> list[str]:
    """The bento's Python packages: pyproject's core + the service's extras, pinned to
    ``constraints.txt`` (next to ``pyproject.toml``) where it pins them and ``pin`` is set."""
    lines = declared_requirements(GPU_EXTRAS if gpu else CPU_EXTRAS)
    root = project_dir()
    if not pin or root is None or not (root / "constraints.txt").is_file():
        return lines
    from packaging.requirements import Requirement

    pins = read_constraints(root / "constraints.txt")
    out = []
    for line in lines:
        req = Requirement(line)
        version = pins.get(_canonical(line))
        if version is not None and req.specifier.contains(version, prereleases=True):
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            out.append(f"{req.name}{extras}=={version}")
        else:
            out.append(line)
    return out


# ---- the bentofile --------------------------------------------------------------------------
def bentofile(
    *,
    gpu: bool = False,
    models: Mapping[str, str] | None = None,
    precision: str = "fp32",
    random_weights: bool = False,
    name: str = "radzoo",
    pin: bool = True,
    src_prefix: str = "",
) -> dict[str, Any]:
    """The build options (the keys of a ``bentofile.yaml``) of a bento serving ``models`` (name -> tag).

    ``src_prefix``: where the ``radzoo`` package lies below the build context (``"src/"`` for the
    repository's own ``bentofile.yaml``, built from the repository root)."""
    models = dict(models or {})
    if precision not in BENTO_PRECISIONS:
        raise InputError(f"a bento is built at one of {', '.join(BENTO_PRECISIONS)}, got {precision!r}")
    labels = {"project": "radzoo", "owner": "radzoo-developers", "variant": "gpu" if gpu else "cpu"}
    description = "radzoo: medical image embeddings (MoCo-CXR, LoVT, PRIOR, IGCL, graph-CT) over HTTP"
    if models:
        labels.update({"models": ",".join(models),
                       "precision": precision, "random_weights": str(random_weights).lower()})
        description += f"; models inside: {', '.join(models)} ({precision})"
        if random_weights:
            description += "; RANDOM WEIGHTS: a demo, its outputs carry no meaning"
    envs = [
        {"name": "RADZOO_HOME", "value": "/home/bentoml/radzoo"},
        {"name": "RADZOO_RUNTIME", "value": "auto"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
    ]
    if models:  # everything is inside: never reach out; in its container, listen on the container's address
        envs += [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "RADZOO_OFFLINE", "value": "1"},
                 {"name": "RADZOO_HOST", "value": "0.0.0.0"}]
    if gpu:
        envs.append({"name": "RADZOO_DEVICE", "value": "cuda"})
    docker: dict[str, Any] = {"distro": "debian", "python_version": "3.11"}
    if gpu:
        docker["cuda_version"] = CUDA_VERSION
    options: dict[str, Any] = {
        "service": SERVICE,
        "name": name,
        "description": description,
        "labels": labels,
        "include": [src_prefix + p for p in PACKAGE_DATA],
        "exclude": ["**/__pycache__/**", "tests/**", "benchmarks/**"],
        "python": {
            "is_src_layout": bool(src_prefix),
            "lock_packages": False,  # locking resolves against an index: keep the build offline
            "packages": requirements(gpu=gpu, pin=pin),
        },
        "docker": docker,
        "envs": envs,
    }
    if models:
        from radzoo.serving.bento_models import MODELS_ARG, PRECISION_ARG

        options["models"] = list(models.values())
        options["args"] = {MODELS_ARG: ",".join(f"{n}={t}" for n, t in models.items()), PRECISION_ARG: precision}
    return options


def repository_bentofile() -> dict[str, Any]:
    """What the repository's ``bentofile.yaml`` holds: the CPU service, no models, pyproject's ranges."""
    return bentofile(pin=False, src_prefix="src/")


def render_bentofile(options: Mapping[str, Any]) -> str:
    """``options`` as the text of a ``bentofile.yaml`` (with the generated-file header)."""
    return HEADER + yaml.safe_dump(dict(options), sort_keys=False, width=120)


# ---- models into BentoML's model store, then the bento -----------------------------------------
def bento_model_name(name: str) -> str:
    """A BentoML model name for a radzoo model name (lower case, ``[a-z0-9._-]``)."""
    return MODEL_PREFIX + re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")


def store_model(name: str, *, precision: str = "fp32", random_weights: bool = False, seed: int = 0,
                workdir: Path, calibration: Sequence[str] | None = None) -> tuple[str, bool]:
    """Save ``name`` with its exported graphs into BentoML's model store; its tag and whether its
    weights are random (asked for, or a random-weight artifact).

    The model is opened once (torch, CPU), saved as an artifact folder, exported to ONNX with
    parity checks (and int8, calibrated and gated, at ``precision="int8"``) into that folder,
    which becomes the BentoML model."""
    import bentoml

    from radzoo.artifacts import export_artifact
    from radzoo.onnx.export import ParityError
    from radzoo.onnx.export_cache import ExportUnavailable, remember_failure_in_artifact
    from radzoo.resolve import load
    from radzoo.zoo import save

    model = load(name, runtime="torch", device="cpu", random_weights=random_weights, seed=seed)
    folder = workdir / bento_model_name(name)
    save(model, folder)
    graphs = "none (runs in torch)"
    try:
        section = export_artifact(folder, precision="int8" if precision == "int8" else "fp32",
                                  calibration=calibration if precision == "int8" else None)
        graphs = ", ".join(sorted(section.get("graphs", {}))) or graphs
    except (ExportUnavailable, ParityError) as exc:  # the auto runtime then runs torch, as it would anywhere
        if precision == "int8":
            raise
        log.warning("%s: ONNX export unavailable, the bento serves it with torch: %s", name, exc)
        remember_failure_in_artifact(folder, str(exc))
    random = bool(model.random_init)
    labels = {"radzoo_name": name, "random_weights": str(random).lower(), "precision": precision}
    metadata = {"radzoo_name": name, "method": model.spec.method, "revision": str(model.revision),
                "onnx_graphs": graphs, "random_weights": random}
    with bentoml.models.create(bento_model_name(name), labels=labels, metadata=metadata) as stored:
        shutil.copytree(folder, stored.path, dirs_exist_ok=True)
    log.info("stored %s as BentoML model %s (%s; graphs: %s)", name, stored.tag,
             "RANDOM weights" if random else "weights " + str(model.revision), graphs)
    return str(stored.tag), random


def parse_tag(tag: str | None) -> tuple[str, str | None]:
    """``name[:version]`` of the bento (default name ``radzoo``)."""
    if not tag:
        return "radzoo", None
    name, _, version = tag.partition(":")
    return name, version or None


def build_bento(
    names: Sequence[str],
    *,
    precision: str = "fp32",
    gpu: bool = False,
    tag: str | None = None,
    random_weights: bool = False,
    seed: int = 0,
    calibration: Sequence[str] | None = None,
) -> Any:
    """Build a bento serving ``names`` with their artifacts inside (see the module doc); the ``bentoml.Bento``."""
    import bentoml

    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise InputError("name at least one model: --models NAME[,NAME...]")
    if len(set(names)) != len(names):
        raise InputError(f"a model is named twice in {names}")
    if precision not in BENTO_PRECISIONS:
        raise InputError(f"a bento is built at one of {', '.join(BENTO_PRECISIONS)}, got {precision!r}")
    bento_name, version = parse_tag(tag)
    import radzoo

    build_ctx = Path(radzoo.__file__).resolve().parent.parent  # src/ of a checkout, or site-packages
    with tempfile.TemporaryDirectory(prefix="radzoo-bento-") as tmp:
        stored = {n: store_model(n, precision=precision, random_weights=random_weights, seed=seed,
                                 workdir=Path(tmp), calibration=calibration) for n in names}
        models = {n: tag for n, (tag, _) in stored.items()}
        random = any(r for _, r in stored.values())
        options = bentofile(gpu=gpu, models=models, precision=precision, random_weights=random, name=bento_name)
        path = Path(tmp) / "bentofile.yaml"
        path.write_text(render_bentofile(options))
        return bentoml.bentos.build_bentofile(str(path), version=version, build_ctx=str(build_ctx))


__all__ = ["BENTO_PRECISIONS", "CPU_EXTRAS", "GPU_EXTRAS", "bentofile", "build_bento", "render_bentofile",
           "repository_bentofile", "requirements", "store_model"]
