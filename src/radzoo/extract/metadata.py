"""``--metadata CSV``: header fields (patient, modality, view, study date) for files without headers.

PNG/JPEG archives carry no PatientID or ViewPosition; a table such as NIH's ``labels.csv`` does.
Rows join the extraction's inputs by path: a relative path in the CSV is taken relative to the
CSV's folder; when no path matches, a unique file name does. The header, where present, wins.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from radzoo.errors import InputError

#: accepted column names per stored field (first present wins)
COLUMNS = {
    "patient_key": ("patient_key", "patient_id", "PatientID"),
    "modality": ("modality", "Modality"),
    "view_position": ("view_position", "view", "ViewPosition"),
    "study_date": ("study_date", "StudyDate"),
}
PATH_COLUMNS = ("path", "file", "filename", "image_id")


class MetadataTable:
    """Per-input header fields read from a CSV, looked up by path (then by unique file name)."""

    def __init__(self, csv_path: str | os.PathLike[str]) -> None:
        path = Path(csv_path)
        try:
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                header = reader.fieldnames or []
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"cannot read metadata CSV {path}: {exc}") from exc
        key = next((c for c in PATH_COLUMNS if c in header), None)
        if key is None:
            raise InputError(f"metadata CSV {path} has no path column (one of {', '.join(PATH_COLUMNS)}); "
                             f"it has {', '.join(header) or 'no header'}")
        fields = {name: next((c for c in cols if c in header), None) for name, cols in COLUMNS.items()}
        if not any(fields.values()):
            raise InputError(f"metadata CSV {path} has none of the fields "
                             f"{', '.join(c for cols in COLUMNS.values() for c in cols)}")
        self.by_path: dict[str, dict[str, str]] = {}
        names: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            raw = (row.get(key) or "").strip()
            if not raw:
                continue
            values = {name: row[col].strip() for name, col in fields.items() if col and (row.get(col) or "").strip()}
            full = Path(raw) if os.path.isabs(raw) else path.parent / raw
            self.by_path[os.path.normpath(os.path.abspath(full))] = values
            names.setdefault(Path(raw).name, []).append(values)
        self.by_name = {n: v[0] for n, v in names.items() if len(v) == 1}

    def lookup(self, input_path: str) -> dict[str, str]:
        hit = self.by_path.get(os.path.normpath(os.path.abspath(input_path)))
        if hit is None:
            hit = self.by_name.get(Path(input_path).name, {})
        return hit
