"""Zero-shot (moved onto the shared metrics) and image-text retrieval, on real NIH images with a
tiny random-weight PRIOR (synthetic tokenizer): CLI and API, floors, CIs, skipped images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from report_schema import SCHEMA
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

import radzoo
from radzoo.errors import InputError
from radzoo.eval import read_labels, retrieval, zero_shot
from radzoo.eval.label_table import LabelledData
from radzoo.eval.retrieval import chance, hits

FIVE = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion=Pleural Effusion"]


def test_cli_zero_shot_single_label_with_random_init(artifacts, nih_csv: Path, tmp_path: Path, capsys) -> None:
    from radzoo.cli import main

    out = tmp_path / "zs"
    rc = main(["eval", "zero-shot", "--model", str(artifacts["prior"]), "--labels-csv", str(nih_csv),
               "--labels", *FIVE, "--out", str(out), "--device", "cpu", "--batch-size", "32",
               "--bootstrap", "50", "--baseline", "random-init"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads((out / "report.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["task"] == "zero-shot" and doc["protocol"]["mode"] == "single-label"
    assert set(doc["systems"]) == {"model", "random-init"} and doc["model"]["random_weights"] is True
    assert list(doc["data"]["labels"])[-1] == "Pleural Effusion" and doc["data"]["n_rows"] > 20
    assert doc["chance"]["accuracy"] == pytest.approx(0.2)
    for r in doc["results"]:
        for key in ("accuracy", "macro_f1", "kappa", "macro_auroc"):
            assert key in r["overall"]
    assert "| accuracy |" in captured.out and "| chance |" in captured.out

    # the same numbers as scikit-learn on the model's own probabilities
    data = read_labels(nih_csv, FIVE)
    keep = np.flatnonzero(data.y.sum(axis=1) == 1)
    model = radzoo.load(artifacts["prior"], device="cpu")
    prob = model.zero_shot([data.paths[i] for i in keep], data.labels).probabilities
    truth, pred = data.y[keep].argmax(1), prob.argmax(1)
    (res,) = [r for r in doc["results"] if r["system"] == "model"]
    assert res["overall"]["accuracy"]["value"] == pytest.approx(accuracy_score(truth, pred), abs=1e-12)
    assert res["overall"]["macro_f1"]["value"] == pytest.approx(f1_score(truth, pred, average="macro"), abs=1e-12)
    assert res["overall"]["kappa"]["value"] == pytest.approx(cohen_kappa_score(truth, pred), abs=1e-12)
    assert res["per_label"]["Edema"]["auroc"]["value"] == pytest.approx(
        roc_auc_score(data.y[keep, 3], prob[:, 3]), abs=1e-9)


def test_cli_zero_shot_multi_label_limit_and_bad_file(artifacts, nih_csv: Path, tmp_path: Path, capsys) -> None:
    from radzoo.cli import main

    out = tmp_path / "ml"
    rc = main(["eval", "zero-shot", "--model", str(artifacts["prior"]), "--labels-csv", str(nih_csv),
               "--labels", *FIVE, "--mode", "multi-label", "--limit", "12", "--bootstrap", "20", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "report.json").read_text())
    assert doc["data"]["n_rows"] == 12 and 0.0 <= doc["results"][0]["overall"]["accuracy"]["value"] <= 1.0
    rc = main(["eval", "zero-shot", "--model", str(artifacts["prior"]), "--labels-csv", str(tmp_path / "none.csv"),
               "--out", str(out)])
    assert rc == 1 and "does not exist" in capsys.readouterr().err


def test_zero_shot_skips_unreadable_images(artifacts, nih_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    images = sorted((nih_dir / "images").glob("*.png"))[:5]
    paths = [images[0], bad, *images[1:]]
    y = np.array([[1, 0], [0, 1], [0, 1], [1, 0], [0, 1], [1, 0]], dtype=np.int8)
    data = LabelledData(source=tmp_path / "mem.csv", lines=list(range(2, 8)), paths=paths, labels=["Edema", "Atelectasis"],
                        specs=[], y=y, groups=np.asarray([f"p{i}" for i in range(6)], dtype=object), group_column=None)
    model = radzoo.load(artifacts["prior"], device="cpu")
    report = zero_shot(model, data, n_boot=10, batch_size=4)
    assert report.data["n_rows"] == 5 and len(report.dropped) == 1
    assert report.dropped[0]["row"] == 3 and report.dropped[0]["path"] == str(bad)


def test_recall_hits_on_known_embeddings() -> None:
    img = np.eye(4)
    txt = np.eye(4)
    h = hits(img, txt, np.arange(4), ks=(1, 2))
    assert all(v.tolist() == [1, 1, 1, 1] for v in h.values())
    swapped = hits(img, txt[[1, 0, 2, 3]], np.arange(4), ks=(1, 2))  # images 0/1 are closest to each other's text
    assert swapped["image_to_text/R@1"].tolist() == [0, 0, 1, 1]
    assert swapped["image_to_text/R@2"].tolist() == [1, 1, 1, 1]
    assert swapped["text_to_image/R@1"].tolist() == [0, 0, 1, 1]
    shared = hits(np.eye(3), np.eye(3)[:2], np.array([0, 1, 1]), ks=(1,))  # images 1 and 2 share text 1
    assert shared["text_to_image/R@1"].tolist() == [1, 1]
    c = chance(np.array([0, 1, 1]), 2, ks=(1,))
    assert c["image_to_text/R@1"] == 0.5 and c["text_to_image/R@1"] == pytest.approx((1 / 3 + 2 / 3) / 2)


def test_retrieval_on_paired_nih_texts(artifacts, nih_csv: Path, tmp_path: Path, capsys) -> None:
    rows = list(csv.DictReader(open(nih_csv)))[:60]
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "patient_id", "report"])
        for r in rows:
            findings = r["finding_labels"].replace("_", " ").split("|")
            w.writerow([str(nih_csv.parent / r["path"]), r["patient_id"], ". ".join(f"{f} is observed" for f in findings) + "."])
    from radzoo.cli import main

    out = tmp_path / "ret"
    rc = main(["eval", "retrieval", "--model", str(artifacts["prior"]), "--labels-csv", str(pairs),
               "--text-column", "report", "--baseline", "random-init", "--bootstrap", "30", "--out", str(out),
               "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads((out / "report.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["task"] == "retrieval" and set(doc["systems"]) == {"model", "random-init"}
    n_texts = doc["data"]["n_texts"]
    assert 1 < n_texts < 60
    for r in doc["results"]:
        for key in [f"{d}/R@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]:
            v = r["overall"][key]
            assert 0.0 <= v["ci"][0] <= v["value"] <= v["ci"][1] <= 1.0
    assert doc["chance"]["image_to_text/R@1"] == pytest.approx(1 / n_texts)
    assert "image→text R@5" in captured.out

    # the Python API reuses the cached image embeddings and gives the same numbers
    again = retrieval(str(artifacts["prior"]), read_labels(pairs, [], text_column="report"), cache=out / "cache", n_boot=30)
    (model,) = [r for r in doc["results"] if r["system"] == "model"]
    assert again.result("model").metrics["image_to_text/R@5"].value == model["overall"]["image_to_text/R@5"]["value"]
    with pytest.raises(InputError, match="paired texts"):
        retrieval(str(artifacts["prior"]), read_labels(pairs, []), cache=out / "cache")
