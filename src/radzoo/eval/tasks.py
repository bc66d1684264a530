"""The evaluation tasks: ``linear_probe``, ``knn``, ``retrieval``, ``zero_shot``.

Each returns an :class:`~radzoo.eval.report_files.EvalReport` (and writes it when ``out`` is
given) with the model and its floors side by side:

* ``raw-pixels``: the same probe on downsampled pixels (probes only);
* ``random-init``: the same architecture with random weights (``radzoo.build``), same protocol;
* chance levels where a task has one (zero-shot, retrieval).

Models are opened through ``radzoo.load`` / ``radzoo.build`` only. Embeddings come from a finished
``radzoo extract`` folder (``features=``) or are computed by the extraction code into ``cache``
(default ``out/cache``), where later runs find them again.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import InputError
from radzoo.eval.embedding_join import (
    DEFAULT_PIXEL_SIZE,
    EmbeddingTable,
    compute_embeddings,
    raw_pixel_features,
    read_extraction,
)
from radzoo.eval.folding import plan_folds
from radzoo.eval.label_table import LabelledData, read_labels
from radzoo.eval.measures import CI_LEVEL, DEFAULT_BOOTSTRAP, THRESHOLD, bootstrap
from radzoo.eval.probes import ProbeSettings, probe_estimates, run_probe
from radzoo.eval.report_files import EvalReport, SystemResult

log = logging.getLogger(__name__)

BASELINES = ("raw-pixels", "random-init")
DEFAULT_BASELINE_SEED = 1


# ------------------------------------------------------------------------------------ helpers


def _data(data: LabelledData | str | os.PathLike[str], task: str, need_labels: bool = True) -> LabelledData:
    data = data if isinstance(data, LabelledData) else read_labels(data)
    if need_labels and not data.labels:
        raise InputError(f"{task}: no labels chosen in {data.source}; pass labels (--labels)")
    return data


def _check_baselines(baselines: Sequence[str], allowed: Sequence[str], task: str) -> list[str]:
    if isinstance(baselines, str):
        baselines = [baselines]
    out = list(dict.fromkeys(baselines))
    bad = [b for b in out if b not in allowed]
    if bad:
        raise InputError(f"{task}: baseline(s) {bad} not available; choose from {', '.join(allowed)}")
    return out


def _open(model: Any, runtime: str = "auto") -> Any:
    """A loaded model as is; a name or artifact folder through ``radzoo.load``."""
    if model is None or hasattr(model, "spec"):
        return model
    from radzoo.resolve import load

    return load(model, runtime=runtime)


def _spec_and_name(model: Any) -> tuple[Any, str]:
    if hasattr(model, "spec"):
        return model.spec, model.name
    from radzoo.resolve import spec_of

    spec = spec_of(model)[0]
    return spec, spec.name


def _cache_dir(cache: str | os.PathLike[str] | None, out: str | os.PathLike[str] | None, notes: list[str]) -> Path:
    if cache is not None:
        return Path(cache)
    if out is not None:
        return Path(out) / "cache"
    notes.append("embeddings were computed into a temporary folder (give out= or cache= to keep them)")
    return Path(tempfile.mkdtemp(prefix="radzoo-eval-cache-"))


def _model_table(model: Any, data: LabelledData, *, features: Any, join: str, drop_missing: bool,
                 pseudonym_secret: Any, output: str | None, cache: Path, batch_size: int, workers: int | None,
                 quiet: bool, runtime: str = "auto") -> tuple[EmbeddingTable, Any]:
    """The model's embeddings of ``data`` (reused or computed) and the opened model (None when
    the embeddings came from an extraction folder and no model object was given)."""
    if features is not None:
        table = read_extraction(features, data, join=join, drop_missing=drop_missing, pseudonym_secret=pseudonym_secret)
        if model is not None:
            _, name = _spec_and_name(model)
            if name != table.identity.get("model"):
                raise InputError(f"{features} holds embeddings of {table.identity.get('model')!r}, not of {name!r}")
        if output is not None and output != table.identity.get("output"):
            raise InputError(f"{features} holds output {table.identity.get('output')!r}, not {output!r}")
        return table, model if hasattr(model, "spec") else None
    if model is None:
        raise InputError("give a model, or features= (a radzoo extract output folder)")
    zmodel = _open(model, runtime)
    return compute_embeddings(zmodel, data, cache, output=output, batch_size=batch_size, workers=workers,
                              quiet=quiet), zmodel


def _random_init(model: Any, zmodel: Any, seed: int, tokenizer: bool = False) -> Any:
    from radzoo.resolve import build

    if model is None and zmodel is None:
        raise InputError("the random-init baseline needs the model (its architecture): pass model=")
    spec, _ = _spec_and_name(zmodel if zmodel is not None else model)
    device = getattr(zmodel, "device", None)
    tok = zmodel.assets.get("tokenizer") if (tokenizer and zmodel is not None) else None
    return build(spec, seed=seed, device=device, tokenizer=tok)


def _identity(table: EmbeddingTable, zmodel: Any) -> dict[str, Any]:
    out = {"name": table.identity.get("model"), **{k: v for k, v in table.identity.items() if k != "model"},
           "embeddings": table.source}
    if zmodel is not None:
        out["runtime"] = zmodel.runtime.name
    return out


def _align(n: int, tables: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows every system has, and each system's matrix restricted to them (in row order)."""
    common = np.arange(n)
    for rows, _ in tables.values():
        common = np.intersect1d(common, rows)
    out = {}
    for name, (rows, x) in tables.items():
        pos = {int(r): i for i, r in enumerate(rows)}
        out[name] = x[[pos[int(r)] for r in common]]
    return common, out


