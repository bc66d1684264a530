"""Input discovery: files, folders (recursive), globs and file lists -> an ordered list of files.

Anything that names nothing (a missing file, a glob without matches, an empty folder, a folder
that cannot be listed) becomes a ``Problem`` for the errors table rather than stopping the run.
Files found by walking a folder are flagged ``from_walk``: when they turn out not to be images
(a README next to the DICOMs) they are recorded as skipped, not failed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from radzoo.errors import InputError

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputItem:
    """One input to embed. ``path`` is absolute; size and mtime feed the resume check.

    ``kind``: ``"file"`` (a 2D image file), ``"volume"`` (one-file CT volume: NIfTI, MHA/NRRD,
    zipped series), ``"series"`` (a folder of DICOM slices: ``members`` lists them; size is their
    sum, mtime the newest of them and the folder), ``"other"`` (not a volume; CT runs only) or
    ``"instance"`` (a DICOMweb instance: ``path`` is its WADO-RS path
    ``studies/S/series/R/instances/I``, ``uids`` (study, series, SOP instance), size and mtime 0;
    an instance is immutable, so its UIDs alone decide resume).
    """

    path: str
    size: int
    mtime_ns: int
    from_walk: bool = False
    kind: str = "file"
    members: tuple[str, ...] = ()
    uids: tuple[str, ...] = ()
    sop_class_uid: str = ""


@dataclass(frozen=True)
class Problem:
    """An input argument that yielded nothing usable."""

    path: str
    error_type: str
    message: str


@dataclass
class Discovery:
    items: list[InputItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def discover(inputs: Sequence[str | os.PathLike[str]], files_from: Iterable[str | os.PathLike[str]] = ()) -> Discovery:
    """Expand ``inputs`` (files, folders, globs, ``@list.txt``) and the lists in ``files_from``.

    A file list holds one path per line (blank lines and ``#`` comments ignored); relative paths
    are taken relative to the list's folder. Duplicates are dropped, first occurrence wins;
    folder contents come in sorted order so runs are reproducible.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found = Discovery()
    seen: set[str] = set()
    lists = [Path(p) for p in files_from]
    for raw in inputs:
        text = os.fspath(raw)
        if text.startswith("@") and not Path(text).exists():
            lists.append(Path(text[1:]))
            continue
        _expand(text, found, seen)
    for lst in lists:
        try:
            lines = lst.read_text().splitlines()
        except OSError as exc:
            found.problems.append(Problem(str(lst), "FileListError", f"cannot read file list {lst}: {exc.strerror or exc}"))
            continue
        except UnicodeDecodeError:
            found.problems.append(Problem(str(lst), "FileListError", f"file list {lst} is not a text file"))
            continue
        for line in lines:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = Path(entry).expanduser()
            if not path.is_absolute():
                path = lst.parent / path
            _expand(str(path), found, seen)
    if not found.items and not found.problems:
        raise InputError("no inputs given: pass files, folders, globs or @file-list")
    return found


def _expand(text: str, found: Discovery, seen: set[str]) -> None:
    path = Path(text).expanduser()
    if path.is_dir():
        _walk(path, found, seen)
    elif path.exists():
        _add(path, found, seen, from_walk=False)
    elif _GLOB_CHARS & set(text):
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        if not matches:
            found.problems.append(Problem(text, "NoMatch", f"glob {text!r} matched no files"))
        for m in matches:
            mp = Path(m)
            if mp.is_dir():
                _walk(mp, found, seen)
            else:
                _add(mp, found, seen, from_walk=False)
    else:
        found.problems.append(Problem(text, "FileNotFound", f"input {text} does not exist"))


def _walk(root: Path, found: Discovery, seen: set[str]) -> None:
    errors: list[OSError] = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue  # hidden files: .DS_Store, editor swap files
            count += _add(Path(dirpath) / name, found, seen, from_walk=True)
    for exc in errors:
        where = exc.filename or str(root)
        found.problems.append(
            Problem(str(where), "PermissionError" if isinstance(exc, PermissionError) else "OSError",
                    f"cannot list folder {where}: {exc.strerror or exc}")
        )
    if count == 0 and not errors:
        found.problems.append(Problem(str(root), "EmptyFolder", f"folder {root} contains no files"))


def _add(path: Path, found: Discovery, seen: set[str], *, from_walk: bool) -> int:
    absolute = os.path.abspath(path)
    if absolute in seen:
        return 1
    seen.add(absolute)
    try:
        st = os.stat(absolute)
    except OSError as exc:
        found.problems.append(Problem(absolute, type(exc).__name__, f"cannot stat {absolute}: {exc.strerror or exc}"))
        return 1
    if not os.path.isfile(absolute):
        found.problems.append(Problem(absolute, "NotAFile", f"{absolute} is not a regular file"))
        return 1
    found.items.append(InputItem(absolute, int(st.st_size), int(st.st_mtime_ns), from_walk))
    return 1
