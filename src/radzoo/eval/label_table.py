"""Labelled data for evaluation: which rows, which binary labels, which patient, which split.

A labels CSV holds a ``path`` column (relative paths start at ``image_root``, default the CSV's
folder), label columns, and optionally ``patient_id`` (grouping) and a split column. Rows can
also be keyed by ``sha256`` or ``sop_instance_uid`` columns to join a ``radzoo extract`` output.
PRIOR's ``chexpert_5x200.json`` is read too (zero-shot).

Label specs (``labels=``, CLI ``--labels``) pick and binarise columns::

    Effusion                 a 0/1 column
    Effusion=Pleural Effusion    ... renamed (the name zero-shot prompts use)
    view:AP                  positive where the cell equals "AP" (any other value: negative)
    view:AP=AP vs PA         ... renamed

Every problem names the file and the row (CSV line number, header = line 1) or the label.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from radzoo.errors import InputError
from radzoo.zeroshot.prompts import CHEXPERT5

_TRUE = {"1", "1.0", "true"}
_FALSE = {"0", "0.0", "false"}
SPLIT_TRAIN = ("train", "training", "val", "valid", "validation")
SPLIT_TEST = ("test", "testing")
KEY_COLUMNS = ("sha256", "sop_instance_uid")
DEFAULT_GROUP_COLUMN = "patient_id"


@dataclass(frozen=True)
class LabelSpec:
    """One label: its CSV column, the value that means positive (None: a 0/1 column), its name."""

    column: str
    positive: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> LabelSpec:
        spec, sep, name = text.partition("=")
        column, colon, value = spec.partition(":")
        column, value, name = column.strip(), value.strip(), name.strip()
        if not column or (colon and not value) or (sep and not name):
            raise InputError(f"label spec {text!r}: expected COLUMN, COLUMN=NAME, COLUMN:VALUE or COLUMN:VALUE=NAME")
        default = f"{column}:{value}" if colon else column
        return cls(column, value if colon else None, name or default)

    def to_dict(self) -> dict[str, str | None]:
        return {"column": self.column, "positive": self.positive}


def parse_label_specs(items: Sequence[str | LabelSpec] | None) -> list[LabelSpec] | None:
    """``["view:AP=AP", "Effusion"]`` -> label specs (None stays None: every 0/1 column; [] no labels)."""
    if items is None:
        return None
    if isinstance(items, str):
        raise InputError(f"labels must be a list of label specs, not the single string {items!r}")
    specs = [s if isinstance(s, LabelSpec) else LabelSpec.parse(s) for s in items]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"label names repeat: {dupes}; rename with COLUMN=NAME")
    return specs  # [] = no labels (retrieval needs only the pairs)


@dataclass
class LabelledData:
    """Rows of a label file with binary labels ``y`` (N, L), patient groups and an optional split."""

    source: Path
    lines: list[int]  # CSV line of each row (header = 1), or the JSON entry's position
    paths: list[Path | None]
    labels: list[str]
    specs: list[LabelSpec]
    y: np.ndarray  # (N, L) int8, 0/1
    groups: np.ndarray  # (N,) str: patient ids, or one id per row when there is no group column
    group_column: str | None
    split: np.ndarray | None = None  # (N,) "train" / "test", from a split column
    split_column: str | None = None
    keys: dict[str, list[str | None]] = field(default_factory=dict)  # sha256 / sop_instance_uid columns
    texts: list[str] | None = None  # paired reports (retrieval)

    def __len__(self) -> int:
        return len(self.lines)

    def where(self, i: int) -> str:
        """``labels.csv row 7 (images/x.png)`` for messages."""
        what = f" ({self.paths[i]})" if self.paths[i] is not None else ""
        return f"{self.source.name} row {self.lines[i]}{what}"

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabelledData:
        idx = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            lines=[self.lines[i] for i in idx],
            paths=[self.paths[i] for i in idx],
            y=self.y[idx],
            groups=self.groups[idx],
            split=None if self.split is None else self.split[idx],
            keys={k: [v[i] for i in idx] for k, v in self.keys.items()},
            texts=None if self.texts is None else [self.texts[i] for i in idx],
        )

    def select_labels(self, names: Sequence[str]) -> LabelledData:
        pos = [self.labels.index(n) for n in names]
        return replace(self, labels=list(names), specs=[self.specs[j] for j in pos], y=self.y[:, pos])

    def digest(self, file_hashes: Sequence[str | None] | None = None) -> str:
        """sha256 over what the numbers depend on: per row the image (file sha256 when known, else
        the path), the labels, the group and the split; plus the label definitions."""
        h = hashlib.sha256()
        h.update(json.dumps([s.to_dict() | {"name": s.name} for s in self.specs], sort_keys=True).encode())
        rows = []
        for i in range(len(self)):
            ident = (file_hashes[i] if file_hashes is not None else None) or str(self.paths[i])
            split = "" if self.split is None else str(self.split[i])
            rows.append(f"{ident}|{''.join(map(str, self.y[i]))}|{self.groups[i]}|{split}")
        for row in sorted(rows):
            h.update(row.encode())
            h.update(b"\n")
        return h.hexdigest()


def _resolve(text: str, root: Path) -> Path:
    p = Path(text).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else root / p))


def read_labels(
    path: str | os.PathLike[str],
    labels: Sequence[str | LabelSpec] | None = None,
    *,
    image_root: str | os.PathLike[str] | None = None,
    path_column: str = "path",
    group_column: str | None = DEFAULT_GROUP_COLUMN,
    split_column: str | None = None,
    text_column: str | None = None,
    require_paths: bool = True,
) -> LabelledData:
    """Read a labels CSV (or PRIOR's 5x200 JSON) into :class:`LabelledData`.

    ``labels``: label specs (see the module doc); None takes every 0/1 column. ``group_column``:
    patient ids (used when present; None or a missing default column: each row is its own
    group). ``split_column``: train/test per row (train, val, valid, validation / test).
    ``text_column``: paired report text (retrieval). ``require_paths``: False when rows are
    joined by ``sha256`` / ``sop_instance_uid`` instead.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"label file {path} does not exist")
    root = Path(image_root) if image_root is not None else path.parent
    if image_root is not None and not root.is_dir():
        raise InputError(f"image root {root} is not a directory")
    specs = parse_label_specs(labels)
    if path.suffix.lower() == ".json":
        return _read_5x200(path, root, specs)
    return _read_csv(path, root, specs, path_column, group_column, split_column, text_column, require_paths)