def _data_section(full: LabelledData, used: LabelledData, digest: str, join: str | None) -> dict[str, Any]:
    return {
        "labels_file": str(full.source),
        "n_rows_file": len(full),
        "n_rows": len(used),
        "n_groups": len(set(used.groups.tolist())),
        "group_column": used.group_column,
        "split_column": used.split_column,
        "join": join,
        "digest": digest,
        "labels": {s.name: {"column": s.column, "positive": s.positive,
                            "n_pos": int(used.y[:, j].sum()), "n_neg": int(len(used) - used.y[:, j].sum())}
                   for j, s in enumerate(used.specs)},
    }


def _file_hashes(data: LabelledData) -> list[str | None]:
    """sha256 of each row's image file (the data digest then follows the pixels, not the paths)."""
    from radzoo.extract.state import sha256_file

    return [sha256_file(p) if p is not None and p.is_file() else None for p in data.paths]


def _counts(data: LabelledData) -> dict[str, tuple[int, int]]:
    return {lab: (int(data.y[:, j].sum()), int(len(data) - data.y[:, j].sum())) for j, lab in enumerate(data.labels)}


def _random_notes(identity: dict[str, Any]) -> list[str]:
    if identity.get("random_weights"):
        return ["the model has RANDOM weights (explicitly requested): its numbers are a smoke test, not a result"]
    return []


# ----------------------------------------------------------------------------------- probes


def linear_probe(model: Any, data: LabelledData | str | os.PathLike[str], **kwargs: Any) -> EvalReport:
    """Logistic regression on frozen embeddings (C by grouped inner CV), per label, with
    patient-grouped k-fold or a given split, label fractions, bootstrap CIs and baselines.

    Keyword arguments: see :func:`probe`; ``settings`` defaults to ``ProbeSettings(kind="linear")``.
    """
    return probe(model, data, kind="linear", **kwargs)


def knn(model: Any, data: LabelledData | str | os.PathLike[str], **kwargs: Any) -> EvalReport:
    """Cosine kNN on frozen embeddings (k by grouped inner CV); otherwise as :func:`linear_probe`."""
    return probe(model, data, kind="knn", **kwargs)


