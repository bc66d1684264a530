"""``runtime="auto"`` is onnxruntime: the first use of a graph exports it once (artifact or cache),
later loads reuse it, concurrent first loads do not race, damaged files are rebuilt, and the
reasons say why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import radzoo
from conftest import save_with_golden
from radzoo.errors import ArtifactError
from radzoo.onnx.export_cache import StaleExportWarning, cache_folder
from radzoo.zoo.tiny import tiny_specs

MOCO = "tiny-random-mococxr"
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private RADZOO_HOME: the ONNX cache and the export locks live there."""
    path = tmp_path / "home"
    monkeypatch.setenv("RADZOO_HOME", str(path))
    return path


def _batch(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 64, 64)).astype(np.float32)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_auto_exports_random_weights_once_into_the_cache(home: Path) -> None:
    spec = tiny_specs()[MOCO]
    first = radzoo.build(spec, device="cpu")
    assert first.runtime.name == "onnx" and first.runtime.precision == "fp32"
    assert "exported to the ONNX cache on first use" in first.runtime.reason
    assert not (home / "onnx-cache").exists()  # a load that never embeds exports nothing
    first.embed_batch(_batch())
    first.embed_batch(_batch(), "proj")
    assert first.runtime.reason.startswith("auto: onnxruntime") and "exported now in the ONNX cache" in first.runtime.reason
    folder = cache_folder(first)
    assert folder.parent == home / "onnx-cache" and (folder / "onnx.json").is_file()
    record = json.loads((folder / "onnx.json").read_text())
    assert set(record["graphs"]) == {"image_trunk", "image_proj"} and record["weights_sha256"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "onnx").iterdir()}

    again = radzoo.build(spec, device="cpu")  # same seed, same weights: the cache is reused
    again.embed_batch(_batch())
    assert "found in the ONNX cache" in again.runtime.reason
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "onnx").iterdir()} == stamps
    torch_model = radzoo.build(spec, device="cpu", runtime="torch")
    x = _batch()
    for output in ("trunk", "proj"):
        np.testing.assert_allclose(again.embed_batch(x, output), torch_model.embed_batch(x, output), atol=1e-4, rtol=0)

    other = radzoo.build(spec, device="cpu", seed=1)  # other weights: another cache entry
    other.embed_batch(_batch())
    assert "exported now" in other.runtime.reason and cache_folder(other) != folder


def test_auto_exports_into_a_writable_artifact_and_reuses_it(home: Path, tmp_path: Path) -> None:
    directory = save_with_golden(MOCO, tmp_path / "m")
    model = radzoo.load(directory, device="cpu")
    assert "exported to the artifact's onnx/ folder on first use" in model.runtime.reason
    model.embed_batch(_batch(), "proj")
    model.embed_batch(_batch(), "trunk")
    assert model.runtime.name == "onnx" and "exported now in the artifact's onnx/ folder" in model.runtime.reason
    config = json.loads((directory / "config.json").read_text())
    assert set(config["onnx"]["graphs"]) == {"image_trunk", "image_proj"} and config["golden"]
    assert "## ONNX" in (directory / "README.md").read_text()
    assert not (home / "onnx-cache").exists()  # nothing went to the cache
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temp dirs, no lock files
    again = radzoo.load(directory, device="cpu")  # every graph is there: decided at load
    assert "found in the artifact's onnx/ folder" in again.runtime.reason


def test_read_only_artifact_uses_the_cache(home: Path, tmp_path: Path) -> None:
    directory = save_with_golden(MOCO, tmp_path / "m")
    before = _tree(directory)
    os.chmod(directory / "config.json", 0o444)
    os.chmod(directory, 0o555)
    try:
        model = radzoo.load(directory, device="cpu")
        model.embed_batch(_batch())
        assert model.runtime.name == "onnx" and "exported now in the ONNX cache" in model.runtime.reason
        assert _tree(directory) == before  # the artifact is untouched
        assert (cache_folder(model) / "onnx.json").is_file()
        again = radzoo.load(directory, device="cpu")
        again.embed_batch(_batch())
        assert "found in the ONNX cache" in again.runtime.reason
    finally:
        os.chmod(directory, 0o755)
        os.chmod(directory / "config.json", 0o644)


