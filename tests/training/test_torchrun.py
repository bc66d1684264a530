"""Real multi-process training: ``torchrun --nproc-per-node 2`` on CPU (gloo), as CI runs it.

* The substrate: two processes holding half of each global batch take exactly the optimiser
  steps of one process holding all of it (gather of contrastive negatives with local gradient,
  DDP gradient averaging, accumulation with ``no_sync``), and both ranks end with equal weights.
* A method end to end: ``radzoo train mococxr`` under torchrun writes an artifact that loads
  strictly and embeds, its replicas stayed in sync, and the run resumes in ONE process (a change
  of world size).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

import radzoo
from radzoo.training.hparams import MoCoCXRConfig, resolve_config
from radzoo.training.run_log import read_metrics

from .conftest import TINY

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE.parent), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_two_processes_take_the_same_steps_as_one(tmp_path):
    worker = str(HERE / "ddp_worker.py")
    one = subprocess.run([sys.executable, worker, str(tmp_path)], capture_output=True, text=True, timeout=300, env=_env())
    assert one.returncode == 0, one.stderr[-4000:]
    _torchrun([worker, str(tmp_path)])
    single = load_file(str(tmp_path / "ws1_rank0.safetensors"))
    r0 = load_file(str(tmp_path / "ws2_rank0.safetensors"))
    r1 = load_file(str(tmp_path / "ws2_rank1.safetensors"))
    assert (tmp_path / "ws1_steps.txt").read_text() == (tmp_path / "ws2_steps.txt").read_text() == "6\n"
    init = {"a.weight", "a.bias", "b.weight", "b.bias"}
    assert set(single) == set(r0) == set(r1) == init
    for k in init:
        assert torch.equal(r0[k], r1[k]), k  # the replicas hold identical weights
        torch.testing.assert_close(r0[k], single[k], rtol=1e-5, atol=1e-6)  # and the full-batch ones
    # the weights really moved (the comparison is not between two untouched inits)
    torch.manual_seed(0)
    fresh = torch.nn.Linear(6, 4)
    assert not torch.allclose(fresh.weight, single["a.weight"])
    # both runs logged every step; rank 0 alone wrote the two-process log
    assert [r["world_size"] for r in read_metrics(tmp_path / "run_ws2")] == [2] * 6
    assert not list(tmp_path.glob("run_ws2/*rank1*"))


def test_mococxr_under_torchrun_then_resumed_in_one_process(nih_paths, tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    for p in nih_paths:
        shutil.copyfile(p, data / p.name)
    out = tmp_path / "moco2"
    overrides = [f"--{k}={v}" for k, v in TINY.items()] + ["--epochs=1", "--progress=false"]
    proc = _torchrun(["-m", "radzoo.cli", "train", "mococxr", "--data", str(data), "--out", str(out), *overrides])
    assert proc.stdout.count(f"wrote {out}") == 1  # rank 0 alone reports
    model = radzoo.load(out, device="cpu")
    emb = model.embed([str(nih_paths[0])])
    assert emb.shape == (1, 512) and np.isfinite(emb).all()
    prov = model.config["provenance"]
    assert prov["world_size"] == 2 and prov["global_batch"] == 4 and prov["steps"] == 2
    assert prov["replicas"]["in_sync"] and len(prov["replicas"]["parameters_sha256"]) == 64
    resolved = json.loads((out / "training" / "resolved.json").read_text())
    assert (resolved["world_size"], resolved["global_batch"], resolved["per_process_batch"]) == (2, 4, 2)
    records = read_metrics(tmp_path / "moco2.train")
    assert [r["step"] for r in records] == [1, 2] and {r["world_size"] for r in records} == {2}

    # resume with ONE process and one more epoch: the checkpoint does not depend on the world size
    longer = resolve_config(MoCoCXRConfig, None, {**TINY, "epochs": "2", "progress": "false"})
    from radzoo.training.methods.mococxr_pretraining import train_mococxr

    train_mococxr(longer, data, out, resume=True)
    prov = json.loads((out / "config.json").read_text())["provenance"]
    assert prov["world_size"] == 1 and prov["steps"] == 4 and [h["epoch"] for h in prov["history"]] == [0, 1]
    assert [r["world_size"] for r in read_metrics(tmp_path / "moco2.train")] == [2, 2, 1, 1]
