"""QIDO-RS: which instances a query names, as plain UID triples, before any pixel is transferred.

Filters map to QIDO matching keys: studies and series to their UIDs, ``modalities`` to one query
per modality (a comma-separated list is not matched the same way by every server), ``since`` to
the study-date range ``YYYYMMDD-``. Results are de-duplicated on the SOP Instance UID and sorted,
so two runs over the same PACS state see the same order.

A study (or an explicitly requested series) that holds no image instances at all is reported as
a problem for the errors table; non-image instances themselves are returned flagged so the run
can record them as skipped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from radzoo.errors import InputError
from radzoo.pacs.connection import PacsConnection
from radzoo.pacs.image_classes import non_image_kind, sop_class_name

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TAGS = {"study": "0020000D", "series": "0020000E", "sop": "00080018", "sop_class": "00080016",
         "modality": "00080060", "frames": "00280008", "number": "00200013"}


@dataclass(frozen=True)
class InstanceRef:
    """One instance in the PACS: its UIDs and what QIDO says about it."""

    study: str
    series: str
    sop: str
    sop_class: str = ""
    modality: str = ""
    frames: int | None = None
    number: int | None = None

    @property
    def key(self) -> str:
        """The WADO-RS path below the DICOMweb root: the row key in outputs and errors."""
        return f"studies/{self.study}/series/{self.series}/instances/{self.sop}"

    @property
    def non_image(self) -> str | None:
        """Why this instance is not an image (``structured report ...``), or None."""
        return non_image_kind(self.sop_class)


@dataclass(frozen=True)
class QueryFilters:
    """QIDO filters of a run (all optional): studies, series, modalities, study date since."""

    studies: tuple[str, ...] = ()
    series: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    since: str | None = None  # YYYYMMDD

    @classmethod
    def parse(cls, studies: Iterable[str] = (), series: Iterable[str] = (), modality: str | Sequence[str] | None = None,
              since: str | dt.date | None = None) -> QueryFilters:
        """Validated filters from user input (``modality`` ``"CR,DX"`` or a list, ``since`` a date)."""
        studies = tuple(dict.fromkeys(_uid(u, "--study") for u in studies))
        series = tuple(dict.fromkeys(_uid(u, "--series") for u in series))
        if isinstance(modality, str):
            modality = modality.split(",")
        mods = tuple(dict.fromkeys(m.strip().upper() for m in (modality or []) if m.strip()))
        for m in mods:
            if not re.fullmatch(r"[A-Z0-9_]{1,16}", m):
                raise InputError(f"--modality: {m!r} is not a DICOM modality code (e.g. CR, DX, CT)")
        return cls(studies, series, mods, _date(since) if since is not None else None)

    def describe(self) -> str:
        parts = []
        if self.modalities:
            parts.append("modality " + ",".join(self.modalities))
        if self.since:
            parts.append(f"study date since {self.since}")
        return " with " + " and ".join(parts) if parts else ""


@dataclass
class QueryResult:
    instances: list[InstanceRef] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (key, error type, message)


def _uid(value: str, option: str) -> str:
    value = value.strip()
    if not _UID.match(value) or len(value) > 64:
        raise InputError(f"{option}: {value!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    return value


def _date(value: str | dt.date) -> str:
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    text = value.strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    raise InputError(f"--since: {value!r} is not a date (YYYY-MM-DD or YYYYMMDD)")


def _value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def _ref(item: dict[str, Any]) -> InstanceRef | None:
    study, series, sop = (_value(item, _TAGS[k]) for k in ("study", "series", "sop"))
    if not (study and series and sop):
        return None
    frames = _value(item, _TAGS["frames"])
    number = _value(item, _TAGS["number"])
    return InstanceRef(
        study=str(study), series=str(series), sop=str(sop),
        sop_class=str(_value(item, _TAGS["sop_class"]) or ""),
        modality=str(_value(item, _TAGS["modality"]) or ""),
        frames=int(frames) if frames not in (None, "") else None,
        number=int(number) if number not in (None, "") else None,
    )


def find_instances(conn: PacsConnection, filters: QueryFilters = QueryFilters(), *, study: str | None = None,
                   series: str | None = None, instance: str | None = None) -> QueryResult:
    """Instances matching ``filters`` (and the study/series/instance of a resource URL)."""
    studies = (study,) if study else filters.studies or (None,)
    if study and filters.studies and study not in filters.studies:
        raise InputError("the URL names a study and --study names others; give the study one way")
    series_list = (series,) if series else filters.series or (None,)
    mods = filters.modalities or (None,)
    found: dict[str, InstanceRef] = {}
    result = QueryResult()
    fields = ["SOPClassUID", "Modality", "NumberOfFrames", "InstanceNumber"]
    for st in studies:
        for se in series_list:
            scope_refs: list[InstanceRef] = []
            for mod in mods:
                search: dict[str, Any] = {}
                if mod:
                    search["Modality"] = mod
                if filters.since:
                    search["StudyDate"] = f"{filters.since}-"
                if se and not st:
                    search["SeriesInstanceUID"] = se
                if instance:
                    search["SOPInstanceUID"] = instance
                where = "/".join(p for p in (f"studies/{st}" if st else "", f"series/{se}" if se else "") if p)
                what = f"QIDO-RS search for instances{' in ' + where if where else ''}"
                items = conn.request(what, lambda c, st=st, se=se, search=search: c.search_for_instances(
                    study_instance_uid=st, series_instance_uid=se if st else None,
                    search_filters=search, fields=fields, get_remaining=True))
                for item in items:
                    ref = _ref(item)
                    if ref is not None:
                        scope_refs.append(ref)
            if (st or se) and not scope_refs:
                key = "/".join(p for p in (f"studies/{st}" if st else "", f"series/{se}" if se else "") if p)
                if instance:
                    key = f"{key}/instances/{instance}"
                result.problems.append((key, "NoMatch", f"{key}: no instances in the PACS{filters.describe()}"))
            for ref in scope_refs:
                found.setdefault(ref.sop, ref)
    refs = sorted(found.values(), key=lambda r: (r.study, r.series, r.number if r.number is not None else -1, r.sop))
    by_study: dict[str, list[InstanceRef]] = {}
    for ref in refs:
        by_study.setdefault(ref.study, []).append(ref)
    for st, members in by_study.items():
        if all(r.non_image for r in members):
            kinds = sorted({sop_class_name(r.sop_class) for r in members})
            result.problems.append(
                (f"studies/{st}", "NoImages",
                 f"studies/{st}: no image instances{filters.describe()} ({len(members)} non-image: {', '.join(kinds)})"))
    if not refs and not result.problems:
        result.problems.append((conn.url, "NoMatch", f"the PACS at {conn.url} returned no instances{filters.describe()}"))
    result.instances = refs
    return result