def test_corrupt_and_stale_files_are_rebuilt_with_a_warning(home: Path, tmp_path: Path) -> None:
    spec = tiny_specs()[MOCO]
    model = radzoo.build(spec, device="cpu")
    model.embed_batch(_batch())
    folder = cache_folder(model)
    graph = folder / "onnx" / "image_trunk.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])  # truncated: sha256 mismatch
    rebuilt = radzoo.build(spec, device="cpu")
    with pytest.warns(StaleExportWarning, match=r"image_trunk.onnx: sha256 does not match its record.*rebuilding"):
        rebuilt.embed_batch(_batch())
    assert "exported now" in rebuilt.runtime.reason
    np.testing.assert_allclose(rebuilt.embed_batch(_batch()), radzoo.build(spec, device="cpu", runtime="torch").embed_batch(_batch()),
                               atol=1e-4, rtol=0)
    # an artifact whose export belongs to other weights (stale): rebuilt in place
    directory = save_with_golden(MOCO, tmp_path / "m")
    radzoo.load(directory, device="cpu").embed_batch(_batch(), "proj")
    config = json.loads((directory / "config.json").read_text())
    config["onnx"]["graphs"]["image_proj"]["weights_sha256"] = "0" * 64
    (directory / "config.json").write_text(json.dumps(config))
    fresh = radzoo.load(directory, device="cpu")
    with pytest.warns(StaleExportWarning, match=r"image_proj.onnx was exported from other weights \(stale\)"):
        fresh.embed_batch(_batch(), "proj")
    assert fresh.runtime.name == "onnx" and "exported now in the artifact" in fresh.runtime.reason
    assert json.loads((directory / "config.json").read_text())["onnx"]["graphs"]["image_proj"]["weights_sha256"] != "0" * 64


