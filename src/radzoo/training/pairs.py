"""Paired chest X-rays and reports for image-report pretraining (LoVT, PRIOR).

Two input layouts:

* **A manifest** (``.csv`` or ``.jsonl``): columns ``image`` and ``report`` (the report text),
  optional ``patient_id``, ``study_id``, ``view`` and ``split``. Image paths are relative to the
  manifest's folder. Rows with the same ``study_id`` form one study (one of its images is drawn
  per epoch, as both originals draw one frontal image per study); a row without one is its own study.
* **The MIMIC-CXR-JPG layout**: ``<root>/files/pXX/pXXXXXXXX/sXXXXXXXX/*.jpg`` with the report
  ``sXXXXXXXX.txt`` beside the study folder (MIMIC-CXR's ``files/`` tree). Frontal views come from
  ``mimic-cxr-2.0.0-metadata.csv[.gz]`` (``ViewPosition``) in the root; the official split, when
  ``mimic-cxr-2.0.0-split.csv[.gz]`` is there, decides train / validate / test.

Reports go through :mod:`radzoo.training.reports` (FINDINGS + IMPRESSION, sentences). Bad rows
(missing image files, empty or unusable reports, too few sentences or tokens for the method,
non-frontal views) are logged, counted by reason and skipped, never fatal; an image that turns
out unreadable during training is logged and replaced by the next readable study, and counted
in the step metrics (``replaced_images``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from radzoo.errors import InputError
from radzoo.io.json_lines import json_objects
from radzoo.training.data import IMAGE_SUFFIXES, view_generator
from radzoo.training.reports import ReportText, parse_report

log = logging.getLogger(__name__)

#: Splits that train, and the names a validation split goes by (MIMIC says "validate").
TRAIN_SPLITS = ("", "train")
VAL_SPLITS = ("validate", "val", "valid", "validation")

#: How many bad rows of each kind are logged one by one before only the totals are.
_LOG_LIMIT = 20

METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLITS = "mimic-cxr-2.0.0-split.csv"


@dataclass(frozen=True)
class Study:
    """One training sample: a report and the frontal image(s) of its study."""

    images: tuple[Path, ...]
    report: ReportText
    where: str  # the manifest row or report file it came from
    patient_id: str = ""
    study_id: str = ""
    split: str = ""


@dataclass
class PairedData:
    """The usable studies of a source and the count of what was skipped, by reason."""

    source: str
    layout: str
    studies: list[Study]
    skipped: Counter = field(default_factory=Counter)

    def select(self, splits: Sequence[str]) -> PairedData:
        return PairedData(self.source, self.layout, [s for s in self.studies if s.split in splits], Counter(self.skipped))

    @property
    def has_splits(self) -> bool:
        return any(s.split for s in self.studies)

    def summary(self) -> dict[str, Any]:
        """What a run was trained on (provenance): counts, skip reasons, a digest of the study list."""
        names = "\n".join(f"{s.where}|{'|'.join(p.name for p in s.images)}" for s in self.studies)
        return {
            "source": self.source,
            "layout": self.layout,
            "studies": len(self.studies),
            "images": sum(len(s.images) for s in self.studies),
            "skipped": dict(sorted(self.skipped.items())),
            "study_list_sha256": hashlib.sha256(names.encode()).hexdigest(),
        }


@dataclass(frozen=True)
class Requirements:
    """Per-method limits on what a usable study is (see each method's config)."""

    views: tuple[str, ...] = ("PA", "AP")  # empty = every view
    min_sentences: int = 1
    min_tokens: int = 0


def parse_views(text: str) -> tuple[str, ...]:
    """``"PA,AP"`` -> ``("PA", "AP")``; ``"all"`` or empty -> ``()`` (no filter)."""
    if text.strip().lower() in ("", "all", "*"):
        return ()
    return tuple(v.strip().upper() for v in text.split(",") if v.strip())


class _Skips:
    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def __call__(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= _LOG_LIMIT:
            log.warning("skipped %s: %s", where, reason)
        elif self.counts[reason] == _LOG_LIMIT + 1:
            log.warning("more rows skipped for %r; only the totals are logged from now on", reason)


def _usable(report_text: str, where: str, req: Requirements, skip: _Skips, whole_if_headerless: bool) -> ReportText | None:
    if not report_text or not report_text.strip():
        skip("empty report", where)
        return None
    parsed = parse_report(report_text, whole_if_headerless)
    if parsed is None or not parsed.sentences:
        skip("no FINDINGS or IMPRESSION text", where)
        return None
    if len(parsed.sentences) < req.min_sentences:
        skip(f"fewer than {req.min_sentences} sentences", where)
        return None
    if parsed.n_tokens < req.min_tokens:
        skip(f"fewer than {req.min_tokens} tokens", where)
        return None
    return parsed


# ------------------------------------------------------------------------------------ manifest


def _manifest_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in ("image", "report") if c not in header]
            if missing:
                raise InputError(f"manifest {path} lacks the column(s) {missing} (it has {header})")
            for n, row in enumerate(reader, start=2):
                yield n, {k.strip(): v for k, v in row.items() if k is not None}
    elif suffix in (".jsonl", ".ndjson"):
        yield from json_objects(path, f"manifest {path}")
    else:
        raise InputError(f"manifest {path}: use a .csv or .jsonl file (columns image, report, ...), not {suffix!r}")


def read_manifest(path: str | Path, req: Requirements) -> PairedData:
    path = Path(path)
    base = path.parent
    skip = _Skips()
    groups: dict[str, list[tuple[Path, ReportText, str, dict[str, Any]]]] = {}
    order: list[str] = []
    for n, row in _manifest_rows(path):
        where = f"{path.name} {'row' if path.suffix.lower() == '.csv' else 'line'} {n}"
        image = str(row.get("image") or "").strip()
        if not image:
            skip("no image path", where)
            continue
        img = Path(image).expanduser()
        img = img if img.is_absolute() else base / img
        view = str(row.get("view") or "").strip().upper()
        if req.views and view and view not in req.views:
            skip(f"view {view} is not one of {','.join(req.views)}", where)
            continue
        if not img.is_file():
            skip("image file missing", f"{where} ({img})")
            continue
        report = _usable(str(row.get("report") or ""), where, req, skip, whole_if_headerless=True)
        if report is None:
            continue
        study = str(row.get("study_id") or "").strip() or f"\0row{n}"
        if study not in groups:
            groups[study] = []
            order.append(study)
        groups[study].append((img, report, where, row))
    studies = []
    for key in order:
        items = groups[key]
        img0, report, where, row = items[0]
        studies.append(
            Study(
                images=tuple(i[0] for i in items),
                report=report,
                where=where,
                patient_id=str(row.get("patient_id") or "").strip(),
                study_id="" if key.startswith("\0") else key,
                split=str(row.get("split") or "").strip().lower(),
            )
        )
    if not studies:
        raise InputError(f"manifest {path} has no usable image-report pairs (skipped: {dict(skip.counts) or 'nothing'})")
    return PairedData(str(path), "manifest", studies, skip.counts)


# ---------------------------------------------------------------------------------- MIMIC-CXR


def _find_csv(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_csv(path: Path) -> Iterator[dict[str, str]]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    yield from csv.DictReader(io.StringIO(raw.decode("utf-8")))


_PATIENT = re.compile(r"^p\d+$")
_STUDY = re.compile(r"^s\d+$")


def is_mimic_layout(root: Path) -> bool:
    files = root / "files"
    return files.is_dir() and any(_PATIENT.match(p.name) for p in files.iterdir() if p.is_dir())


def read_mimic(root: str | Path, req: Requirements) -> PairedData:
    root = Path(root)
    skip = _Skips()
    meta_path = _find_csv(root, METADATA)
    views: dict[str, str] = {}
    if req.views:
        if meta_path is None:
            raise InputError(
                f"MIMIC-CXR layout {root} has no {METADATA}(.gz): frontal views cannot be told from "
                "lateral ones; place the metadata CSV in that folder or pass --view=all"
            )
        views = {r["dicom_id"]: (r.get("ViewPosition") or "").strip().upper() for r in _read_csv(meta_path)}
    split_path = _find_csv(root, SPLITS)
    splits = {r["dicom_id"]: r["split"].strip().lower() for r in _read_csv(split_path)} if split_path else {}
    studies = []
    for pgroup in sorted((root / "files").iterdir()):
        if not pgroup.is_dir() or not _PATIENT.match(pgroup.name):
            continue
        for patient in sorted(pgroup.iterdir()):
            if not patient.is_dir() or not _PATIENT.match(patient.name):
                continue
            for study in sorted(patient.iterdir()):
                if not study.is_dir() or not _STUDY.match(study.name):
                    continue
                where = f"{patient.name}/{study.name}"
                images = sorted(p for p in study.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if req.views:
                    images = [p for p in images if views.get(p.stem, "") in req.views]
                if not images:
                    skip("no frontal image" if req.views else "no image", where)
                    continue
                report_file = patient / f"{study.name}.txt"
                if not report_file.is_file():
                    skip("report file missing", f"{where} ({report_file.name})")
                    continue
                text = report_file.read_text(encoding="utf-8", errors="replace")
                report = _usable(text, where, req, skip, whole_if_headerless=False)
                if report is None:
                    continue
                split = next((splits[p.stem] for p in images if p.stem in splits), "")
                studies.append(Study(tuple(images), report, where, patient.name[1:], study.name[1:], split))
    if not studies:
        raise InputError(f"MIMIC-CXR layout {root} has no usable studies (skipped: {dict(skip.counts) or 'nothing'})")
    return PairedData(str(root), "mimic-cxr", studies, skip.counts)


def read_pairs(source: str | Path, req: Requirements) -> PairedData:
    """Studies from a manifest file or a MIMIC-CXR-JPG folder, with skip counts (module docstring)."""
    source = Path(source).expanduser()
    if source.is_file():
        data = read_manifest(source, req)
    elif source.is_dir():
        if not is_mimic_layout(source):
            raise InputError(
                f"{source} is neither a manifest (.csv/.jsonl) nor a MIMIC-CXR-JPG folder "
                "(files/pXX/pXXXXXXXX/sXXXXXXXX/*.jpg with sXXXXXXXX.txt reports)"
            )
        data = read_mimic(source, req)
    else:
        raise InputError(f"paired data {source} does not exist (give a manifest .csv/.jsonl or a MIMIC-CXR-JPG folder)")
    if data.skipped:
        log.info("%s: %d studies usable; skipped %s", source, len(data.studies), dict(data.skipped))
    return data


# ------------------------------------------------------------------------------------- dataset


class PairedDataset(Dataset):
    """``dataset[i] -> {"image": [C, H, W], "sentences": [...], "replaced": 0|1}``.

    ``order(report)`` gives the method's sentence list (LoVT: findings then impression; PRIOR:
    impression then findings); ``text_augment(sentences, generator)`` and ``image_augment(pixels,
    generator)`` draw from generators seeded by ``(seed, epoch, index)``, so samples do not depend
    on the number of processes or workers. Call ``set_epoch`` before each epoch.
    """

    def __init__(
        self,
        studies: Sequence[Study],
        image_augment: Callable[[Any, torch.Generator], torch.Tensor],
        order: Callable[[ReportText], list[str]],
        text_augment: Callable[[list[str], torch.Generator], list[str]] | None = None,
        seed: int = 0,
    ) -> None:
        if not studies:
            raise InputError("no image-report pairs")
        self.studies = list(studies)
        self.image_augment = image_augment
        self.order = order
        self.text_augment = text_augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.studies)

    def _read(self, index: int, g: torch.Generator) -> torch.Tensor:
        from radzoo.io import read_image

        study = self.studies[index]
        path = study.images[int(torch.randint(len(study.images), (), generator=g))] if len(study.images) > 1 else study.images[0]
        return self.image_augment(read_image(path).pixels, g)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from radzoo.io import ImageReadError

        replaced = 0
        for attempt in range(min(len(self.studies), 16)):
            i = (index + attempt) % len(self.studies)
            g = view_generator(self.seed, self.epoch, i, 0)
            try:
                image = self._read(i, g)
            except ImageReadError as exc:
                log.warning("unreadable image in %s (%s); using the next study instead", self.studies[i].where, exc)
                replaced = 1
                continue
            sentences = self.order(self.studies[i].report)
            if self.text_augment is not None:
                sentences = self.text_augment(list(sentences), view_generator(self.seed, self.epoch, i, 1))
            return {"image": image, "sentences": list(sentences), "replaced": replaced}
        raise InputError(f"16 studies in a row from {self.studies[index].where} have unreadable images; check the data")


def collate_images(items: list[dict[str, Any]]) -> tuple[torch.Tensor, int]:
    """Stack the images of a batch; also the number of replaced (unreadable) studies."""
    return torch.stack([it["image"] for it in items]), sum(int(it["replaced"]) for it in items)
