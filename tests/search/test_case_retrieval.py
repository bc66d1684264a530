"""``radzoo eval case-retrieval`` on a real index of real NIH images (tiny random model): the
protocol's metrics with patient-bootstrap CIs, the floors, and the ANN audit reported apart."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from radzoo.cli import main
from radzoo.eval.case_retrieval import per_query

LABELS = ["no_finding", "Atelectasis", "Effusion", "Infiltration", "Nodule", "Mass", "Consolidation"]


def test_metrics_on_a_hand_made_ranking() -> None:
    y = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [1, 1]])
    nbrs = np.array([[1, 2, -1, -1, -1, -1, -1, -1, -1, -1],
                     [2, 0, -1, -1, -1, -1, -1, -1, -1, -1],
                     [0, 1, -1, -1, -1, -1, -1, -1, -1, -1],
                     [4, 0, -1, -1, -1, -1, -1, -1, -1, -1],
                     [2, 3, -1, -1, -1, -1, -1, -1, -1, -1]])
    v = per_query(nbrs, y)
    assert v["single/P@1"][:3].tolist() == [1.0, 0.0, 0.0]
    assert math.isclose(v["single/P@5"][0], 0.2)
    # query 0: relevant rows 1, 3, 4 (3 of them); hit at rank 1 -> AP = 1 / min(10, 3)
    assert math.isclose(v["single/mAP@10"][0], 1 / 3)
    assert math.isclose(v["multi/NDCG@10"][3], 1.0)  # best-sharing row first
    assert v["multi/NDCG@10"][4] < 1.0 and np.isnan(v["multi/NDCG@10"][0]) and np.isnan(v["single/P@1"][3])


def test_case_retrieval_report_with_floors_and_ann_audit(extraction: Path, tmp_path: Path, search_model_dir: Path,
                                                         shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radzoo.search import build_index

    build_index([extraction], tmp_path / "index", exact_below=5)  # HNSW, so the audit compares two searches
    out = tmp_path / "report"
    code = main(["eval", "case-retrieval", "--index", str(tmp_path / "index"),
                 "--labels-csv", str(shared_data / "cxr_nih" / "labels.csv"), "--labels", *LABELS,
                 "--baseline", "raw-pixels", "--baseline", "random-init", "--model", str(search_model_dir),
                 "--bootstrap", "50", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "case-retrieval" and report["data"]["n_rows"] == 12
    systems = {r["system"]: r["per_label"] for r in report["results"]}
    assert set(systems) == {"model", "raw-pixels", "random-init"}
    for metrics in systems.values():
        p1 = metrics["single"]["P@1"]
        assert 0.0 <= p1["value"] <= 1.0 and p1["ci"][0] <= p1["value"] <= p1["ci"][1]
        assert 0.0 <= metrics["multi"]["NDCG@10"]["value"] <= 1.0
    audit = report["protocol"]["ann_audit"]
    assert audit["backend"] == "faiss-hnsw" and 0.9 <= audit["recall_at_10_vs_exact"] <= 1.0
    assert "mAP@10 single" in (out / "report.md").read_text()


def test_case_retrieval_refuses_an_index_without_the_labelled_images(index_dir: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "labels.csv"
    other = tmp_path / "other.png"
    other.write_bytes((Path(__file__).parent / "conftest.py").read_bytes())  # a file the index does not hold
    csv.write_text("path,patient_id,Effusion\nother.png,1,1\n")
    assert main(["eval", "case-retrieval", "--index", str(index_dir), "--labels-csv", str(csv),
                 "--labels", "Effusion", "--out", str(tmp_path / "r")]) == 1
    assert "only 0 rows of" in capsys.readouterr().err
