"""``radzoo bench`` measures model-only and end-to-end (PNG, DICOM) throughput in one run and writes
its JSON + Markdown table; ``--card`` puts the run into the artifact's model card."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import radzoo
from radzoo import zoo
from radzoo.bench.throughput import measure, sample_pngs
from radzoo.cli import main
from radzoo.zoo.batch_record import RULE, default_batch
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
    for precision, runtime in (("fp32", "onnx"), ("bf16", "torch")):
        row = rows[(precision, runtime, "model", 2)]
        assert row["low"] <= row["items_per_s"] <= row["high"] and row["calls"] >= 5 and row["warmup_calls"] >= 2
    best = {b["precision"]: b for b in result["best_batches"]}
    assert set(best) == {"fp32", "bf16"} and best["bf16"]["compared"] == [1, 2]
    assert best["bf16"]["items_per_s"] == max(rows[("bf16", "torch", "model", b)]["items_per_s"] for b in (1, 2))
    table = (out / "bench.md").read_text()
    assert "| model | runtime | precision | device | path | batch | throughput (median) | min-max | calls (warm-up) " \
           "| cosine to fp32 |" in table
    assert "## Best batch per precision" in table
    assert "avx" in table or "flags: none" in table
    card = (artifact / "README.md").read_text()
    assert "## Throughput" in card and "| fp32 | onnx | cpu | dicom | 2 |" in card
    assert f"| bf16 | torch | cpu | {best['bf16']['batch']} |" in card  # the best batch per precision
    assert json.loads((artifact / "config.json").read_text())["throughput"]["hardware"]["name"]
    assert "best batch per precision recorded in" in capsys.readouterr().err

    # extraction takes its default batch from the bench record of this model, precision and machine
    from radzoo.extract.api import extract_features

    pngs = tmp_path / "png"
    sample_pngs(pngs, 2)
    run = extract_features(artifact, [pngs], tmp_path / "ext", precision="bf16", quiet=True)
    options = run.manifest["runs"][-1]["options"]
    assert options["batch_size"] == best["bf16"]["batch"] and "radzoo bench" in options["batch_size_source"]
    run = extract_features(artifact, [pngs], tmp_path / "ext2", precision="bf16", batch_size=5, quiet=True)
    options = run.manifest["runs"][-1]["options"]
    assert options["batch_size"] == 5 and options["batch_size_source"] == "given"


def test_default_batch_without_a_record_follows_the_device_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path))
    choice = default_batch("mococxr_resnet50", "onnx", "fp32", "cpu")
    assert choice.size == RULE["cpu"] and "no radzoo bench record" in choice.source


def test_measure_waits_for_a_steady_state_and_reports_the_spread() -> None:
    calls = []

    def slow_start() -> None:  # two cold calls that differ from each other and from the steady ones
        calls.append(1)
        time.sleep({1: 0.08, 2: 0.04}.get(len(calls), 0.01))

    t = measure(slow_start, 4, seconds=0.0)
    assert t.warmed_up and t.warmup_calls >= 3 and t.calls == 5
    assert t.low <= t.median <= t.high and t.median == pytest.approx(400, rel=0.4)

    flip = []

    def unsteady() -> None:
        flip.append(1)
        time.sleep(0.002 if len(flip) % 2 else 0.02)

    t = measure(unsteady, 1, seconds=0.0, warmup_cap=6)
    assert not t.warmed_up and t.warmup_calls == 6 and t.high > 2 * t.low


def test_bench_reports_a_refused_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path / "home"))
    code = main(["bench", "no-such-model", "--paths", "model", "--out", str(tmp_path / "b")])
    assert code == 1
    (row,) = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert row["items_per_s"] is None and "unknown model 'no-such-model'" in row["error"]
