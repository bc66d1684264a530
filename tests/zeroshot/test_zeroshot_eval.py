"""Evaluation: numpy metrics checked by hand, label files, and the CLI on real NIH images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from radzoo.errors import InputError
from radzoo.zeroshot.evaluate import auroc, compute_metrics, f1, read_labels


def test_auroc_and_f1_by_hand() -> None:
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # tie = one half
    assert auroc(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1])) == pytest.approx(1.0)
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))
    assert f1(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert f1(np.array([0, 0]), np.array([0, 0])) == 0.0


def test_compute_metrics_single_and_multi_label() -> None:
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    prob = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4], [0.4, 0.4, 0.2]])
    m = compute_metrics(y, prob, ["a", "b", "c"], "single-label")
    assert m.accuracy == pytest.approx(0.75)  # row 3 predicted 'a' instead of 'c'
    # per-class F1 of the argmax: a: tp2 fp1 fn0 -> 0.8; b: 1.0; c: 0.0
    assert m.macro_f1 == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    assert 0.0 <= m.macro_auroc <= 1.0
    mm = compute_metrics(y, prob, ["a", "b", "c"], "multi-label")
    assert mm.accuracy == pytest.approx(float(((prob >= 0.5) == y).mean()))
    with pytest.raises(InputError, match="exactly one positive"):
        compute_metrics(np.array([[1, 1]]), np.array([[0.5, 0.5]]), ["a", "b"], "single-label")


def test_read_prior_5x200_json(specs_dir: Path, tmp_path: Path) -> None:
    data = read_labels(specs_dir / "prior" / "chexpert_5x200.json", image_root=tmp_path)
    assert len(data.paths) == 1000 and data.labels[4] == "Pleural Effusion"
    assert (data.y.sum(axis=1) == 1).all() and (data.y.sum(axis=0) == 200).all()
    assert str(data.paths[0]).startswith(str(tmp_path))


def test_csv_needs_label_columns(shared_data: Path) -> None:
    with pytest.raises(InputError, match="not 0/1"):
        read_labels(shared_data / "cxr_nih" / "labels.csv")
    with pytest.raises(InputError, match="no column"):
        read_labels(shared_data / "cxr_nih" / "labels.csv", columns=[("Nope", "Nope")])


def test_cli_eval_zero_shot_on_nih(prior_dir: Path, shared_data: Path, tmp_path: Path, capsys) -> None:
    from radzoo.cli import main

    csv = shared_data / "cxr_nih" / "labels.csv"
    labels = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion=Pleural Effusion"]
    out = tmp_path / "m.json"
    rc = main(["eval", "zero-shot", "--model", str(prior_dir), "--labels-csv", str(csv),
               "--labels", *labels, "--out", str(out), "--device", "cpu", "--batch-size", "32"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads(out.read_text())
    assert m["random_weights"] is True and m["mode"] == "single-label"
    assert m["labels"][-1] == "Pleural Effusion" and m["n_images"] > 20
    for key in ("accuracy", "macro_auroc", "macro_f1"):
        assert 0.0 <= m[key] <= 1.0
    assert "accuracy" in capsys.readouterr().out

    rc = main(["eval", "zero-shot", "--model", str(prior_dir), "--labels-csv", str(csv), "--labels", *labels,
               "--mode", "multi-label", "--limit", "12", "--out", str(out)])
    assert rc == 0
    m = json.loads(out.read_text())
    assert m["n_images"] == 12 and 0.0 <= m["accuracy"] <= 1.0

    rc = main(["eval", "zero-shot", "--model", str(prior_dir), "--labels-csv", str(tmp_path / "none.csv")])
    assert rc == 1 and "does not exist" in capsys.readouterr().err


def test_eval_skips_unreadable_images(prior_model, nih_images, tmp_path: Path) -> None:
    from radzoo.zeroshot.evaluate import LabelledSet, evaluate

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    data = LabelledSet([nih_images[0], bad, nih_images[1], nih_images[2]], ["Edema", "Atelectasis"],
                       np.array([[1, 0], [0, 1], [0, 1], [1, 0]]))
    m = evaluate(prior_model, data, batch_size=4)
    assert m.n_images == 3 and len(m.skipped) == 1 and m.skipped[0]["path"] == str(bad)