def _read_csv(
    path: Path,
    root: Path,
    specs: list[LabelSpec] | None,
    path_column: str,
    group_column: str | None,
    split_column: str | None,
    text_column: str | None,
    require_paths: bool,
) -> LabelledData:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read label file {path}: {exc}") from exc
    if not header:
        raise InputError(f"{path}: empty file (no header row)")
    if not records:
        raise InputError(f"{path}: no rows")
    have = ", ".join(header)
    has_paths = path_column in header
    if require_paths and not has_paths:
        raise InputError(f"{path}: no {path_column!r} column (columns: {have})")
    for name, col in (("split column", split_column), ("text column", text_column)):
        if col is not None and col not in header:
            raise InputError(f"{path}: no {name} {col!r} (columns: {have})")
    if group_column is not None and group_column not in header:
        if group_column != DEFAULT_GROUP_COLUMN:
            raise InputError(f"{path}: no group column {group_column!r} (columns: {have})")
        group_column = None  # the default column is optional: each row is then its own group
    reserved = {path_column, group_column, split_column, text_column, *KEY_COLUMNS}
    if specs is None:
        specs = [LabelSpec(c, None, c) for c in header if c not in reserved and all(
            (r.get(c) or "").strip().lower() in _TRUE | _FALSE for r in records)]
        if not specs:
            raise InputError(f"{path}: no 0/1 label columns; choose them with labels=[COLUMN or COLUMN:VALUE ...]")
    missing = sorted({s.column for s in specs if s.column not in header})
    if missing:
        raise InputError(f"{path}: no column(s) {missing}; available: {have}")

    y = np.zeros((len(records), len(specs)), dtype=np.int8)
    for j, spec in enumerate(specs):
        values = [(r.get(spec.column) or "").strip() for r in records]
        for i, v in enumerate(values):
            if spec.positive is not None:
                if v == "":
                    raise InputError(f"{path} row {i + 2}: label {spec.name!r} (column {spec.column!r}) is empty")
                y[i, j] = 1 if v == spec.positive else 0
            elif v.lower() in _TRUE:
                y[i, j] = 1
            elif v.lower() not in _FALSE:
                raise InputError(
                    f"{path} row {i + 2}: label {spec.name!r} (column {spec.column!r}) is {v!r}, not 0/1 "
                    f"(non-binary label); mark the positive value with --labels {spec.column}:VALUE"
                )
        if spec.positive is not None and not y[:, j].any():
            seen = sorted(set(values))[:8]
            raise InputError(f"{path}: no row has {spec.column} == {spec.positive!r} (label {spec.name!r}); values: {seen}")

    paths: list[Path | None] = []
    for i, r in enumerate(records):
        text = (r.get(path_column) or "").strip() if has_paths else ""
        if require_paths and not text:
            raise InputError(f"{path} row {i + 2}: empty {path_column!r}")
        paths.append(_resolve(text, root) if text else None)

    if group_column is not None:
        groups = [(r.get(group_column) or "").strip() for r in records]
        empty = [i + 2 for i, g in enumerate(groups) if not g]
        if empty:
            raise InputError(f"{path} row {empty[0]}: empty {group_column!r} ({len(empty)} rows without a patient id)")
    else:
        groups = [f"row{i + 2}" for i in range(len(records))]

    split = None
    if split_column is not None:
        split_values = []
        for i, r in enumerate(records):
            v = (r.get(split_column) or "").strip().lower()
            if v in SPLIT_TRAIN:
                split_values.append("train")
            elif v in SPLIT_TEST:
                split_values.append("test")
            else:
                raise InputError(
                    f"{path} row {i + 2}: split column {split_column!r} is {v!r}; expected one of "
                    f"{', '.join(SPLIT_TRAIN + SPLIT_TEST)}"
                )
        split = np.asarray(split_values)

    texts = None
    if text_column is not None:
        texts = [(r.get(text_column) or "").strip() for r in records]
        empty = [i + 2 for i, t in enumerate(texts) if not t]
        if empty:
            raise InputError(f"{path} row {empty[0]}: empty text in column {text_column!r}")

    keys = {k: [(r.get(k) or "").strip() or None for r in records] for k in KEY_COLUMNS if k in header}
    return LabelledData(
        source=path,
        lines=[i + 2 for i in range(len(records))],
        paths=paths,
        labels=[s.name for s in specs],
        specs=specs,
        y=y,
        groups=np.asarray(groups, dtype=object),
        group_column=group_column,
        split=split,
        split_column=split_column,
        keys=keys,
        texts=texts,
    )


