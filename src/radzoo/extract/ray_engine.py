"""``engine="ray"``: the same two core functions on Ray Data.

Decode/preprocess runs as Ray tasks (``prepare_item``), inference in a pool of actors that each
load the model once (``embed_prepared``); the driver owns the output folder through the same
``Session`` as the local engine, so the format and resume semantics are identical. Tasks and
actors ask for fractional CPUs: on a 2-CPU machine, whole-CPU actors starve the read stage.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from radzoo.extract.discovery import InputItem
from radzoo.extract.session import Session
from radzoo.extract.work import Failure, Prepared, embed_prepared, prepare_item

_UIDS = ("sop_instance_uid", "series_instance_uid", "study_instance_uid")
_HEADER = ("patient_id", "modality", "view_position", "study_date")  # for radzoo.search


def _prepare_batch(batch: dict[str, np.ndarray], preprocess: Any, modality: str) -> dict[str, np.ndarray]:
    """Ray task: a batch of input rows -> prepared rows (pixels as bytes, failures as values)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    rows = []
    for path, size, mtime, walk in zip(batch["path"], batch["size"], batch["mtime_ns"], batch["from_walk"], strict=True):
        item = InputItem(str(path), int(size), int(mtime), bool(walk))
        rows.append(_to_row(prepare_item(item, preprocess, modality)))
    return _columns(rows)


def _to_row(r: Prepared | Failure) -> dict[str, Any]:
    if isinstance(r, Prepared):
        return {
            "ok": True, "skipped": False, "path": r.path, "sha256": r.sha256, "size": r.size, "mtime_ns": r.mtime_ns,
            "sop_instance_uid": r.sop_instance_uid or "", "series_instance_uid": r.series_instance_uid or "",
            "study_instance_uid": r.study_instance_uid or "", "error_type": "", "message": "",
            **{k: getattr(r, k) or "" for k in _HEADER},
            "shape": ",".join(str(n) for n in r.pixels.shape), "data": r.pixels.tobytes(),
        }
    return {
        "ok": False, "skipped": r.skipped, "path": r.path, "sha256": "", "size": -1 if r.size is None else r.size,
        "mtime_ns": -1 if r.mtime_ns is None else r.mtime_ns, "sop_instance_uid": "", "series_instance_uid": "",
        "study_instance_uid": "", "error_type": r.error_type, "message": r.message,
        **dict.fromkeys(_HEADER, ""), "shape": "", "data": b"",
    }


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys = list(_to_row(Failure("", 0, 0, "", "")).keys())
    out: dict[str, np.ndarray] = {}
    for k in keys:
        values = [r[k] for r in rows]
        if k in ("ok", "skipped"):
            out[k] = np.array(values, dtype=bool)
        elif k in ("size", "mtime_ns"):
            out[k] = np.array(values, dtype=np.int64)
        else:
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            out[k] = arr
    return out


def _from_row(row: dict[str, Any]) -> Prepared | Failure:
    opt = {k: (str(row[k]) or None) for k in (*_UIDS, *_HEADER)}
    if row["ok"]:
        shape = tuple(int(n) for n in str(row["shape"]).split(","))
        pixels = np.frombuffer(row["data"], dtype=np.float32).reshape(shape)
        return Prepared(str(row["path"]), str(row["sha256"]), int(row["size"]), int(row["mtime_ns"]), pixels, **opt)
    size = int(row["size"])
    mtime = int(row["mtime_ns"])
    return Failure(str(row["path"]), None if size < 0 else size, None if mtime < 0 else mtime,
                   str(row["error_type"]), str(row["message"]), bool(row["skipped"]))


class _EmbedActor:
    """Holds the model; turns prepared rows into embedding rows (``data`` = float32 bytes)."""

    def __init__(self, model_ref: str, random_weights: bool, runtime: str, device: str | None, output: str,
                 threads: int, seed: int = 0, precision: str = "fp32") -> None:
        from radzoo.resolve import load

        self.model = load(model_ref, random_weights=random_weights, seed=seed, runtime=runtime, device=device,
                          threads=threads, precision=precision)
        self.output = output

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["path"])
        rows = [{k: batch[k][i] for k in batch} for i in range(n)]
        results = [_from_row(r) for r in rows]
        prepared = [r for r in results if isinstance(r, Prepared)]
        embedded, infer_failures = embed_prepared(self.model, prepared, self.output)
        out_rows = []
        for p, emb in embedded:
            row = _to_row(p)
            row["shape"] = str(emb.shape[0])
            row["data"] = np.asarray(emb, dtype=np.float32).tobytes()
            out_rows.append(row)
        out_rows += [_to_row(r) for r in results if isinstance(r, Failure)]
        out_rows += [_to_row(f) for f in infer_failures]
        return _columns(out_rows)


def run_ray(
    session: Session,
    model: Any,
    items: list[InputItem],
    *,
    model_ref: str,
    random_weights: bool,
    seed: int = 0,
    runtime: str,
    device: str | None,
    batch_size: int,
    threads: int,
    precision: str = "fp32",
    address: str | None = None,
    num_cpus: int | None = None,
    actors: int = 1,
    actor_cpus: float = 0.5,
    task_cpus: float = 0.5,
) -> None:
    """Run ``items`` through Ray Data into ``session`` (starts a local Ray unless one is running
    or ``address`` names a cluster; shuts down only what it started)."""
    from radzoo.extras import require_extra

    ray = require_extra("ray", "ray", feature="engine='ray'")
    ray_data = require_extra("ray", "ray.data", feature="engine='ray'")
    ActorPoolStrategy, DataContext = ray_data.ActorPoolStrategy, ray_data.DataContext
    if not items:
        return
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            from radzoo.extract.local import cpu_count

            ray.init(num_cpus=num_cpus or cpu_count(), **kwargs)
        started = True
    try:
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.from_items(
            [{"path": i.path, "size": i.size, "mtime_ns": i.mtime_ns, "from_walk": i.from_walk} for i in items],
            override_num_blocks=max(1, -(-len(items) // batch_size)),
        )
        ds = ds.map_batches(
            _prepare_batch, batch_size=batch_size, num_cpus=task_cpus,
            fn_kwargs={"preprocess": model.spec.preprocess, "modality": model.spec.modality},
        )
        ds = ds.map_batches(
            _EmbedActor, batch_size=batch_size, num_cpus=actor_cpus, compute=ActorPoolStrategy(size=actors),
            fn_constructor_kwargs={"model_ref": model_ref, "random_weights": random_weights, "seed": seed, "runtime": runtime,
                                   "precision": precision, "device": device, "output": session.ident.output, "threads": threads},
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            n = len(batch["path"])
            embedded: list[tuple[Prepared, np.ndarray]] = []
            failures: list[Failure] = []
            for i in range(n):
                row = {k: batch[k][i] for k in batch}
                if row["ok"]:
                    emb = np.frombuffer(row["data"], dtype=np.float32).copy()
                    row["data"] = np.zeros(0, dtype=np.float32).tobytes()
                    row["shape"] = "0"
                    p = _from_row(row)
                    assert isinstance(p, Prepared)
                    embedded.append((p, emb))
                else:
                    f = _from_row(row)
                    assert isinstance(f, Failure)
                    failures.append(f)
            fresh = {id(p) for p in session.accept([p for p, _ in embedded])}
            session.record([(p, e) for p, e in embedded if id(p) in fresh], failures)
    finally:
        if started:
            ray.shutdown()
