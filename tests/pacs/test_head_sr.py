"""A task head's predictions as DICOM SR (TID 1500), validated by dciodvfy: the head's identity,
operating point and the base model in the algorithm identification."""

from __future__ import annotations

from pathlib import Path

import pydicom

from radzoo.cli import main


def _texts(ds: pydicom.Dataset) -> list[str]:
    found = []
    for item in ds.get("ContentSequence", []):
        if "TextValue" in item:
            found.append(str(item.TextValue))
        if "ContentSequence" in item:
            found += _texts(item)
    return found


def test_head_predict_writes_valid_tid1500_sr(nih_head, shared_data: Path, tmp_path: Path, dciodvfy) -> None:
    dcm = shared_data / "dicom" / "cr_chest_pa_siim_jpegbaseline.dcm"
    out = tmp_path / "sr"
    assert main(["predict", "--head", str(nih_head.folder), str(dcm), "--runtime", "torch",
                 "--operating-point", "sens95", "--dicom-sr", str(out)]) == 0
    (path,) = sorted(out.glob("*.dcm"))
    dciodvfy(path)
    ds = pydicom.dcmread(path)
    source = pydicom.dcmread(dcm, stop_before_pixels=True)
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.Modality == "SR"
    assert ds.SeriesDescription.startswith("radzoo head head on mococxr_resnet18")
    texts = _texts(ds)
    for expected in ("radzoo head head", "operating_point=sens95", "base_model=mococxr_resnet18", "precision=fp32",
                     "random_weights=true"):
        assert any(expected in t for t in texts), (expected, texts)
    assert any(t.startswith("head_digest=") for t in texts) and any(t.startswith("threshold[AP]=") for t in texts)