def probe(
    model: Any,
    data: LabelledData | str | os.PathLike[str],
    *,
    kind: str = "linear",
    settings: ProbeSettings | None = None,
    features: str | os.PathLike[str] | None = None,
    join: str = "path",
    drop_missing: bool = False,
    pseudonym_secret: bytes | str | None = None,
    folds: int = 5,
    baselines: Sequence[str] = (),
    pixel_size: int = DEFAULT_PIXEL_SIZE,
    baseline_seed: int = DEFAULT_BASELINE_SEED,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    output: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    quiet: bool = True,
) -> EvalReport:
    """A frozen-embedding probe (``kind`` ``linear`` or ``knn``) of ``model`` on ``data``.

    ``model``: a loaded ``radzoo.Model``, a name or artifact folder (``radzoo.load``), or None with
    ``features``. ``features``: a finished ``radzoo extract`` folder joined to ``data`` by
    ``join`` (``path`` / ``sha256`` / ``sop_instance_uid``); rows missing there are an error
    unless ``drop_missing``. ``baselines``: ``raw-pixels`` and/or ``random-init`` (seed
    ``baseline_seed``). ``folds``: grouped k-fold (ignored when ``data`` has a split column).
    ``n_boot``: patient bootstrap resamples for the 95% CIs. ``out``: write the report there.
    """
    task = "linear-probe" if kind == "linear" else "knn"
    settings = settings or ProbeSettings(kind=kind)
    if settings.kind != kind:
        raise InputError(f"{task} needs ProbeSettings(kind={kind!r}), got kind {settings.kind!r}")
    if n_boot < 0:
        raise InputError(f"bootstrap resamples must be >= 0, got {n_boot}")
    baselines = _check_baselines(baselines, BASELINES, task)
    data = _data(data, task)
    notes: list[str] = []
    cache_dir = _cache_dir(cache, out, notes) if (features is None or "random-init" in baselines) else None
    table, zmodel = _model_table(model, data, features=features, join=join, drop_missing=drop_missing,
                                 pseudonym_secret=pseudonym_secret, output=output, cache=cache_dir or Path("."),
                                 batch_size=batch_size, workers=workers, quiet=quiet)
    systems: dict[str, dict[str, Any]] = {"model": {"kind": "model", "name": table.identity.get("model"),
                                                    "output": table.identity.get("output")}}
    matrices: dict[str, tuple[np.ndarray, np.ndarray]] = {"model": (table.rows, table.x)}
    dropped = list(table.dropped)
    if "raw-pixels" in baselines:
        px, px_dropped = raw_pixel_features(data, table.rows, pixel_size)
        ok = np.isfinite(px).all(axis=1)
        matrices["raw-pixels"] = (table.rows[ok], px[ok])
        dropped += px_dropped
        systems["raw-pixels"] = {"kind": "baseline", "description": f"{pixel_size}x{pixel_size} grayscale pixels "
                                 "(area-averaged, model-independent reading), same probe and folds"}
    if "random-init" in baselines:
        rnd = _random_init(model, zmodel, baseline_seed)
        assert cache_dir is not None
        rtable = compute_embeddings(rnd, data, cache_dir, output=table.identity.get("output"),
                                    batch_size=batch_size, workers=workers, quiet=quiet)
        matrices["random-init"] = (rtable.rows, rtable.x)
        dropped += [d for d in rtable.dropped if d not in dropped]
        systems["random-init"] = {"kind": "baseline", "seed": baseline_seed, "revision": rtable.identity.get("revision"),
                                  "description": f"same architecture, random weights (radzoo.build, seed {baseline_seed}), same probe and folds"}
    common, xs = _align(len(data), matrices)
    if common.size == 0:
        raise InputError(f"no row of {data.source} has embeddings for every system compared")
    used = data.subset(common)
    pos = {int(r): i for i, r in enumerate(table.rows)}
    digest = used.digest([table.sha256[pos[int(r)]] for r in common])
    plan = plan_folds(used, folds, seed)
    notes = plan.notes + notes + _random_notes(table.identity)
    results: list[SystemResult] = []
    skipped = list(plan.skipped)
    for name, x in xs.items():
        run = run_probe(x, used, plan, settings, seed)
        if name == "model":
            skipped += run.skipped
        if run.fallbacks:
            fixed = "C = 1" if kind == "linear" else "k = 10"
            notes.append(f"{name}: {run.fallbacks} fit(s) used the fixed {fixed}: too few patients of a class "
                         f"for {settings.inner_folds} inner folds")
        for fraction in settings.fractions:
            per_label, overall, oof = probe_estimates(run, used, fraction, n_boot=n_boot, seed=seed,
                                                      n_jobs=settings.n_jobs)
            metrics = dict(overall)
            for label, values in per_label.items():
                metrics.update({f"{label}/{m}": e for m, e in values.items()})
            curves = {}
            for j, label in enumerate(used.labels):
                rows = np.flatnonzero(np.isfinite(oof[:, j]))
                if rows.size:
                    curves[label] = (used.y[rows, j].astype(int), oof[rows, j])
            details = {
                "hyperparameter": "C" if kind == "linear" else "k",
                "chosen": {lab: run.chosen.get((fraction, 0, lab), []) for lab in used.labels},
                "fold_auroc": {lab: run.fold_auroc.get((fraction, 0, lab), []) for lab in used.labels},
            }
            results.append(SystemResult(name, metrics, fraction, settings.draws_for(fraction), details, curves))
    report = EvalReport(
        task=task,
        model=_identity(table, zmodel),
        systems=systems,
        data=_data_section(data, used, digest, join if features is not None else "computed"),
        seed=seed,
        protocol={"folds": plan.to_dict(), "probe": settings.to_dict(), "bootstrap": n_boot, "ci_level": CI_LEVEL,
                  "bootstrap_unit": "patient (paired: the same resamples for every system)", "threshold": THRESHOLD,
                  "predictions": "out of fold, pooled over folds"},
        results=results,
        rows=[f"{lab}/auroc" for lab in used.labels] + ["macro_auroc"],
        label_counts=_counts(used),
        skipped=skipped,
        dropped=dropped,
        notes=notes,
    )
    if out is not None:
        report.write(out)
    return report


