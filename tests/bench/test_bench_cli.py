"""``radzoo bench`` measures model-only and end-to-end (PNG, DICOM) throughput in one run and writes
its JSON + Markdown table; ``--card`` puts the run into the artifact's model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import radzoo
from radzoo import zoo
from radzoo.cli import main
from radzoo.zoo.tiny import tiny_specs


def test_bench_writes_table_and_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path / "home"))
    artifact = zoo.save(radzoo.build(tiny_specs()["tiny-random-mococxr"], runtime="torch"), tmp_path / "tiny")
    out = tmp_path / "bench"
    code = main(["bench", str(artifact), "--precision", "fp32", "bf16", "--batches", "1", "2", "--seconds", "0.05",
                 "--images", "3", "--dicom-codec", "j2k", "--out", str(out), "--card"])
    assert code == 0
    result = json.loads((out / "bench.json").read_text())
    assert result["format"] == "radzoo-bench/1" and result["hardware"]["cores"] >= 1
    assert result["hardware"]["cpu"]["model"] and "onnxruntime" in result["versions"]
    rows = {(r["precision"], r["runtime"], r["path"], r["batch"]): r for r in result["rows"]}
    for precision, runtime in (("fp32", "onnx"), ("bf16", "torch")):  # the default path, as users get it
        for path in ("model", "png", "dicom"):
            for batch in (1, 2):
                row = rows[(precision, runtime, path, batch)]
                assert row["items_per_s"] > 0 and row["unit"] == "img/s" and row["error"] is None
    assert rows[("bf16", "torch", "model", 1)]["cosine_to_fp32"] > 0.99
    table = (out / "bench.md").read_text()
    assert "| model | runtime | precision | device | path | batch | throughput | cosine to fp32 |" in table
    assert "avx" in table or "flags: none" in table
    card = (artifact / "README.md").read_text()
    assert "## Throughput" in card and "| fp32 | onnx | cpu | dicom | 2 |" in card
    assert json.loads((artifact / "config.json").read_text())["throughput"]["hardware"]["name"]
    assert "wrote" in capsys.readouterr().err


def test_bench_reports_a_refused_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path / "home"))
    code = main(["bench", "no-such-model", "--paths", "model", "--out", str(tmp_path / "b")])
    assert code == 1
    (row,) = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert row["items_per_s"] is None and "unknown model 'no-such-model'" in row["error"]
