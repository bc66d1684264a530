"""Input discovery for CT models: files and folders -> one work item per volume or DICOM series.

Rules (content decides, never the extension):

* a NIfTI (``.nii``, gzipped ``.nii.gz``), MHA/NRRD file or a ``.zip`` (a zipped DICOM series) is
  one ``"volume"`` item;
* DICOM slices are grouped by the folder that directly holds them: each such folder is one
  ``"series"`` item, so a folder tree gives one item per leaf series folder. A folder holding
  several series yields the series ``radzoo.io.read_volume`` picks (most slices, then thinnest;
  the row's ``qa_warnings`` says so);
* anything else is an ``"other"`` item: recorded as skipped when found by walking a folder, as a
  failure when named explicitly.

Resume key of a series: its ``sha256`` column is the sha256 of the member files' sha256 hex
digests, sorted and joined by newlines (content only: renaming slices or the folder's order does
not change it; adding, removing or editing a slice does). Its size is the members' total bytes
and its mtime the newest of the members and the folder, so an untouched series is skipped
without reading it.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from radzoo.extract.discovery import Discovery, InputItem, Problem, discover

_NIFTI_MAGIC = (b"n+1\x00", b"ni1\x00")
HEAD_BYTES = 1024


def sniff_volume(path: str | os.PathLike[str]) -> str:
    """``"nifti"``, ``"nrrd"``, ``"metaimage"``, ``"zip"``, ``"dicom"`` (a slice) or ``"unknown"``.

    Reads only the first KiB (and, for gzip, the first 352 decompressed bytes). Raises OSError
    when the file cannot be read."""
    from radzoo.io import sniff_format

    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as gz:
                inner = gz.read(352)
        except (OSError, EOFError):
            return "unknown"
        return "nifti" if inner[344:348] in _NIFTI_MAGIC else "unknown"
    if len(head) > 348 and head[344:348] in _NIFTI_MAGIC:
        return "nifti"
    if head.startswith(b"NRRD"):
        return "nrrd"
    if head.lstrip().startswith((b"ObjectType", b"NDims")):
        return "metaimage"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if sniff_format(head) == "dicom":
        return "dicom"
    return "unknown"


def discover_volumes(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    files_from: Iterable[str | os.PathLike[str]] = (),
) -> Discovery:
    """Expand ``inputs`` like :func:`radzoo.extract.discovery.discover`, then group DICOM slices into
    one item per folder. Items come in discovery order (series at their first slice)."""
    files = discover(inputs, files_from)
    found = Discovery(problems=list(files.problems))
    series: dict[str, list[InputItem]] = {}
    order: list[tuple[str, InputItem | str]] = []  # ("item", item) or ("series", folder)
    for item in files.items:
        try:
            kind = sniff_volume(item.path)
        except OSError as exc:
            found.problems.append(Problem(item.path, type(exc).__name__,
                                          f"cannot read {item.path}: {exc.strerror or exc}"))
            continue
        if kind == "dicom":
            folder = os.path.dirname(item.path)
            if folder not in series:
                series[folder] = []
                order.append(("series", folder))
            series[folder].append(item)
        elif kind == "unknown":
            order.append(("item", InputItem(item.path, item.size, item.mtime_ns, item.from_walk, kind="other")))
        else:
            order.append(("item", InputItem(item.path, item.size, item.mtime_ns, item.from_walk, kind="volume")))
    for what, value in order:
        if what == "item":
            assert isinstance(value, InputItem)
            found.items.append(value)
        else:
            assert isinstance(value, str)
            found.items.append(_series_item(value, series[value]))
    return found


def _series_item(folder: str, slices: list[InputItem]) -> InputItem:
    members = tuple(sorted(s.path for s in slices))
    mtime = max(s.mtime_ns for s in slices)
    try:
        mtime = max(mtime, int(os.stat(folder).st_mtime_ns))  # slices added or removed
    except OSError:
        pass
    return InputItem(folder, sum(s.size for s in slices), mtime, all(s.from_walk for s in slices),
                     kind="series", members=members)


def series_reads_whole_folder(item: InputItem) -> bool:
    """True when reading ``item.path`` as a folder reads exactly its member slices: no other DICOM
    file below it (a sub-folder series, a slice left out of an explicit file list)."""
    members = set(item.members)
    for p in Path(item.path).rglob("*"):
        if p.name.startswith(".") or str(p) in members or not p.is_file():
            continue
        try:
            if sniff_volume(p) == "dicom":
                return False
        except OSError:
            continue  # read_volume skips unreadable files as well
    return True