# -------------------------------------------------------------------------------- zero-shot


def zero_shot(
    model: Any,
    data: LabelledData | str | os.PathLike[str],
    *,
    mode: str = "single-label",
    prompts: Any = None,
    baselines: Sequence[str] = (),
    baseline_seed: int = DEFAULT_BASELINE_SEED,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    batch_size: int = 16,
    out: str | os.PathLike[str] | None = None,
) -> EvalReport:
    """Zero-shot metrics of an image-text model on labelled images, with bootstrap CIs.

    Single-label (PRIOR's 5x200 protocol): accuracy, macro precision/recall/F1 and Cohen's kappa
    of the argmax, one-vs-rest AUROC per label. Multi-label: per-label AUROC/AP/F1/kappa (each
    label's positive vs negative prompts). ``baselines``: ``random-init``; chance is always shown.
    """
    from radzoo.eval.zeroshot_eval import MODES, score_images, single_label_rows, statistic_for

    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    baselines = _check_baselines(baselines, ("random-init",), "zero-shot")
    data = _data(data, "zero-shot")
    zmodel = _open(model, runtime="torch")  # prompt scoring runs the torch towers
    notes: list[str] = []
    keep = np.arange(len(data))
    if mode == "single-label":
        keep, notes = single_label_rows(data)
    sub = data.subset(keep)
    prob, ok, skipped = score_images(zmodel, sub, mode=mode, prompts=prompts, batch_size=batch_size)
    matrices = {"model": (ok, prob)}
    systems: dict[str, dict[str, Any]] = {"model": {"kind": "model", "name": zmodel.name}}
    if "random-init" in baselines:
        rnd = _random_init(model, zmodel, baseline_seed, tokenizer=True)
        rprob, rok, rskipped = score_images(rnd, sub, mode=mode, prompts=prompts, batch_size=batch_size)
        matrices["random-init"] = (rok, rprob)
        skipped += [s for s in rskipped if s not in skipped]
        systems["random-init"] = {"kind": "baseline", "seed": baseline_seed,
                                  "description": f"same architecture, random weights (radzoo.build, seed {baseline_seed}), same prompts"}
    common, probs = _align(len(sub), matrices)
    used = sub.subset(common)
    results = []
    for name, p in probs.items():
        est = bootstrap(statistic_for(used.y, p, used.labels, mode), used.groups, n_boot=n_boot, seed=seed)
        curves = {lab: (used.y[:, j].astype(int), p[:, j]) for j, lab in enumerate(used.labels)}
        results.append(SystemResult(name, est, None, 1, {}, curves))
    n_labels = len(used.labels)
    if mode == "single-label":
        rows = ["accuracy", "macro_f1", "kappa", "macro_auroc"]
        chance = {"accuracy": 1.0 / n_labels, "kappa": 0.0, "macro_auroc": 0.5}
    else:
        rows = ["accuracy", "macro_auroc"]
        chance = {"macro_auroc": 0.5}
    rows += [f"{lab}/auroc" for lab in used.labels]
    chance.update({f"{lab}/auroc": 0.5 for lab in used.labels})
    ident = {"name": zmodel.name, "revision": zmodel.revision, "preprocess": zmodel.spec.preprocess.digest(),
             "random_weights": bool(zmodel.random_init), "runtime": zmodel.runtime.name}
    report = EvalReport(
        task="zero-shot",
        model=ident,
        systems=systems,
        data=_data_section(data, used, used.digest(_file_hashes(used)), None),
        seed=seed,
        protocol={"mode": mode, "prompts": prompts if isinstance(prompts, (str, type(None))) else "user prompts",
                  "bootstrap": n_boot, "ci_level": CI_LEVEL, "bootstrap_unit": "patient (paired)",
                  "threshold": THRESHOLD if mode == "multi-label" else "argmax"},
        results=results,
        rows=rows,
        label_counts=_counts(used),
        chance=chance,
        dropped=skipped,
        notes=notes + _random_notes(ident),
    )
    if out is not None:
        report.write(out)
    return report


