"""The README's two quickstart commands: the test command is what CI runs, the main job works."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [c.strip() for c in re.findall(r"```bash\n(.*?)\n\s*```", section, flags=re.S)]


def test_readme_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


def test_readme_main_job_runs(tmp_path: Path) -> None:
    """Run the main job's radzoo invocation (the part after the environment set-up)."""
    main = _quickstart_commands()[0]
    job = main.split("&&")[-1].strip()
    argv = shlex.split(job)
    assert argv[0] == ".venv/bin/radzoo" and "--random-weights" in argv
    out = tmp_path / "embeddings.csv"
    argv[argv.index("--out") + 1] = str(out)
    done = subprocess.run(
        [sys.executable, "-m", "radzoo.cli", *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "RANDOM weights" in done.stderr
    lines = out.read_text().splitlines()
    n_images = len(list((ROOT / "examples" / "cxr").glob("*.png")))
    assert len(lines) == n_images + 1
    values = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert values.shape == (n_images, 2048) and np.isfinite(values).all()
