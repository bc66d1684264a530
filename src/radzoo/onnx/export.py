"""``radzoo export DIR``: write ONNX graphs into an artifact, each proven equal to torch.

Exporter: the TorchScript-tracing exporter, ``torch.onnx.export(..., dynamo=False)``, opset 17.
It traces every zoo graph here in about a second and reproduces torch to ~1e-6 (parity below).
The dynamo exporter was tried as well: it needs ~8 s even for a single attention pool, and it
cannot follow LoVT's data-dependent sentence count without rewriting the network. The tracer's
weak spot, shapes frozen into constants, is exactly what the parity check catches: every graph
is run by onnxruntime on two input sets of different sizes along each dynamic axis and compared
with the canonical torch computation. Above ``parity_tol`` the export fails and nothing is written.

IGCL's DRACON graph encoder (RGCN + ``to_dense_batch``, data-dependent widths) is exported in a
padded form: graphs laid out on a fixed node count with masks (``onnx.graphs.IGCLGraphDense``),
parity-checked against the sparse torch encoder with and without the original's unmasked padding.
LoVT's and PRIOR's local (token/region) outputs are not exported: the zoo's ``embed`` API serves
global outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radzoo.errors import ArtifactError, InputError, RadzooError
from radzoo.onnx.graphs import GraphDef, graph_defs, reference_outputs
from radzoo.zoo.artifact import CARD, CONFIG
from radzoo.zoo.model import ZooModel
from radzoo.zoo.weights import sha256_file

#: ONNX opset written by ``export_model`` (LayerNormalization is native from 17 on).
DEFAULT_OPSET = 17
#: fp32 parity tolerance (max abs diff, torch vs onnxruntime) above which export fails.
PARITY_TOL = 1e-4
EXPORTER = "torch.onnx.export(dynamo=False) (TorchScript tracer)"
ONNX_DIR = "onnx"
#: Sections beside ``graphs`` that hold derived graphs of other precisions (``radzoo.onnx.precision_graphs``).
VARIANT_PRECISIONS = ("int8", "fp16")
#: How long a load waits for another process's export of the same graphs (ResNet-50: ~30 s).
LOCK_TIMEOUT_S = 900.0


class ParityError(RadzooError):
    """An exported graph does not reproduce torch within tolerance; nothing was written."""


def export_model(
    model: ZooModel,
    outputs: Iterable[str] | None = None,
    opset: int = DEFAULT_OPSET,
    parity_tol: float = PARITY_TOL,
) -> dict[str, Any]:
    """Export ``model``'s graphs into its artifact (``model.directory/onnx/*.onnx``) and record them
    in ``config.json`` (``radzoo.artifacts.export_artifact`` does this for a directory).

    ``outputs`` selects graphs by graph name (``image_trunk``, ``text_global``, ``patch_encoder``,
    ``gnn``, ``graph_global``) or image output name (``trunk``); ``None`` exports all. Graphs already exported from
    the same weights and not selected are kept, and so are precision variants (int8) of kept
    graphs. Returns the new ``onnx`` config section.
    Writes atomically under the artifact's export lock (a concurrent ``radzoo.load`` exporting the
    same artifact waits): everything goes to a temp dir inside the artifact first, then each file
    is moved into place with ``os.replace``, ``config.json`` last.
    """
    from radzoo.extras import require_extra

    require_extra("onnx", "onnxruntime", feature="ONNX export")  # fail early when it is missing

    if model.directory is None:
        raise ArtifactError(f"model {model.name!r} has no artifact directory to export into; save it first (zoo.save)")
    directory = Path(model.directory)
    check_export_args(opset, parity_tol)
    if model.device.type != "cpu":
        raise InputError(f"export traces on the CPU; load {directory} with device='cpu'")
    defs = _select(graph_defs(model), outputs, model.name)
    if not defs:
        raise InputError(f"model {model.name!r} has no exportable graphs")

    with export_lock(directory):
        config = current_config(model)
        weights_sha = config.get("weights", {}).get("sha256")
        previous = config.get("onnx") or {}
        chosen = {d.name for d in defs}
        kept: dict[str, Any] = {}
        if previous.get("opset") == opset:
            for name, entry in previous.get("graphs", {}).items():
                if (
                    name not in chosen
                    and entry.get("weights_sha256") == weights_sha
                    and (directory / entry.get("file", "")).is_file()
                ):
                    kept[name] = entry
        entries = export_graphs(model, defs, directory, opset, parity_tol, weights_sha)
        section = {**section_header(opset, parity_tol), "graphs": {**kept, **entries}}
        for precision in VARIANT_PRECISIONS:  # variants of graphs that were not re-exported stay valid
            variant = previous.get(precision) or {}
            still = {k: v for k, v in variant.get("graphs", {}).items() if k in kept}
            if still:
                section[precision] = {**variant, "graphs": still}
        write_onnx_section(directory, config, section)
    model.config["onnx"] = section
    return section


def check_export_args(opset: Any, parity_tol: Any) -> None:
    if not isinstance(parity_tol, (int, float)) or not parity_tol > 0:
        raise InputError(f"parity_tol must be a positive number, got {parity_tol!r}")
    if not isinstance(opset, int) or not 14 <= opset <= 20:
        raise InputError(f"opset must be an integer between 14 and 20, got {opset!r}")


def section_header(opset: int, parity_tol: float) -> dict[str, Any]:
    """What every ``onnx`` section records about how its graphs were made."""
    from radzoo.extras import require_extra

    ort = require_extra("onnx", "onnxruntime", feature="ONNX export")
    return {
        "opset": opset,
        "exporter": EXPORTER,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        "parity_tol": parity_tol,
    }


@contextlib.contextmanager
def export_lock(folder: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An inter-process lock on ``folder``'s ONNX exports (threads and processes alike).

    The lock file lives in ``$RADZOO_HOME/locks/`` (named by a hash of the folder's absolute path)
    so artifact folders stay clean; processes on other machines sharing a network folder are
    not coordinated. A process waiting longer than ``timeout`` seconds gets an ``ArtifactError``
    naming the lock file.
    """
    import hashlib

    from filelock import FileLock, Timeout

    from radzoo.zoo.home import radzoo_home

    locks = radzoo_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:24]
    path = locks / f"export-{key}.lock"
    lock = FileLock(str(path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise ArtifactError(
            f"waited {timeout:.0f} s for another process exporting ONNX graphs of {folder} (lock {path}); "
            "if no radzoo process is running, delete that file"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def current_config(model: ZooModel) -> dict[str, Any]:
    """``config.json`` as it is on disk now (another process may have added sections since the
    model was loaded), refused when its weights are no longer the model's."""
    from radzoo.zoo.artifact import read_config

    directory = Path(model.directory)  # type: ignore[arg-type]
    config = read_config(directory)
    loaded = model.config.get("weights", {}).get("sha256")
    if loaded and config.get("weights", {}).get("sha256") != loaded:
        raise ArtifactError(
            f"{directory / CONFIG} now describes other weights than the ones loaded; reload the artifact"
        )
    return config


def write_onnx_section(directory: Path, config: dict[str, Any], section: dict[str, Any]) -> None:
    """Replace the ``onnx`` section of ``config.json`` and re-render the card (each file atomically)."""
    from radzoo.zoo.card import render_card

    config = dict(config)
    config["onnx"] = section
    atomic_write_text(directory / CARD, render_card(config))
    atomic_write_text(directory / CONFIG, json.dumps(config, indent=2) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` through a temp file in the same folder and ``os.replace`` (never partial)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def export_graphs(
    model: ZooModel,
    defs: list[GraphDef],
    root: Path,
    opset: int,
    parity_tol: float,
    weights_sha: str | None,
) -> dict[str, Any]:
    """Export and parity-check ``defs``, then move them into ``root/onnx/``; returns their entries.

    Nothing lands in ``root/onnx/`` unless every graph passed: the files are written to a temp
    dir inside ``root`` and moved with ``os.replace`` at the end. Raises ``ParityError`` /
    ``ArtifactError`` naming the graph that failed.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=root))
    try:
        entries: dict[str, Any] = {}
        for graph in defs:
            path = tmp / graph.file
            path.parent.mkdir(parents=True, exist_ok=True)
            _export_one(graph, path, opset)
            diff = _parity(graph, path, model.device)
            if not diff <= parity_tol:
                raise ParityError(
                    f"{model.name}: ONNX graph {graph.name!r} differs from torch by {diff:.3g} "
                    f"(tolerance {parity_tol:g}); nothing was written to {root}"
                )
            entries[graph.name] = {
                "file": graph.file,
                "kind": graph.kind,
                **({"output": graph.output} if graph.output else {}),
                "inputs": graph.symbolic_shapes(),
                "outputs": graph.output_names,
                "dynamic_axes": {k: {str(i): n for i, n in v.items()} for k, v in graph.dynamic_axes.items()},
                "parity_max_abs_diff": float(diff),
                "sha256": sha256_file(path),
                "weights_sha256": weights_sha,
            }
        (root / ONNX_DIR).mkdir(exist_ok=True)
        for graph in defs:
            os.replace(tmp / graph.file, root / graph.file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entries


def _select(defs: list[GraphDef], outputs: Iterable[str] | None, model_name: str) -> list[GraphDef]:
    if outputs is None:
        return defs
    if isinstance(outputs, str):
        outputs = [outputs]
    by_name = {d.name: d for d in defs}
    by_output = {d.output: d for d in defs if d.output}
    chosen: dict[str, GraphDef] = {}
    for item in outputs:
        graph = by_name.get(item) or by_output.get(item)
        if graph is None:
            raise InputError(
                f"model {model_name!r} has no exportable graph or output {item!r}; "
                f"choose from {', '.join(by_name)}"
            )
        chosen[graph.name] = graph
    return list(chosen.values())


@contextlib.contextmanager
def _quiet_tracer():
    """Silence the tracer's expected warnings for this export only (never globally)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        yield


def _export_one(graph: GraphDef, path: Path, opset: int) -> None:
    from radzoo.extras import require_extra

    onnx = require_extra("onnx", "onnx", feature="ONNX export")

    args = tuple(torch.from_numpy(a) for a in graph.parity_inputs[0])
    graph.module.eval()
    try:
        with _quiet_tracer(), torch.no_grad():
            torch.onnx.export(
                graph.module,
                args,
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=graph.input_names,
                output_names=graph.output_names,
                dynamic_axes=graph.dynamic_axes,
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # the exporter raises many unrelated types; name the graph
        raise ArtifactError(f"ONNX export of graph {graph.name!r} failed: {type(exc).__name__}: {exc}") from exc


def _parity(graph: GraphDef, path: Path, device: torch.device) -> float:
    """Max abs diff between torch and onnxruntime over all parity input sets."""
    from radzoo.onnx.ort_runtime import make_session

    session = make_session(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    for inputs in graph.parity_inputs:
        ref = reference_outputs(graph, inputs, device)
        try:
            got = session.run(None, dict(zip(graph.input_names, inputs, strict=True)))[0]
        except Exception as exc:  # onnxruntime's own exception types
            shapes = ", ".join(f"{n}{list(a.shape)}" for n, a in zip(graph.input_names, inputs, strict=True))
            raise ParityError(
                f"exported graph {graph.name!r} cannot run on inputs {shapes} (a dynamic axis was "
                f"frozen during tracing?): {exc}; nothing was written"
            ) from exc
        if got.shape != ref.shape:
            return float("inf")
        if ref.size:
            diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
            worst = max(worst, diff if np.isfinite(diff) else float("inf"))
    return worst
