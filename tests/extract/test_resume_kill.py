"""SIGKILL the CLI at a random point, rerun the same command: no loss, no duplicates, valid rows."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from radzoo.extract import read_table

N = 120  # images: enough shards (4 rows each) that the kill lands mid-run even on an idle machine


def _cmd(model_dir: Path, images: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "radzoo.cli", "extract", "--model", str(model_dir), str(images), "--out", str(out),
            "--batch-size", "4", "--shard-size", "4", "--workers", "1", "--threads", "1", "--quiet"]


def test_kill_then_resume(tiny_model_dir: Path, tiny_model, png_files: list[Path], tmp_path: Path) -> None:
    if len(png_files) < N:
        pytest.skip(f"needs {N} shared PNGs")
    images = tmp_path / "images"
    images.mkdir()
    for f in png_files[:N]:
        shutil.copy2(f, images / f.name)
    out = tmp_path / "out"
    shards_before_kill = random.Random().randint(1, 3)

    proc = subprocess.Popen(_cmd(tiny_model_dir, images, out), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while len(list((out / "embeddings").glob("part-*.parquet"))) < shards_before_kill:
            assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no shard appeared in time"
            time.sleep(0.05)
        time.sleep(random.Random().uniform(0, 0.3))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its decode workers, all started here
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; kill earlier"

    # what the kill left behind is readable, whole shards only
    partial = read_table(out, "embeddings")
    assert 4 <= partial.num_rows < N
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"

    rerun = subprocess.run(_cmd(tiny_model_dir, images, out), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{N - partial.num_rows} written, {partial.num_rows} already done, 0 failed" in rerun.stderr
    assert not list((out / "embeddings").glob(".tmp-*")) and not list(out.glob(".tmp-*"))
    for shard in (out / "embeddings").glob("part-*.parquet"):
        pq.read_table(shard)  # every shard parses

    table = read_table(out, "embeddings").to_pylist()
    paths = [r["path"] for r in table]
    assert len(paths) == len(set(paths)) == N  # no loss, no duplicates
    ref = tiny_model.embed(sorted(paths), batch_size=8)
    got = np.stack([r["embedding"] for r in sorted(table, key=lambda r: r["path"])])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["rows"] == N
    assert [r["status"] for r in manifest["runs"]] == ["running", "complete"]


def test_disk_full_mid_run_then_resume(tiny_model_dir: Path, png_files: list[Path], tmp_path: Path) -> None:
    """A shard write that hits the file-size limit (EFBIG, the same failure path as ENOSPC) stops
    the run with a clear message and exit 1, leaves no partial shard, and a rerun completes.

    A real full filesystem needs a mount (root-only); RLIMIT_FSIZE on the child process gives the
    same OSError from ``write`` without privileges. 4 rows of 512 floats exceed the 6 kB limit
    while the manifest stays under it."""
    import resource

    images = tmp_path / "images"
    images.mkdir()
    for f in png_files[:6]:
        shutil.copy2(f, images / f.name)
    out = tmp_path / "out"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    cmd = [sys.executable, "-m", "radzoo.cli", "extract", "--model", str(tiny_model_dir), str(images), "--out", str(out),
           "--batch-size", "4", "--shard-size", "4", "--workers", "0", "--threads", "1", "--quiet"]
    full = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert full.returncode == 1, full.stderr[-2000:]
    assert "cannot write shard" in full.stderr and "rerun the same command to resume" in full.stderr
    assert not list((out / "embeddings").iterdir())  # no partial or temporary shard left behind
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"

    from radzoo.extract import extract_features

    ok = extract_features(str(tiny_model_dir), [images], out, batch_size=4, shard_size=4, workers=0, threads=1, quiet=True)
    assert ok.exit_code == 0 and ok.counts.written == 6
    assert read_table(out, "embeddings").num_rows == 6
