"""A small paired image-report set for tests, built from the shared NIH ChestX-ray14 images.

No real reports are at hand: the REPORTS HERE ARE DERIVED FROM EACH IMAGE'S LABELS (NIH's
text-mined findings), written as short template sentences with FINDINGS and IMPRESSION headers
("There is a pleural effusion. No pneumothorax. ..."). They exercise the pipelines (section
extraction, sentence splitting, tokenisation, image-report losses), nothing clinical; models
trained on them learn label templates, not radiology language.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

#: NIH label -> a findings sentence (laterality is unknown, so none is invented).
POSITIVE = {
    "Atelectasis": "There is atelectasis.",
    "Cardiomegaly": "The heart is enlarged.",
    "Consolidation": "There is consolidation.",
    "Edema": "There is pulmonary edema.",
    "Effusion": "There is a pleural effusion.",
    "Emphysema": "The lungs are hyperinflated, consistent with emphysema.",
    "Fibrosis": "There is pulmonary fibrosis.",
    "Hernia": "There is a hiatal hernia.",
    "Infiltration": "There is an infiltrate.",
    "Mass": "A mass is seen.",
    "Nodule": "There is a pulmonary nodule.",
    "Pleural_Thickening": "There is pleural thickening.",
    "Pneumonia": "Findings are consistent with pneumonia.",
    "Pneumothorax": "There is a pneumothorax.",
}
#: Findings stated as absent when their label is negative (a report's usual negatives).
NEGATIVE = {
    "Pneumothorax": "No pneumothorax.",
    "Effusion": "No pleural effusion.",
    "Consolidation": "No focal consolidation.",
    "Edema": "No pulmonary edema.",
    "Cardiomegaly": "The heart size is normal.",
}
IMPRESSION_NAME = {"Effusion": "pleural effusion", "Pleural_Thickening": "pleural thickening"}


def derived_report(labels: list[str]) -> str:
    """FINDINGS + IMPRESSION text written from a list of NIH labels ("No Finding" = none)."""
    positives = [lab for lab in labels if lab in POSITIVE]
    findings = [POSITIVE[lab] for lab in positives] + [s for lab, s in NEGATIVE.items() if lab not in positives]
    if positives:
        names = [IMPRESSION_NAME.get(lab, lab.lower()) for lab in positives]
        impression = f"{', '.join(names).capitalize()}."
    else:
        findings.insert(0, "The lungs are clear.")
        impression = "No acute cardiopulmonary process."
    return "FINDINGS:\n " + " ".join(findings) + "\n\nIMPRESSION:\n " + impression + "\n"


def write_derived_manifest(
    nih_dir: str | Path,
    out_dir: str | Path,
    limit: int | None = None,
    val_fraction: float = 0.0,
    fmt: str = "csv",
    val_rows: int = 0,
) -> Path:
    """Write ``pairs.<fmt>`` in ``out_dir`` (image paths relative to it) for the NIH images.

    ``val_fraction`` of the patients (by a stable hash), or the last ``val_rows`` rows, get
    ``split=validate``; the rest ``train``.
    """
    nih_dir, out_dir = Path(nih_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(nih_dir / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = rows[:limit] if limit else rows
    records = []
    for k, r in enumerate(rows):
        bucket = int(hashlib.sha256(r["patient_id"].encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        validate = k >= len(rows) - val_rows if val_rows else bucket < val_fraction
        records.append(
            {
                "image": os.path.relpath(nih_dir / r["path"], out_dir),
                "report": derived_report(r["finding_labels"].split("|")),
                "patient_id": r["patient_id"],
                "study_id": r["image_id"].removesuffix(".png"),
                "view": r["view"],
                "split": "validate" if validate else "train",
            }
        )
    path = out_dir / f"pairs.{fmt}"
    if fmt == "csv":
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
