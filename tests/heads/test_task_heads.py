"""Task heads on real NIH images: training through the CLI, the artifact (no pickle, digests,
card), strict reload, ``radzoo.load(HEAD).predict``, ``radzoo predict``, agreement with ``radzoo
eval``, the stored calibration maps against scikit-learn, and every refusal."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo.cli import main
from radzoo.errors import ArtifactError, InputError
from radzoo.heads import TaskHead, attach_head, read_head
from radzoo.heads.head_apply import calibrate, probabilities


@pytest.fixture(scope="module")
def head_model(nih_head):
    return radzoo.load(nih_head.folder, runtime="torch")


@pytest.fixture(scope="module")
def embeddings(head_model, nih_head) -> np.ndarray:
    """The training run's cached embeddings (radzoo extract output), in CSV row order."""
    from radzoo.eval.embedding_join import compute_embeddings
    from radzoo.eval.label_table import read_labels

    table = compute_embeddings(head_model, read_labels(nih_head.csv, ["Effusion"]), nih_head.cache)
    assert table.rows.tolist() == list(range(60))
    return table.x


def test_head_folder_is_data_with_identity_digest_and_card(nih_head) -> None:
    files = sorted(p.relative_to(nih_head.folder).as_posix() for p in nih_head.folder.rglob("*") if p.is_file())
    assert files == ["README.md", "head.json", "head.safetensors", "reliability/AP.png", "reliability/Effusion.png"]
    head = read_head(nih_head.folder)
    doc = head.document
    assert head.labels == ["AP", "Effusion"]
    base = doc["base"]
    assert base["model"] == "mococxr_resnet18" and base["random_weights"] and base["seed"] == 0
    assert base["output"] == "trunk" and base["dim"] == 512 and base["precision"] == "fp32"
    assert len(base["revision"]) == 12 and len(base["preprocess"]) >= 12
    assert len(doc["data"]["digest"]) == 64 and doc["data"]["n_rows"] == 60
    for label in head.labels:
        h = doc["heads"][label]
        assert h["calibration"]["method"] in ("sigmoid", "isotonic")
        assert set(h["operating_points"]) == {"sens90", "sens95", "spec90", "youden"}
        for point in h["operating_points"].values():
            assert 0.0 <= point["threshold"] <= 1.0
            for k in ("sensitivity", "specificity", "ppv", "npv"):
                assert "ci" in point[k]
        assert h["operating_points"]["sens95"]["sensitivity"]["value"] >= 0.95
        assert h["operating_points"]["spec90"]["specificity"]["value"] >= 0.90
        assert {"ece", "brier", "curve"} <= set(h["reliability"]["before"]) and "ece" in h["reliability"]["after"]
    card = (nih_head.folder / "README.md").read_text()
    for text in ("ECE before", "Operating points", "youden", "What it was and was not validated on", "RANDOM",
                 "reliability/AP.png", "AUROC AP"):
        assert text in card


def test_load_head_rebuilds_the_seeded_base_and_predicts(head_model, embeddings, nih_head) -> None:
    head = head_model.head
    assert head_model.random_init and head_model.name == "mococxr_resnet18"
    pred = head_model.predict([str(p) for p in nih_head.images[:6]], "sens90")
    expected = probabilities(head, embeddings[:6])
    np.testing.assert_allclose(pred.probabilities, expected, atol=1e-6)
    assert ((pred.probabilities >= 0) & (pred.probabilities <= 1)).all()
    cuts = {lab: head.label_section(lab)["operating_points"]["sens90"]["threshold"] for lab in head.labels}
    assert pred.thresholds == cuts
    assert (pred.decisions == (pred.probabilities >= np.asarray([cuts[lab] for lab in head.labels]))).all()
    assert pred.meta()["head"]["digest"] == head.digest and pred.precision == "fp32"
    assert radzoo.spec_of(nih_head.folder)[0].name == "mococxr_resnet18"  # a head folder names its base
    with pytest.raises(InputError, match="unknown operating point"):
        head_model.predict([str(nih_head.images[0])], "sens99")


def test_stored_calibration_maps_reproduce_scikit_learn(embeddings, nih_head) -> None:
    """Fit CalibratedClassifierCV (both methods) on 40 rows; the stored map + head math give its
    predict_proba on the 20 held rows."""
    from sklearn.model_selection import StratifiedKFold

    from radzoo.eval.head_fit import _calibrated, stored_map
    from radzoo.eval.probes import ProbeSettings

    head = read_head(nih_head.folder)
    y = np.asarray([1 if v else 0 for v in _column(nih_head.csv, "view", "AP")])
    x = embeddings.astype(np.float64)
    train, held = np.arange(40), np.arange(40, 60)
    cv = list(StratifiedKFold(3, shuffle=True, random_state=0).split(x[train], y[train]))
    for method in ("sigmoid", "isotonic"):
        model = _calibrated(0.1, method, cv, ProbeSettings()).fit(x[train], y[train])
        pair = model.calibrated_classifiers_[0]
        z = pair.estimator.decision_function(x[held])
        mine = calibrate(stored_map(pair.calibrators[0], method), z)
        np.testing.assert_allclose(mine, model.predict_proba(x[held])[:, 1], atol=1e-9)
    assert head.label_section("AP")["calibration"]["method"] in ("sigmoid", "isotonic")