# -------------------------------------------------------------------------------- retrieval


def retrieval(
    model: Any,
    data: LabelledData | str | os.PathLike[str],
    *,
    features: str | os.PathLike[str] | None = None,
    join: str = "path",
    drop_missing: bool = False,
    pseudonym_secret: bytes | str | None = None,
    baselines: Sequence[str] = (),
    baseline_seed: int = DEFAULT_BASELINE_SEED,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    cache: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    quiet: bool = True,
) -> EvalReport:
    """Image->text and text->image Recall@1/5/10 of an image-text model on paired data
    (``data.texts``: read the labels CSV with ``text_column=``)."""
    from radzoo.eval.retrieval import JOINT_OUTPUT, KS, chance, hits, statistic_for, text_embeddings

    baselines = _check_baselines(baselines, ("random-init",), "retrieval")
    data = _data(data, "retrieval", need_labels=False)
    if data.texts is None:
        raise InputError(f"retrieval needs paired texts: read {data.source} with a text column (--text-column)")
    zmodel = _open(model, runtime="torch")
    if zmodel is None:
        raise InputError("retrieval needs the model (its text tower encodes the texts)")
    zmodel.spec.require("text", "image-text retrieval")
    notes: list[str] = []
    cache_dir = _cache_dir(cache, out, notes) if (features is None or baselines) else Path(".")
    table, _ = _model_table(zmodel, data, features=features, join=join, drop_missing=drop_missing,
                            pseudonym_secret=pseudonym_secret, output=JOINT_OUTPUT, cache=cache_dir,
                            batch_size=batch_size, workers=workers, quiet=quiet, runtime="torch")
    models = {"model": zmodel}
    matrices = {"model": (table.rows, table.x)}
    systems: dict[str, dict[str, Any]] = {"model": {"kind": "model", "name": zmodel.name, "output": JOINT_OUTPUT}}
    dropped = list(table.dropped)
    if "random-init" in baselines:
        rnd = _random_init(model, zmodel, baseline_seed, tokenizer=True)
        rtable = compute_embeddings(rnd, data, cache_dir, output=JOINT_OUTPUT, batch_size=batch_size,
                                    workers=workers, quiet=quiet)
        models["random-init"] = rnd
        matrices["random-init"] = (rtable.rows, rtable.x)
        dropped += [d for d in rtable.dropped if d not in dropped]
        systems["random-init"] = {"kind": "baseline", "seed": baseline_seed,
                                  "description": f"same architecture, random weights (radzoo.build, seed {baseline_seed})"}
    common, xs = _align(len(data), matrices)
    if common.size < 2:
        raise InputError(f"retrieval needs at least 2 paired rows with embeddings; {data.source} has {common.size}")
    used = data.subset(common)
    assert used.texts is not None
    gallery = list(dict.fromkeys(used.texts))
    index = {t: i for i, t in enumerate(gallery)}
    text_of_image = np.asarray([index[t] for t in used.texts], dtype=np.int64)
    results = []
    for name, x in xs.items():
        per_query = hits(x, text_embeddings(models[name], gallery), text_of_image, KS)
        est = bootstrap(statistic_for(per_query, text_of_image, len(gallery)), used.groups, n_boot=n_boot, seed=seed)
        results.append(SystemResult(name, est, None, 1, {}, {}))
    if len(gallery) < len(used):
        notes.append(f"{len(used)} images share {len(gallery)} distinct texts: identical texts are one gallery entry")
    pos = {int(r): i for i, r in enumerate(table.rows)}
    report = EvalReport(
        task="retrieval",
        model=_identity(table, zmodel),
        systems=systems,
        data=_data_section(data, used, used.digest([table.sha256[pos[int(r)]] for r in common]),
                           join if features is not None else "computed") | {"n_texts": len(gallery)},
        seed=seed,
        protocol={"ks": list(KS), "similarity": "cosine in the joint space (image output 'global')",
                  "bootstrap": n_boot, "ci_level": CI_LEVEL,
                  "bootstrap_unit": "patient (queries resampled, galleries whole; paired)"},
        results=results,
        rows=[f"image_to_text/R@{k}" for k in KS] + [f"text_to_image/R@{k}" for k in KS],
        chance=chance(text_of_image, len(gallery), KS),
        dropped=dropped,
        notes=notes + _random_notes(table.identity),
    )
    if out is not None:
        report.write(out)
    return report


