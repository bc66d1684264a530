"""The graph-CT patch cache: each CT is read, segmented and registered once; epochs read patches.

Every volume (NIfTI, MHA/NRRD, DICOM series folder or zipped series) goes through the same
``radzoo.ct`` pipeline that ``radzoo ct-features`` runs (``radzoo.ct.prepare_ct``: lung mask,
affine mask-to-atlas registration, the 581 atlas landmarks mapped into the subject), and its 581
patches of 32^3 voxels of the 1 mm B-spline grid are stored once, as the original's
``patch/<sid>_patch.npy`` (METHODS 5.3 step 4):

* HU clipped to [-1024, 240] and rounded to **int16** (lossless for the original, which resampled
  int16 CTs into int16 images); the model's ``(HU + 1024) / 632 - 1`` is applied at training time;
* with the patch corners (subject 1 mm grid indices: the overlap graph is rebuilt from them) and
  each patch's lung fraction.

Layout of the cache directory::

    manifest.json               format, key (see below), complete flag, per-subject rows, exclusions
    subjects/<sid>.safetensors  patches int16 [581, 32, 32, 32], corners int64 [581, 3],
                                lung_fraction float32 [581] (memory-mapped when read)

**Key.** The manifest records what the patches depend on: the spec's preprocessing digest, the
sha256 of the atlas mask and landmark files, the patch size, the registration settings, the
segmenter and this module's pipeline version. A cache made with another atlas or spec version
is refused when opened. **Atomicity.** Each subject file is written to a temp name and renamed,
then the manifest is replaced; the manifest says ``complete: false`` until every input has been
handled, so an interrupted build is detected (and resumed: finished subjects are kept).
**QA.** Subjects without lungs, unreadable volumes and volumes whose QA fails (poor
registration, patches off the lungs) are logged, listed under ``excluded`` with the reason, and
left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radzoo.errors import ArtifactError, InputError, RadzooError

log = logging.getLogger(__name__)

FORMAT = "radzoo.training.ct_patch_cache/1"
#: Bump when what a cached patch holds changes (clipping, rounding, corner rule ...).
PIPELINE_VERSION = 1
MANIFEST = "manifest.json"
SUBJECTS = "subjects"
PATCH_SIZE = 32
HU_MIN, HU_MAX = -1024.0, 240.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def cache_key(model: Any, segmenter: str, registration: Any) -> dict[str, Any]:
    """What cached patches depend on (compared in full when a cache is opened)."""
    from radzoo.ct.landmarks import ATLAS_LANDMARKS, ATLAS_MASK

    missing = [n for n in (ATLAS_MASK, ATLAS_LANDMARKS) if n not in model.assets]
    if missing:
        raise ArtifactError(f"model {model.name!r} lacks the graph-CT atlas asset(s) {missing}")
    return {
        "pipeline_version": PIPELINE_VERSION,
        "patch_size": PATCH_SIZE,
        "preprocess_digest": model.spec.preprocess.digest(),
        "atlas_mask_sha256": _sha256(Path(model.assets[ATLAS_MASK])),
        "atlas_landmarks_sha256": _sha256(Path(model.assets[ATLAS_LANDMARKS])),
        "num_patches": int(model.spec.arch_args.get("num_patches", 581)),
        "segmenter": segmenter,
        "registration": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(registration).items()},
    }


@dataclass
class BuildReport:
    """What a cache build did: counts, per-volume seconds and where the time went."""

    cached: int = 0  # already in the cache from an earlier (possibly interrupted) build
    built: int = 0
    excluded: dict[str, str] = field(default_factory=dict)  # sid -> reason
    seconds: dict[str, float] = field(default_factory=dict)  # sid -> wall seconds of the build
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over built volumes

    @property
    def registration_share(self) -> float:
        total = sum(self.stage_seconds.values())
        return self.stage_seconds.get("registration", 0.0) / total if total else 0.0


def subject_id(path: str, taken: set[str]) -> str:
    """A file-system-safe, unique subject id from a volume path (file stem or series folder name)."""
    name = os.path.basename(os.path.normpath(path))
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".zip"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "subject"
    sid, n = base, 2
    while sid in taken:
        sid, n = f"{base}-{n}", n + 1
    taken.add(sid)
    return sid


def _compact_qa(qa: dict[str, Any]) -> dict[str, Any]:
    keep = ("passed", "failures", "warnings", "lung_volume_ml", "patches_in_lung_fraction", "num_patches")
    out = {k: qa[k] for k in keep if k in qa}
    out["dice"] = qa.get("registration_similarity", {}).get("dice")
    return out


def _build_one(job: dict[str, Any]) -> dict[str, Any]:
    """Run one volume through ``radzoo.ct.prepare_ct`` and write its patch file (worker-safe)."""
    from safetensors.numpy import save_file

    from radzoo.ct.landmarks import load_atlas
    from radzoo.ct.patches import iter_patch_batches
    from radzoo.ct.pipeline import prepare_ct
    from radzoo.ct.register import RegistrationSettings

    t0 = time.perf_counter()
    settings = RegistrationSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["registration"].items()})
    atlas = load_atlas({k: Path(v) for k, v in job["assets"].items()})
    try:
        prep = prepare_ct(job["source"], atlas, segmenter=job["segmenter"], registration=settings,
                          min_lung_ml=job["min_lung_ml"])
    except RadzooError as exc:
        return {"sid": job["sid"], "ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    qa = prep.qa()
    if not qa["passed"]:
        return {"sid": job["sid"], "ok": False, "reason": "QA failed: " + "; ".join(qa["failures"]), "qa": _compact_qa(qa)}
    t1 = time.perf_counter()
    patches = np.empty((len(prep.corners), PATCH_SIZE, PATCH_SIZE, PATCH_SIZE), dtype=np.int16)
    for start, batch in iter_patch_batches(prep.sampler, prep.corners, 64, PATCH_SIZE):
        patches[start : start + len(batch)] = np.rint(np.clip(batch[:, 0], HU_MIN, HU_MAX)).astype(np.int16)
    prep.timings["patches"] = time.perf_counter() - t1
    out = Path(job["out"])
    tmp = out.with_name(out.name + ".tmp")
    save_file(
        {"patches": patches, "corners": prep.corners.astype(np.int64), "lung_fraction": prep.lung_fraction},
        str(tmp), metadata={"format": FORMAT, "source": str(job["source"])},
    )
    os.replace(tmp, out)
    return {
        "sid": job["sid"], "ok": True, "qa": _compact_qa(qa),
        "timings": {k: round(v, 4) for k, v in prep.timings.items()},
        "seconds": time.perf_counter() - t0,
    }


def _source_stamp(path: str) -> dict[str, Any]:
    """Size and newest mtime of a file or of a series folder's files: the 'unchanged input' check."""
    p = Path(path)
    files = [q for q in p.rglob("*") if q.is_file()] if p.is_dir() else [p]
    stats = [q.stat() for q in files]
    return {"bytes": sum(s.st_size for s in stats), "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


def build_patch_cache(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    model: Any = "graphct_copdgene",
    *,
    segmenter: str = "auto",
    registration: Any = None,
    min_lung_ml: float = 300.0,
    workers: int = 1,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> BuildReport:
    """Build (or finish) the patch cache of the CT volumes under ``inputs`` (see module doc).

    ``inputs``: volume files, DICOM series folders, folders holding those, or ``@list.txt`` files
    (``radzoo.extract.volumes.discover_volumes``). ``model`` supplies the atlas and the spec (a
    name, artifact directory or loaded graph-CT model; weights are not used). ``workers`` > 1
    builds volumes in that many processes (registration is single-threaded).
    """
    from radzoo.ct.lungs import get_segmenter
    from radzoo.ct.register import RegistrationSettings

    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    zmodel = _graphct_model(model)
    seg_name = segmenter if isinstance(segmenter, str) else type(segmenter).__name__
    get_segmenter(segmenter)  # refuse an unknown segmenter before any work
    settings = registration or RegistrationSettings()
    key = cache_key(zmodel, seg_name, settings)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache_dir):
        manifest = _read_manifest(cache_dir)  # read under the lock: another builder may just have finished
        if manifest is not None and manifest["key"] != key:
            raise ArtifactError(_key_mismatch(cache_dir, manifest["key"], key))
        return _build(inputs, cache_dir, zmodel, key, manifest, segmenter, min_lung_ml, workers, progress)


@contextmanager
def _build_lock(cache_dir: Path) -> Iterator[None]:
    """One builder per cache directory: a second one fails at once instead of interleaving manifests."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no advisory locks, builds are not guarded
        yield
        return
    with open(cache_dir / ".build.lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"patch cache {cache_dir} is being built by another process; wait for it or use "
                             "another --cache directory") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _build(inputs: Any, cache_dir: Path, zmodel: Any, key: dict[str, Any], manifest: dict[str, Any] | None,
           segmenter: Any, min_lung_ml: float, workers: int,
           progress: Callable[[str, dict[str, Any]], None] | None) -> BuildReport:
    from radzoo.extract.volumes import discover_volumes

    found = discover_volumes(inputs if not isinstance(inputs, (str, os.PathLike)) else [inputs])
    if not found.items:
        detail = "; ".join(f"{p.path}: {p.message}" for p in found.problems) or "nothing found"
        raise InputError(f"no CT volumes found in {inputs} ({detail})")
    (cache_dir / SUBJECTS).mkdir(parents=True, exist_ok=True)
    for partial in (cache_dir / SUBJECTS).glob("*.tmp"):  # left by an interrupted build
        log.info("patch cache: removing %s left by an interrupted build", partial)
        partial.unlink(missing_ok=True)
    manifest = manifest or {"format": FORMAT, "key": key, "complete": False, "subjects": {}, "excluded": {}}
    manifest["complete"] = False
    report = BuildReport()
    for problem in found.problems:
        manifest["excluded"][problem.path] = {"source": problem.path, "reason": f"{problem.error_type}: {problem.message}"}
        report.excluded[problem.path] = problem.message
    by_source = {row["source"]: sid for sid, row in manifest["subjects"].items()}
    by_source.update({row["source"]: sid for sid, row in manifest["excluded"].items()})
    taken = set(manifest["subjects"]) | set(manifest["excluded"])
    jobs = []
    for item in found.items:
        stamp = _source_stamp(item.path) if item.kind != "other" else {}
        sid = by_source.get(item.path)
        if sid is not None:
            row = manifest["subjects"].get(sid) or manifest["excluded"].get(sid)
            if row.get("stamp") == stamp and (sid not in manifest["subjects"] or (cache_dir / SUBJECTS / row["file"]).is_file()):
                if sid in manifest["subjects"]:
                    report.cached += 1
                else:
                    report.excluded[sid] = row["reason"]
                continue
            manifest["subjects"].pop(sid, None)
            manifest["excluded"].pop(sid, None)
        else:
            sid = subject_id(item.path, taken)
        if item.kind == "other":
            manifest["excluded"][sid] = {"source": item.path, "reason": "not a CT volume (no NIfTI/MHA/NRRD/DICOM content)"}
            report.excluded[sid] = manifest["excluded"][sid]["reason"]
            continue
        jobs.append({
            "sid": sid, "source": item.path, "stamp": stamp, "out": str(cache_dir / SUBJECTS / f"{sid}.safetensors"),
            "segmenter": segmenter, "registration": key["registration"], "min_lung_ml": min_lung_ml,
            "assets": {k: str(v) for k, v in zmodel.assets.items()},
        })
    _write_manifest(cache_dir, manifest)

    def record(job: dict[str, Any], result: dict[str, Any]) -> None:
        sid = result["sid"]
        if result["ok"]:
            manifest["subjects"][sid] = {"source": job["source"], "stamp": job["stamp"], "file": f"{sid}.safetensors",
                                         "qa": result["qa"], "timings_s": result["timings"]}
            report.built += 1
            report.seconds[sid] = result["seconds"]
            for stage, sec in result["timings"].items():
                report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + sec
        else:
            log.warning("patch cache: %s (%s) left out: %s", sid, job["source"], result["reason"])
            manifest["excluded"][sid] = {"source": job["source"], "stamp": job["stamp"], "reason": result["reason"],
                                         **({"qa": result["qa"]} if "qa" in result else {})}
            report.excluded[sid] = result["reason"]
        _write_manifest(cache_dir, manifest)
        if progress is not None:
            progress(sid, result)

    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            record(job, _build_one(job))
    else:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for job, result in zip(jobs, pool.map(_build_one, jobs), strict=True):
                record(job, result)
    manifest["complete"] = True
    _write_manifest(cache_dir, manifest)
    return report


def _graphct_model(model: Any) -> Any:
    from radzoo.zoo.model import ZooModel

    if isinstance(model, ZooModel):
        zmodel = model
    else:
        from radzoo.resolve import build, load

        if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
            zmodel = load(model, runtime="torch", device="cpu")
        else:  # a registry name or spec: only its spec and atlas assets matter, never its weights
            zmodel = build(model, device="cpu")
    zmodel.spec.require("ct", "a graph-CT patch cache")
    return zmodel


def _read_manifest(cache_dir: Path) -> dict[str, Any] | None:
    path = cache_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"patch cache manifest {path} is not valid JSON ({exc}); delete {cache_dir} to rebuild") from exc
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a graph-CT patch cache (format {manifest.get('format')!r}, expected {FORMAT})")
    return manifest


def _write_manifest(cache_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = cache_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, cache_dir / MANIFEST)


def _key_mismatch(cache_dir: Path, cached: dict[str, Any], wanted: dict[str, Any]) -> str:
    diff = sorted(k for k in set(cached) | set(wanted) if cached.get(k) != wanted.get(k))
    return (
        f"patch cache {cache_dir} was built with another atlas, spec or pipeline version (differs in: "
        f"{', '.join(diff)}); rebuild it in a new directory (or delete it)"
    )


class PatchCache:
    """Read access to a complete patch cache: subjects, patches (int16 HU), corners, adjacency."""

    def __init__(self, cache_dir: str | os.PathLike[str], key: dict[str, Any] | None = None) -> None:
        self.directory = Path(cache_dir)
        manifest = _read_manifest(self.directory)
        if manifest is None:
            raise ArtifactError(f"{self.directory} is not a graph-CT patch cache (no {MANIFEST}); build it first")
        if key is not None and manifest["key"] != key:
            raise ArtifactError(_key_mismatch(self.directory, manifest["key"], key))
        if not manifest.get("complete"):
            raise ArtifactError(
                f"patch cache {self.directory} is incomplete (its build was interrupted): run the same "
                "`radzoo train graphct --data ... --cache ...` command again (or with --cache-only) to finish it"
            )
        self.manifest = manifest
        self.subjects = sorted(manifest["subjects"])
        if not self.subjects:
            reasons = "; ".join(f"{k}: {v['reason']}" for k, v in manifest["excluded"].items())
            raise InputError(f"patch cache {self.directory} holds no usable subject (all were excluded: {reasons})")
        for sid in self.subjects:
            if not (self.directory / SUBJECTS / manifest["subjects"][sid]["file"]).is_file():
                raise ArtifactError(f"patch cache {self.directory}: the file of subject {sid!r} is missing; rebuild")
        self.num_patches = int(manifest["key"]["num_patches"])
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.subjects)

    def _open(self, sid: str) -> Any:
        from safetensors import safe_open

        if self._pid != os.getpid():  # forked DataLoader workers open their own handles
            self._handles, self._pid = {}, os.getpid()
        if sid not in self._handles:
            path = self.directory / SUBJECTS / self.manifest["subjects"][sid]["file"]
            self._handles[sid] = safe_open(str(path), framework="numpy")
        return self._handles[sid]

    def patch(self, sid: str, landmark: int) -> np.ndarray:
        """int16 HU ``[32, 32, 32]`` of one landmark of one subject (a 64 KiB read)."""
        return self._open(sid).get_slice("patches")[landmark]

    def patches(self, sid: str) -> np.ndarray:
        """int16 HU ``[581, 32, 32, 32]`` of one subject."""
        return self._open(sid).get_tensor("patches")

    def corners(self, sid: str) -> np.ndarray:
        return self._open(sid).get_tensor("corners")

    def adjacency(self, sid: str) -> np.ndarray:
        """bool ``[581, 581]``: patch overlap > 0.13 in subject space (self-loops included)."""
        from radzoo.ct.graph import EDGE_THRESHOLD, overlap_adjacency

        return overlap_adjacency(self.corners(sid), PATCH_SIZE) > EDGE_THRESHOLD