def _column(csv_path: Path, column: str, positive: str) -> list[bool]:
    import csv

    with open(csv_path, newline="") as fh:
        return [r[column] == positive for r in csv.DictReader(fh)]


def test_head_cv_auroc_agrees_with_radzoo_eval(nih_head) -> None:
    from radzoo.eval.label_table import read_labels
    from radzoo.eval.tasks import linear_probe

    head = read_head(nih_head.folder)
    model = radzoo.build("mococxr_resnet18", seed=0, runtime="torch")
    data = read_labels(nih_head.csv, ["view:AP=AP", "Effusion"])
    report = linear_probe(model, data, folds=3, n_boot=20, cache=nih_head.cache)
    for label in head.labels:
        assert head.label_section(label)["cv_auroc"]["value"] == pytest.approx(
            report.result("model").metrics[f"{label}/auroc"].value, abs=1e-12)


def test_cli_predict_json_and_csv(nih_head, tmp_path: Path, capsys) -> None:
    images = [str(p) for p in nih_head.images[:3]]
    out = tmp_path / "p.json"
    assert main(["predict", "--head", str(nih_head.folder), *images, "--runtime", "torch",
                 "--operating-point", "spec90", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["operating_point"] == "spec90" and len(doc["items"]) == 3
    assert set(doc["items"][0]["predictions"]) == {"AP", "Effusion"}
    assert doc["head"]["base"]["model"] == "mococxr_resnet18"
    out_csv = tmp_path / "p.csv"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", "--head", str(nih_head.folder), *images, str(bad), "--runtime", "torch",
                 "--out", str(out_csv)]) == 1  # the broken file is reported, the rest written
    lines = out_csv.read_text().splitlines()
    assert lines[0].startswith("image,AP/probability,AP/decision") and len(lines) == 4
    assert "skipped" in capsys.readouterr().err


def test_other_precision_is_allowed_and_recorded(nih_head) -> None:
    model = radzoo.load(nih_head.folder, runtime="torch", precision="bf16")
    pred = model.predict([str(nih_head.images[0])])
    assert pred.precision == "bf16" and pred.probabilities.shape == (1, 2)


# ---------------------------------------------------------------------------------- refusals


def test_head_refuses_another_base_model_revision_preprocessing_or_output(nih_head) -> None:
    head = read_head(nih_head.folder)
    other = radzoo.build("mococxr_resnet18", seed=6, runtime="torch")  # same architecture, other weights
    with pytest.raises(InputError, match="revision"):
        attach_head(other, head)
    same = radzoo.build("mococxr_resnet18", seed=0, runtime="torch")
    for field, value in (("model", "mococxr_resnet50"), ("preprocess", "0" * 16), ("output", "global")):
        doc = copy.deepcopy(head.document)
        doc["base"][field] = value
        with pytest.raises(InputError, match=field):
            attach_head(same, TaskHead(doc, head.tensors))
    assert attach_head(same, head).head is head


def test_head_files_that_fail_their_digest_are_refused(nih_head, tmp_path: Path) -> None:
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(nih_head.folder, edited)
    doc = json.loads((edited / "head.json").read_text())
    doc["heads"]["AP"]["operating_points"]["youden"]["threshold"] = 0.01
    (edited / "head.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="fails its digest"):
        radzoo.load(edited, runtime="torch")
    swapped = tmp_path / "swapped"
    shutil.copytree(nih_head.folder, swapped)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(swapped / "head.safetensors"))
    tensors["head0.coef"] = tensors["head0.coef"] * 2
    save_file(tensors, str(swapped / "head.safetensors"))
    with pytest.raises(ArtifactError, match="fails its digest"):
        read_head(swapped)


