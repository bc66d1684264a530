"""``bentoml build`` of the repository's bentofile.yaml succeeds with no network and packs only the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_bentoml_build_offline(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        # any attempt to reach an index or the internet fails fast
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "PIP_NO_INDEX": "1",
        "UV_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bentos = [p for p in (tmp_path / "bentoml" / "bentos" / "radzoo").iterdir() if p.name != "latest"]
    assert len(bentos) == 1
    src = bentos[0] / "src"
    assert (src / "radzoo" / "serving" / "service.py").is_file()
    assert (src / "radzoo" / "assets" / "graph_ct" / "atlas_patch_loc.npy").is_file()
    assert (src / "radzoo" / "assets" / "text" / "radiology_words.txt").is_file()
    assert {p.name for p in (src / "radzoo" / "serving" / "page").iterdir()} >= {"index.html", "app.js", "style.css"}
    assert not (src / "tests").exists() and not list(src.rglob("__pycache__"))
    meta = yaml.safe_load((bentos[0] / "bento.yaml").read_text())
    assert meta["service"] == "radzoo.serving.service:RadzooService"
    assert {route["name"] for route in meta["schema"]["routes"]} >= {"embed", "embeddings", "zero_shot", "ground"}
    size = sum(p.stat().st_size for p in bentos[0].rglob("*") if p.is_file())
    assert size < 20 * 1024 * 1024, f"bento is {size / 1e6:.1f} MB: 'include' lets too much in"