def test_failed_parity_falls_back_to_torch_and_is_remembered(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radzoo.onnx import export

    monkeypatch.setattr(export, "PARITY_TOL", 1e-12)  # real differences are ~1e-6: every graph fails
    spec = tiny_specs()[MOCO]
    model = radzoo.build(spec, device="cpu")
    ref = radzoo.build(spec, device="cpu", runtime="torch").embed_batch(_batch())
    np.testing.assert_array_equal(model.embed_batch(_batch()), ref)  # torch computed it
    assert model.runtime.name == "torch"
    assert model.runtime.reason.startswith("auto: torch, because the ONNX export failed its parity check")
    assert "tolerance 1e-12" in model.runtime.reason
    assert (cache_folder(model) / "failed.json").is_file()
    start = time.perf_counter()
    again = radzoo.build(spec, device="cpu")  # remembered: no second trace
    again.embed_batch(_batch())
    assert again.runtime.name == "torch" and "tolerance 1e-12" in again.runtime.reason
    assert time.perf_counter() - start < 5
    with pytest.raises(ArtifactError, match="cannot run on onnxruntime: the ONNX export failed its parity check"):
        radzoo.build(spec, device="cpu", runtime="onnx").embed_batch(_batch())
    with pytest.raises(ArtifactError, match="do not export with parity"):
        radzoo.build(spec, device="cpu", precision="int8")


def test_without_onnxruntime_auto_is_torch(home: Path, tmp_path: Path) -> None:
    """A separate interpreter in which ``import onnxruntime`` fails (as when it is not installed)."""
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('onnxruntime is not installed (test shadow)')\n")
    code = textwrap.dedent(f"""
        import radzoo
        from radzoo.zoo.tiny import tiny_specs
        m = radzoo.build(tiny_specs()[{MOCO!r}], device="cpu")
        m.embed_batch(__import__("numpy").zeros((1, 3, 64, 64), "float32"))
        print(m.runtime.name, "|", m.runtime.reason)
        try:
            radzoo.build(tiny_specs()[{MOCO!r}], device="cpu", precision="int8")
        except Exception as exc:
            print(type(exc).__name__, "|", exc)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), SRC])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("torch | auto: torch, because onnxruntime cannot be imported (")
    assert "(onnxruntime is not installed (test shadow))" in lines[0] and "pip install 'radzoo[onnx]'" in lines[0]
    # MissingExtra is a CapabilityError that names the extra to install
    assert lines[1].startswith("MissingExtra |") and "at int8 needs the optional package 'onnxruntime'" in lines[1]
    assert "pip install 'radzoo[onnx]'" in lines[1]


_RACE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import radzoo
    from radzoo.zoo.tiny import tiny_specs
    go = Path(sys.argv[1])
    while not go.exists():
        time.sleep(0.01)
    if sys.argv[2] == "build":
        model = radzoo.build(tiny_specs()["tiny-random-mococxr"], device="cpu")
    else:
        model = radzoo.load(sys.argv[2], device="cpu")
    model.embed_batch(__import__("numpy").zeros((1, 3, 64, 64), "float32"))
    print(model.runtime.reason)
""")


@pytest.mark.parametrize("target", ["artifact", "cache"])
def test_concurrent_first_loads_export_once(target: str, home: Path, tmp_path: Path) -> None:
    """Three real processes load the same model at the same moment: one exports, two wait and reuse."""
    directory = save_with_golden(MOCO, tmp_path / "m") if target == "artifact" else None
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": SRC, "RADZOO_HOME": str(home), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACE, str(go), str(directory) if directory else "build"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    time.sleep(1.0)
    go.touch()  # all three start exporting at once (after their imports)
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    reasons = [out.strip().splitlines()[-1] for out, _ in results]
    assert sum("exported now" in r for r in reasons) == 1, reasons
    assert sum(" found in " in r for r in reasons) == 2, reasons
    if directory is not None:
        config = json.loads((directory / "config.json").read_text())
        assert set(config["onnx"]["graphs"]) == {"image_trunk"}
        assert not [p for p in directory.rglob(".*")]  # no temp files or dirs left behind
    else:
        (folder,) = (home / "onnx-cache").iterdir()
        assert sorted(p.name for p in (folder / "onnx").iterdir()) == ["image_trunk.onnx"]  # the graph in use
        assert not [p for p in folder.rglob(".*")]


def test_training_path_stays_torch(home: Path) -> None:
    """Explicit torch (what training, Grad-CAM and CT registration ask for) never exports."""
    model = radzoo.build(tiny_specs()[MOCO], device="cpu", runtime="torch")
    assert model.runtime.name == "torch" and model.runtime.reason == "requested runtime='torch'"
    assert not (home / "onnx-cache").exists()


def test_unwritable_cache_falls_back_to_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("RADZOO_HOME", str(blocked / "home"))  # cannot be created: a file is in the way
    model = radzoo.build(tiny_specs()[MOCO], device="cpu")
    model.embed_batch(_batch())
    assert model.runtime.name == "torch" and "cannot be created" in model.runtime.reason


def test_warm_cli_start_imports_only_what_the_job_needs(home: Path, tmp_path: Path) -> None:
    """After the first load exported the graphs, ``radzoo embed`` on PNGs loads no exporter,
    quantiser, DICOM, Parquet, serving, Ray, text or graph stack, and warns about nothing."""
    directory = save_with_golden(MOCO, tmp_path / "m")
    radzoo.load(directory).embed_batch(_batch())  # cold: exports into the artifact
    examples = Path(__file__).resolve().parents[2] / "examples" / "cxr"
    code = textwrap.dedent(f"""
        import sys, json
        from radzoo.cli import main
        assert main(["embed", "--model", {str(directory)!r}, {str(examples)!r}, "--out", {str(tmp_path / "e.npy")!r}]) == 0
        print(json.dumps(sorted(sys.modules)))
    """)
    env = {**os.environ, "PYTHONPATH": SRC, "RADZOO_HOME": str(home)}
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    tops = {m.split(".")[0] for m in modules}
    assert {"torch", "onnxruntime"} <= tops
    unneeded = {"onnx", "transformers", "torch_geometric", "bentoml", "ray", "pyarrow", "pydicom", "SimpleITK",
                "matplotlib", "huggingface_hub", "sklearn", "monai"}
    assert not tops & unneeded, tops & unneeded
    # (torchvision itself imports parts of torch.onnx; the ``onnx`` package and the quantiser stay out)
    assert not [m for m in modules if m.startswith("onnxruntime.quantization")]
    assert "radzoo.onnx.precision_graphs" not in modules