def test_untrainable_labels_are_refused(nih_head, tmp_path: Path, capsys) -> None:
    base = ["head", "train", "--model", "mococxr_resnet18", "--random-weights", "--seed", "0", "--runtime", "torch",
            "--labels-csv", str(nih_head.csv), "--folds", "4", "--cache", str(nih_head.cache), "--out",
            str(tmp_path / "h")]
    for labels, message in ((["stored_size:512x512"], "one class only"), (["Edema"], "fewer than the 4 folds"),
                            (["age"], "not 0/1")):
        assert main([*base, "--labels", *labels]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_extract_with_head_adds_one_probability_column_per_label(nih_head, head_model, tmp_path: Path) -> None:
    from radzoo.extract.sink import read_table

    images = [str(p) for p in nih_head.images[:3]]
    out = tmp_path / "features"
    assert main(["extract", *images, "--head", str(nih_head.folder), "--runtime", "torch", "--workers", "0",
                 "-q", "--out", str(out)]) == 0
    table = read_table(out, "embeddings")
    assert table.num_rows == 3
    by_path = {r["path"]: r for r in table.to_pylist()}
    expected = head_model.predict(images)
    for i, path in enumerate(images):
        row = by_path[str(Path(path).resolve())] if str(Path(path).resolve()) in by_path else by_path[path]
        assert row["head_digest"] == head_model.head.digest
        for j, label in enumerate(expected.labels):
            assert row[f"probability:{label}"] == pytest.approx(expected.probabilities[i, j], abs=1e-6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs"][-1]["options"]["head"]["digest"] == head_model.head.digest
    other = radzoo.build("mococxr_resnet18", seed=6, runtime="torch")
    from radzoo.extract import extract_features

    with pytest.raises(InputError, match="does not belong"):
        extract_features(other, images, tmp_path / "other", head=nih_head.folder, quiet=True, workers=0)


def test_recalibrate_refits_only_the_maps_and_operating_points(nih_head, tmp_path: Path, capsys) -> None:
    from task_head_fixtures import write_nih_subset

    # rows 60-119 of the NIH set stand in for a second site (10 AP, 10 Effusion)
    site, _ = write_nih_subset(nih_head.images[0].parents[1], tmp_path / "site.csv", 60, start=60)
    out = tmp_path / "recalibrated"
    assert main(["head", "recalibrate", str(nih_head.folder), "--labels-csv", str(site), "--runtime", "torch",
                 "--folds", "3", "--bootstrap", "20", "--workers", "0", "--cache", str(tmp_path / "cache"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "threshold before -> after" in printed
    old, new = read_head(nih_head.folder), read_head(out)
    for key, value in old.tensors.items():
        np.testing.assert_array_equal(new.tensors[key], value)  # the fitted weights stay
    (entry,) = new.document["history"]
    assert entry["previous_digest"] == old.digest and entry["n_rows"] == 60
    for label in old.labels:
        moves = entry["moved"][label]
        assert set(moves) == {"sens90", "sens95", "spec90", "youden"}
        assert new.label_section(label)["operating_points"]["youden"]["threshold"] == moves["youden"]["threshold_after"]
    assert new.document["data"] == old.document["data"]  # the training rows are still the training rows
    assert "Recalibrated on" in (out / "README.md").read_text()
    model = radzoo.load(out, runtime="torch")
    assert model.predict([str(nih_head.images[0])]).head["digest"] == new.digest


def test_onnx_export_has_parity_with_the_python_head(nih_head, embeddings, tmp_path: Path) -> None:
    from radzoo.heads.head_onnx import head_parity, run_head_onnx

    out = tmp_path / "head.onnx"
    assert main(["head", "export", str(nih_head.folder), "--out", str(out)]) == 0
    head = read_head(nih_head.folder)
    assert head_parity(head, out, embeddings) < 1e-9  # real NIH embeddings, both calibration kinds
    p, _ = run_head_onnx(out, embeddings[:4])
    np.testing.assert_allclose(p, probabilities(head, embeddings[:4]), atol=1e-9)


def test_head_runs_after_the_onnx_runtime_too(nih_head, head_model) -> None:
    images = [str(p) for p in nih_head.images[:4]]
    onnx_model = radzoo.load(nih_head.folder, runtime="onnx")
    got = onnx_model.predict(images)
    assert got.runtime == "onnx" and onnx_model.head.digest == head_model.head.digest
    np.testing.assert_allclose(got.probabilities, head_model.predict(images).probabilities, atol=1e-3)


def test_mlp_is_kept_only_when_cv_shows_it_better(nih_head, embeddings, tmp_path: Path) -> None:
    from radzoo.eval.head_fit import train_head
    from radzoo.eval.label_table import read_labels
    from radzoo.heads.head_onnx import export_head_onnx

    model = radzoo.build("mococxr_resnet18", seed=0, runtime="torch")
    data = read_labels(nih_head.csv, ["Effusion"])
    result = train_head(model, data, tmp_path / "mlp", folds=3, n_boot=10, cache=nih_head.cache, kind="mlp",
                        calibration="sigmoid")
    head = read_head(result.directory)
    for label in head.labels:
        section = head.label_section(label)
        choice = section["kind_choice"]
        better = choice["mlp_oof_auroc"]["value"] > choice["linear_oof_auroc"]["value"]
        assert section["kind"] == ("mlp" if better else "linear") == choice["kept"]
    _, diff = export_head_onnx(head, tmp_path / "mlp.onnx", embeddings=embeddings)
    assert diff < 1e-9
    assert probabilities(head, embeddings).shape == (60, 1)
