"""``radzoo index build|remove|info`` and ``radzoo search``: tables, CSV/JSON, bad input exits 1."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from radzoo.cli import main


def test_cli_build_search_remove(extraction: Path, tmp_path: Path, search_model_dir: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "index"
    assert main(["index", "build", str(extraction), "--out", str(out)]) == 0
    assert "rows" in capsys.readouterr().err
    assert main(["index", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"]["model"] == "tiny-random-mococxr"
    png = sorted((extraction.parent / "pngs").glob("*.png"))[0]
    assert main(["search", "--index", str(out), str(png), "--model", str(search_model_dir), "-k", "3",
                 "--exclude-same-patient", "--out", str(tmp_path / "hits.csv")]) == 0
    table = capsys.readouterr().out
    assert f"# image:{png.name}" in table and "rank" in table
    rows = list(csv.DictReader(open(tmp_path / "hits.csv")))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and all(r["path"] != str(png) for r in rows)
    from radzoo.search import open as open_index

    sop = open_index(out).keys.column("sop_instance_uid").drop_null()[0].as_py()
    assert main(["search", "--index", str(out), "--uid", sop, "--filter", "modality=CR,DX",
                 "--out", str(tmp_path / "hits.json")]) == 0
    hits = json.loads((tmp_path / "hits.json").read_text())
    assert hits and all(h["modality"] in ("CR", "DX") for h in hits)
    (tmp_path / "uids.txt").write_text(sop + "\n")
    assert main(["index", "remove", str(out), "--uids", str(tmp_path / "uids.txt")]) == 0
    assert "rows removed" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["-k", "0"], "k must be an integer from 1 to 1000, got 0"),
    (["-k", "1001"], "got 1001"),
    (["--filter", "colour=red"], "unknown filter field 'colour'"),
    (["--filter", "modality"], "must look like FIELD=VALUE"),
    (["--uid", "9.9.9"], "uid '9.9.9' is not in index"),
])
def test_cli_bad_queries_exit_1_naming_the_value(index_dir: Path, args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = ["search", "--index", str(index_dir)] + ([] if "--uid" in args else ["--uid", "x"])
    assert main(base + args) == 1
    assert message in capsys.readouterr().err


def test_cli_missing_index_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--index", str(tmp_path / "gone"), "--uid", "1"]) == 1
    assert "no index folder at" in capsys.readouterr().err