def _read_5x200(path: Path, root: Path, specs: list[LabelSpec] | None) -> LabelledData:
    """PRIOR's ``{id: {"image_path": ..., "label": [one-hot over the 5 classes]}}``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty object {{id: {{image_path, label}}}}")
    paths, rows = [], []
    for key, entry in data.items():
        if not isinstance(entry, dict) or "image_path" not in entry or "label" not in entry:
            raise InputError(f"{path}: entry {key!r} lacks image_path/label")
        lab = entry["label"]
        if not isinstance(lab, list) or len(lab) != len(CHEXPERT5) or any(v not in (0, 1) for v in lab):
            raise InputError(f"{path}: entry {key!r} label must be a 0/1 list of length {len(CHEXPERT5)}")
        paths.append(_resolve(entry["image_path"], root))
        rows.append(lab)
    base = [LabelSpec(c, None, c) for c in CHEXPERT5]
    if specs:  # here a spec only renames: "Pleural Effusion=Effusion"
        rename = {s.column: s.name for s in specs}
        unknown = sorted(set(rename) - set(CHEXPERT5))
        if unknown:
            raise InputError(f"{path}: the 5x200 labels are {list(CHEXPERT5)}; no {unknown}")
        base = [LabelSpec(s.column, None, rename.get(s.column, s.name)) for s in base]
    n = len(rows)
    return LabelledData(
        source=path,
        lines=list(range(1, n + 1)),
        paths=paths,
        labels=[s.name for s in base],
        specs=base,
        y=np.asarray(rows, dtype=np.int8),
        groups=np.asarray([f"entry{i}" for i in range(n)], dtype=object),
        group_column=None,
    )
