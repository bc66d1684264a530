"""The Ray engine on a local 2-CPU Ray: same rows, errors and resume semantics as the local engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from radzoo.extract import extract_features, read_table

pytest.importorskip("ray.data")


def test_ray_equals_local(tiny_model_dir: Path, png_files: list[Path], dicom_copy: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for f in png_files[:8]:
        shutil.copy2(f, images / f.name)
    for name in ("cr_chest_pa_siim_jpegbaseline.dcm", "cr_chest_pa_siim_truncated.dcm", "ct_chest_CT1_rle.dcm", "MANIFEST.csv"):
        shutil.copy2(dicom_copy / name, images / name)
    common = {"batch_size": 4, "threads": 1, "quiet": True}
    local = extract_features(str(tiny_model_dir), [images], tmp_path / "local", workers=0, **common)
    ray_out = tmp_path / "ray"
    ray = extract_features(str(tiny_model_dir), [images], ray_out, engine="ray", ray_cpus=2, **common)
    assert ray.counts == local.counts and ray.exit_code == local.exit_code == 3

    def rows(out: Path) -> dict[str, dict]:
        return {r["path"]: r for r in read_table(out, "embeddings").to_pylist()}

    a, b = rows(tmp_path / "local"), rows(ray_out)
    assert sorted(a) == sorted(b) and len(a) == 9
    for p in a:
        assert a[p]["sha256"] == b[p]["sha256"] and a[p]["sop_instance_uid"] == b[p]["sop_instance_uid"]
        np.testing.assert_allclose(a[p]["embedding"], b[p]["embedding"], rtol=1e-4, atol=1e-5)
    errs = lambda out: sorted((Path(r["path"]).name, r["error_type"], r["skipped"]) for r in read_table(out, "errors").to_pylist())  # noqa: E731
    assert errs(tmp_path / "local") == errs(ray_out)

    # resume on Ray: nothing is redone and the errors are not retried
    again = extract_features(str(tiny_model_dir), [images], ray_out, engine="ray", ray_cpus=2, **common)
    assert (again.counts.written, again.counts.already_done, again.counts.previously_failed) == (0, 9, 2)
    assert len(rows(ray_out)) == 9