# ---------------------------------------------------------------------------- case retrieval


def case_retrieval(
    index: Any,
    data: LabelledData | str | os.PathLike[str],
    *,
    model: Any = None,
    pseudonym_secret: bytes | str | None = None,
    baselines: Sequence[str] = (),
    pixel_size: int = DEFAULT_PIXEL_SIZE,
    baseline_seed: int = DEFAULT_BASELINE_SEED,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    cache: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    quiet: bool = True,
) -> EvalReport:
    """P@1/5/10 and mAP@10 (single-label rows) and label-overlap NDCG@10 (multi-label rows) of a
    similar-case index (``radzoo.search``) on labelled images it holds, each query's patient
    excluded at search time; ANN recall@10 against exact search reported apart
    (``radzoo.eval.case_retrieval``). ``model`` (name, folder or loaded) is needed only for the
    random-init floor (default: the index's model name)."""
    from radzoo.eval.case_retrieval import (
        METRICS,
        ann_recall,
        exact_search,
        join_index_rows,
        neighbours,
        per_query,
        statistic,
    )
    from radzoo.search.index_open import open_index

    baselines = _check_baselines(baselines, BASELINES, "case-retrieval")
    data = _data(data, "case-retrieval")
    idx = index if hasattr(index, "search_vectors") else open_index(index)
    if not hasattr(idx, "store"):
        raise InputError("case-retrieval evaluates a local index folder (radzoo index build), not a milvus:// URI")
    data_rows, index_rows = join_index_rows(idx, data, pseudonym_secret)
    used = data.subset(data_rows)
    groups = used.groups
    vectors = np.asarray(idx.store.vectors[index_rows], np.float32)

    def index_search(query: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(idx.live), bool)
        mask[index_rows[allowed]] = True
        _, ids = idx.store.search(query[None], 10, mask & idx.live)
        position = {int(r): i for i, r in enumerate(index_rows)}
        return np.asarray([position[int(r)] for r in ids[0] if r >= 0], np.int64)

    notes: list[str] = []
    nbrs = {"model": neighbours(index_search, vectors, groups)}
    exact_model = neighbours(exact_search(vectors), vectors, groups)
    systems: dict[str, dict[str, Any]] = {"model": {"kind": "model", "name": idx.model_identity.get("model"),
                                                    "output": idx.model_identity.get("output"),
                                                    "backend": idx.backend}}
    dropped: list[dict[str, Any]] = []
    keep = np.ones(len(used), bool)
    if "raw-pixels" in baselines:
        px, px_dropped = raw_pixel_features(used, np.arange(len(used)), pixel_size)
        dropped += px_dropped
        keep &= np.isfinite(px).all(axis=1)
        nbrs["raw-pixels"] = neighbours(exact_search(np.nan_to_num(px)), np.nan_to_num(px), groups)
        systems["raw-pixels"] = {"kind": "baseline", "size": pixel_size,
                                 "description": f"{pixel_size}x{pixel_size} downsampled pixels, exact cosine search"}
    if "random-init" in baselines:
        rnd = _random_init(model or idx.model_identity.get("model"), _open(model) if model is not None else None,
                           baseline_seed)
        notes_cache = _cache_dir(cache, out, notes)
        rtable = compute_embeddings(rnd, used, notes_cache, output=idx.model_identity.get("output"),
                                    batch_size=batch_size, workers=workers, quiet=quiet)
        rx = np.full((len(used), rtable.x.shape[1]), np.nan, np.float32)
        rx[rtable.rows] = rtable.x
        keep &= np.isfinite(rx).all(axis=1)
        dropped += rtable.dropped
        nbrs["random-init"] = neighbours(exact_search(np.nan_to_num(rx)), np.nan_to_num(rx), groups)
        systems["random-init"] = {"kind": "baseline", "seed": baseline_seed,
                                  "description": f"same architecture, random weights (radzoo.build, seed {baseline_seed}), "
                                                 "exact cosine search"}
    y = used.y.astype(np.int64)
    results = []
    for name, found in nbrs.items():
        values = {k: np.where(keep, v, np.nan) for k, v in per_query(found, y).items()}
        est = bootstrap(statistic(values), groups, n_boot=n_boot, seed=seed)
        results.append(SystemResult(name, est, None, 1, {}, {}))
    recall = ann_recall(nbrs["model"], exact_model)
    n_single, n_multi = int((y.sum(axis=1) == 1).sum()), int((y.sum(axis=1) > 1).sum())
    notes.append(f"index search vs exact search on the same queries: recall@10 {recall:.4f} ({idx.backend}); "
                 "the encoder's numbers above use the index's own neighbours")
    if n_single == 0:
        notes.append("no single-label rows among the chosen labels: P@k and mAP@10 are undefined")
    if n_multi == 0:
        notes.append("no multi-label rows among the chosen labels: NDCG@10 is undefined")
    report = EvalReport(
        task="case-retrieval",
        model={"name": idx.model_identity.get("model"), **{k: v for k, v in idx.model_identity.items() if k != "model"},
               "embeddings": f"index {idx.path}"},
        systems=systems,
        data=_data_section(data, used, used.digest(), "sha256 (index)")
        | {"n_single_label": n_single, "n_multi_label": n_multi, "index_rows": len(idx)},
        seed=seed,
        protocol={"k": 10, "queries": "labelled index rows; the query's patient excluded at search time",
                  "gallery": "labelled, live index rows", "single_label": "P@1/5/10, mAP@10 (same label)",
                  "multi_label": "NDCG@10, relevance = shared labels (sklearn ndcg_score)",
                  "bootstrap": n_boot, "ci_level": CI_LEVEL, "bootstrap_unit": "patient (queries resampled)",
                  "ann_audit": {"recall_at_10_vs_exact": recall, "backend": idx.backend,
                                "build_time_recall_at_10": (idx.manifest.get("ann") or {}).get("recall_at_10")}},
        results=results,
        rows=list(METRICS),
        label_counts=_counts(used),
        dropped=dropped,
        notes=notes + _random_notes(idx.model_identity),
    )
    if out is not None:
        report.write(out)
    return report
