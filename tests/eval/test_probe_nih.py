"""Linear probe and kNN end to end on the 201 real NIH images: API and CLI, baselines, reuse of a
``radzoo extract`` output (by path and by sha256), missing rows, and the report's JSON schema."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from report_schema import SCHEMA

from radzoo.errors import InputError
from radzoo.eval import ProbeSettings, knn, linear_probe, read_labels

LABELS = ["view:AP=AP-vs-PA", "Effusion", "Cardiomegaly"]

def _auroc(report: dict, system: str, label: str, fraction: float = 1.0) -> dict:
    (r,) = [r for r in report["results"] if r["system"] == system and r["fraction"] == fraction]
    return r["per_label"][label]["auroc"]


@pytest.fixture(scope="module")
def api_report(artifacts, nih_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("probe_api")
    data = read_labels(nih_csv, LABELS)
    report = linear_probe(str(artifacts["moco"]), data, baselines=["raw-pixels", "random-init"], n_boot=100, out=out)
    return report, out


def test_linear_probe_with_floors_end_to_end(api_report) -> None:
    report, out = api_report
    doc = json.loads((out / "report.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["data"]["n_rows"] == 201 and doc["data"]["n_groups"] == 201
    assert doc["protocol"]["folds"] == {"kind": "grouped-kfold", "n_splits": 5, "seed": 0, "stratified_by": "label"}
    assert set(doc["systems"]) == {"model", "raw-pixels", "random-init"}
    # a real signal: AP vs PA is visible in downsampled pixels (floor measured ~0.84)
    ap = _auroc(doc, "raw-pixels", "AP-vs-PA")
    assert ap["value"] > 0.75 and ap["ci"][0] < ap["value"] < ap["ci"][1]
    for system in doc["systems"]:
        for label in ("AP-vs-PA", "Effusion", "Cardiomegaly"):
            est = _auroc(doc, system, label)
            assert 0.0 <= est["ci"][0] <= est["value"] <= est["ci"][1] <= 1.0
    md = (out / "report.md").read_text()
    assert "| AUROC AP-vs-PA | 34/167 |" in md and "Δ vs raw-pixels" in md and "Δ vs random-init" in md
    assert md == report.markdown()
    for label in ("AP-vs-PA", "Effusion", "Cardiomegaly"):
        png = out / doc["files"]["roc"][label]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the embeddings went into the cache as a radzoo extract output (model and random-init)
    assert len(list((out / "cache").glob("*/manifest.json"))) == 2


def test_cli_random_weights_with_raw_pixels(nih_csv: Path, tmp_path: Path, capsys) -> None:
    """The real registry architecture with explicitly random weights: finishes, reports both."""
    from radzoo.cli import main

    out = tmp_path / "rw"
    rc = main(["eval", "linear-probe", "--model", "mococxr_resnet18", "--random-weights", "--device", "cpu",
               "--labels-csv", str(nih_csv), "--labels", *LABELS, "--baseline", "raw-pixels",
               "--bootstrap", "50", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads((out / "report.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["model"]["name"] == "mococxr_resnet18" and doc["model"]["random_weights"] is True
    assert {r["system"] for r in doc["results"]} == {"model", "raw-pixels"}
    assert _auroc(doc, "raw-pixels", "AP-vs-PA")["value"] > 0.75
    assert all(0.0 <= _auroc(doc, "model", lab)["value"] <= 1.0 for lab in ("AP-vs-PA", "Effusion", "Cardiomegaly"))
    assert "| AUROC Effusion | 30/171 |" in captured.out and "RANDOM weights" in captured.out


def test_extraction_output_is_reused_not_recomputed(api_report, artifacts, moco_features: Path, nih_csv: Path,
                                                    tmp_path: Path) -> None:
    report, _ = api_report
    data = read_labels(nih_csv, LABELS)
    reused = linear_probe(str(artifacts["moco"]), data, features=moco_features, n_boot=100, out=tmp_path / "r")
    assert not (tmp_path / "r" / "cache").exists()  # nothing embedded again
    assert "radzoo extract output" in reused.model["embeddings"]
    assert reused.model["revision"] == report.model["revision"] and reused.data["digest"] == report.data["digest"]
    for label in ("AP-vs-PA", "Effusion", "Cardiomegaly"):  # same embeddings, same folds: same numbers
        assert reused.result("model").metrics[f"{label}/auroc"] == report.result("model").metrics[f"{label}/auroc"]
    with pytest.raises(InputError, match="holds embeddings of 'tiny-random-mococxr', not of 'mococxr_resnet18'"):
        linear_probe("mococxr_resnet18", data, features=moco_features, n_boot=0)


def test_join_by_sha256_and_missing_rows(moco_features: Path, nih_dir: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader(open(nih_dir / "labels.csv")))[:80]
    by_hash = tmp_path / "by_hash.csv"
    with open(by_hash, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sha256", "patient_id", "view"])
        for r in rows:
            w.writerow([hashlib.sha256((nih_dir / r["path"]).read_bytes()).hexdigest(), r["patient_id"], r["view"]])
    data = read_labels(by_hash, ["view:AP=AP-vs-PA"], require_paths=False)
    a = linear_probe(None, data, features=moco_features, join="sha256", folds=3, n_boot=50)
    assert a.data["n_rows"] == 80 and a.data["join"] == "sha256"

    missing = tmp_path / "missing.csv"
    with open(missing, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "patient_id", "view"])
        for r in rows[:40]:
            w.writerow([str(nih_dir / r["path"]), r["patient_id"], r["view"]])
        w.writerow([str(tmp_path / "not_extracted.png"), "999999", "PA"])
    data = read_labels(missing, ["view:AP=AP-vs-PA"])
    with pytest.raises(InputError, match=r"1 of 41 rows of .*missing.csv have no embedding in .*features.*row 42 \(.*not_extracted.png\)"):
        linear_probe(None, data, features=moco_features, n_boot=0)
    dropped = linear_probe(None, data, features=moco_features, drop_missing=True, folds=3, n_boot=0)
    assert dropped.data["n_rows"] == 40 and dropped.dropped[0]["row"] == 42


def test_knn_and_label_fractions_on_extracted_features(moco_features: Path, nih_csv: Path, tmp_path: Path) -> None:
    data = read_labels(nih_csv, LABELS)
    k = knn(None, data, features=moco_features, n_boot=50, out=tmp_path / "knn")
    doc = json.loads((tmp_path / "knn" / "report.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["task"] == "knn" and doc["protocol"]["probe"]["kind"] == "knn"
    chosen = k.result("model").details["chosen"]["AP-vs-PA"]
    assert len(chosen) == 5 and all(c in (5, 10, 20, 50) for c in chosen)

    settings = ProbeSettings(fractions=(0.25, 1.0), draws=2)
    f = linear_probe(None, data, features=moco_features, settings=settings, n_boot=20)
    assert [(r.fraction, r.draws) for r in f.results] == [(0.25, 2), (1.0, 1)]
    assert "### label fraction 0.25" in f.markdown()


def test_given_split_column(moco_features: Path, nih_dir: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader(open(nih_dir / "labels.csv")))
    path = tmp_path / "split.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "patient_id", "view", "split"])
        for i, r in enumerate(rows):
            w.writerow([r["path"], r["patient_id"], r["view"], "test" if i % 3 == 0 else "train"])
    data = read_labels(path, ["view:AP=AP-vs-PA"], image_root=nih_dir, split_column="split")
    report = linear_probe(None, data, features=moco_features, n_boot=20, out=tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["protocol"]["folds"]["kind"] == "given-split"
    assert report.result("model").details["chosen"]["AP-vs-PA"] and "the given split (column 'split')" in report.markdown()


def test_pseudonymised_extraction_joins_with_its_secret(artifacts, nih_csv: Path, nih_dir: Path, tmp_path: Path) -> None:
    from radzoo.eval import read_extraction
    from radzoo.extract import extract_features

    secret = b"a-long-random-test-secret-0123456789"
    data = read_labels(nih_csv, ["view:AP=AP-vs-PA"]).subset(range(12))
    out = tmp_path / "pseudo"
    extract_features(str(artifacts["moco"]), [str(p) for p in data.paths], out, quiet=True, workers=0,
                     pseudonym_secret=secret)
    table = read_extraction(out, data, pseudonym_secret=secret)
    assert table.rows.tolist() == list(range(12)) and table.x.shape == (12, 512)
    with pytest.raises(InputError, match="pseudonymised: pass the same secret"):
        read_extraction(out, data)
    with pytest.raises(InputError, match="different secret"):
        read_extraction(out, data, pseudonym_secret=b"another-long-random-secret-987654")
