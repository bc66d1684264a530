"""RadGraph-format entries DERIVED from NIH ChestX-ray14 labels, for tests and smoke runs.

These are NOT real RadGraph annotations and not real reports: each report is written from an
image's label string with a handful of fixed sentence templates, and its entities and relations
are annotated by the same template. They exercise every entity label (OBS-DP, OBS-DA, OBS-U,
ANAT-DP), every relation type (located_at, modify, suggestive_of), entities with several
relations (only the first counts), and isolated entities (which trigger reaction nodes).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

# (words, entities): entity = (word index, label, [(relation, target word index), ...])
Sentence = tuple[list[str], list[tuple[int, str, list[tuple[str, int]]]]]

_TEMPLATES: dict[str, Sentence] = {
    "Effusion": ("There is a small pleural effusion .".split(),
                 [(3, "OBS-DP", [("modify", 5)]), (4, "ANAT-DP", []), (5, "OBS-DP", [("located_at", 4)])]),
    "Atelectasis": ("Bibasilar atelectasis is present .".split(),
                    [(0, "ANAT-DP", []), (1, "OBS-DP", [("located_at", 0)])]),
    "Cardiomegaly": ("The heart is enlarged .".split(),
                     [(1, "ANAT-DP", []), (3, "OBS-DP", [("located_at", 1)])]),
    "Consolidation": ("Consolidation in the right lower lobe may represent pneumonia .".split(),
                      [(0, "OBS-DP", [("located_at", 5), ("suggestive_of", 8)]), (3, "ANAT-DP", [("modify", 5)]),
                       (4, "ANAT-DP", [("modify", 5)]), (5, "ANAT-DP", []), (8, "OBS-U", [])]),
    "Edema": ("Mild pulmonary edema .".split(),
              [(0, "OBS-DP", [("modify", 2)]), (1, "ANAT-DP", []), (2, "OBS-DP", [("located_at", 1)])]),
    "Emphysema": ("The lungs are hyperinflated suggestive of emphysema .".split(),
                  [(1, "ANAT-DP", []), (3, "OBS-DP", [("suggestive_of", 6), ("located_at", 1)]), (6, "OBS-U", [])]),
    "Fibrosis": ("Reticular opacities compatible with fibrosis .".split(),
                 [(0, "OBS-DP", [("modify", 1)]), (1, "OBS-DP", [("suggestive_of", 4)]), (4, "OBS-U", [])]),
    "Hernia": ("Hiatal hernia is noted .".split(),
               [(0, "ANAT-DP", []), (1, "OBS-DP", [("located_at", 0)])]),
    "Infiltration": ("Patchy opacity may represent infection .".split(),
                     [(0, "OBS-DP", [("modify", 1)]), (1, "OBS-DP", [("suggestive_of", 4)]), (4, "OBS-U", [])]),
    "Mass": ("There is a mass in the left upper lobe .".split(),
             [(3, "OBS-DP", [("located_at", 8)]), (6, "ANAT-DP", [("modify", 8)]), (7, "ANAT-DP", [("modify", 8)]),
              (8, "ANAT-DP", [])]),
    "Nodule": ("A nodule is seen in the right lung .".split(),
               [(1, "OBS-DP", [("located_at", 7)]), (6, "ANAT-DP", [("modify", 7)]), (7, "ANAT-DP", [])]),
    "Pleural_Thickening": ("Pleural thickening is noted .".split(),
                           [(0, "ANAT-DP", []), (1, "OBS-DP", [("located_at", 0)])]),
    "Pneumonia": ("Airspace opacity suggestive of pneumonia .".split(),
                  [(0, "ANAT-DP", []), (1, "OBS-DP", [("suggestive_of", 4), ("located_at", 0)]), (4, "OBS-U", [])]),
    "Pneumothorax": ("There is a pneumothorax .".split(), [(3, "OBS-DP", [])]),
    # negatives and the normal study
    "no_effusion": ("No pleural effusion .".split(), [(1, "ANAT-DP", []), (2, "OBS-DA", [("located_at", 1)])]),
    "no_pneumothorax": ("No pneumothorax .".split(), [(1, "OBS-DA", [])]),
    "normal": ("The lungs are clear . The heart size is normal .".split(),
               [(1, "ANAT-DP", []), (3, "OBS-DP", [("located_at", 1)]), (6, "ANAT-DP", []),
                (7, "ANAT-DP", [("modify", 6)]), (9, "OBS-DP", [("located_at", 6)])]),
}

FINDINGS = [k for k in _TEMPLATES if k[0].isupper()]


def derived_entry(labels: list[str]) -> dict[str, Any]:
    """A RadGraph-format entry for an image with these NIH labels ("No Finding" -> a normal study)."""
    parts = [k for k in FINDINGS if k in labels]
    if not parts:
        parts = ["normal"]
    if "Effusion" not in labels:
        parts.append("no_effusion")
    if "Pneumothorax" not in labels:
        parts.append("no_pneumothorax")
    words: list[str] = []
    entities: dict[str, Any] = {}
    for key in parts:
        sent_words, annots = _TEMPLATES[key]
        offset = len(words)
        first_id = len(entities) + 1
        id_of = {w: str(first_id + i) for i, (w, _, _) in enumerate(annots)}
        for w, label, rels in annots:
            entities[id_of[w]] = {
                "tokens": sent_words[w],
                "label": label,
                "start_ix": offset + w,
                "end_ix": offset + w,
                "relations": [[rel, id_of[t]] for rel, t in rels],
            }
        words += sent_words
    return {"text": " ".join(words), "entities": entities, "data_source": "DERIVED from NIH labels (not RadGraph)"}


def nih_rows(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "cxr_nih" / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def write_derived_set(shared_data: Path, out: Path, n: int | None = None) -> tuple[Path, Path]:
    """Write ``radgraph.json`` (report id -> derived entry) and ``pairs.csv`` (image, report_id)
    for the first ``n`` NIH images; image paths are absolute. Returns (pairs, radgraph)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = nih_rows(shared_data)[:n]
    graphs, lines = {}, ["image,report_id"]
    for row in rows:
        rid = f"nih/{row['image_id'].removesuffix('.png')}"
        graphs[rid] = derived_entry(row["finding_labels"].split("|"))
        lines.append(f"{shared_data / 'cxr_nih' / row['path']},{rid}")
    radgraph = out / "radgraph.json"
    radgraph.write_text(json.dumps(graphs, indent=1))
    pairs = out / "pairs.csv"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs, radgraph
