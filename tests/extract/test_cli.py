"""``radzoo extract`` through the real CLI entry point (in-process, inline decoding)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radzoo.cli import main
from radzoo.extract import read_table


def test_random_weights_registry_model(png_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "inputs.txt"
    listing.write_text("\n".join(str(p) for p in png_files[:3]) + "\n")
    out = tmp_path / "out"
    code = main(["extract", "--model", "mococxr_resnet18", "--random-weights", f"@{listing}", "--out", str(out),
                 "--workers", "0", "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "3 written" in err and "RANDOM weights" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["random_weights"] is True and manifest["model"]["model"] == "mococxr_resnet18"
    assert manifest["runs"][0]["options"]["random_weights"] is True
    table = read_table(out, "embeddings")
    assert table.num_rows == 3 and str(table.schema.field("embedding").type).endswith("[512]")


def test_failures_set_the_exit_code(tiny_model_dir: Path, png_files: list[Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    base = ["extract", "--model", str(tiny_model_dir), "--out", str(tmp_path / "out"), "--workers", "0", "--threads", "1", "-q"]
    assert main([*base, str(png_files[0]), str(tmp_path / "missing.png")]) == 3
    err = capsys.readouterr().err
    assert "1 written" in err and "1 failed" in err
    assert main([*base, str(png_files[0])]) == 0  # resumed: nothing new failed
    code = main(["extract", "--model", str(tiny_model_dir), "--random-weights", str(png_files[0]),
                 "--out", str(tmp_path / "o2"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "random_weights=True builds a model by name" in err
