"""Label files and splits: binarising labels, grouped folds that never split a patient, and every
bad input the issue lists, each with a message naming the file and the row or the label."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from radzoo.errors import InputError
from radzoo.eval.folding import inner_splits, plan_folds, subsample
from radzoo.eval.label_table import read_labels


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _many_images_per_patient(tmp_path: Path, patients: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        sick = rng.random() < 0.3
        for k in range(int(rng.integers(1, 6))):
            rows.append([f"img/{p}_{k}.png", f"P{p}", int(sick and rng.random() < 0.8), int(rng.random() < 0.5)])
    return _csv(tmp_path / "many.csv", ["path", "patient_id", "Effusion", "Mass"], rows)


def test_nih_labels_binarised(nih_csv: Path) -> None:
    data = read_labels(nih_csv, ["view:AP=AP-vs-PA", "Effusion", "Cardiomegaly"])
    assert data.labels == ["AP-vs-PA", "Effusion", "Cardiomegaly"]
    assert data.y.sum(axis=0).tolist() == [34, 30, 15]  # the data README's counts
    assert data.group_column == "patient_id" and len(set(data.groups)) == 201
    assert all(p.is_file() for p in data.paths)


@pytest.mark.parametrize("seed", range(5))
def test_grouped_folds_never_split_a_patient(tmp_path: Path, seed: int) -> None:
    data = read_labels(_many_images_per_patient(tmp_path, seed=seed), require_paths=False)
    assert len(data) > len(set(data.groups))  # several images per patient
    plan = plan_folds(data, n_splits=4, seed=seed)
    for j, folds in enumerate(plan.per_label):
        tested = np.concatenate([f.test for f in folds]) if folds else np.array([], int)
        assert len(set(tested.tolist())) == tested.size  # each row tested at most once
        for fold in folds:
            assert not set(data.groups[fold.train]) & set(data.groups[fold.test])
            assert 0 < data.y[fold.test, j].sum() < fold.test.size
            # and the label-fraction draws keep whole patients inside the training part
            part = subsample(fold.train, data.y[:, j], data.groups, 0.3, np.random.default_rng(seed))
            assert set(part) <= set(fold.train) and 0 < data.y[part, j].sum() < part.size
            kept = set(data.groups[part])
            assert all(i in set(part) for i in fold.train if data.groups[i] in kept)
        splits = inner_splits(data.y[folds[0].train, j], data.groups[folds[0].train], 3, seed)
        if splits is not None:
            g = data.groups[folds[0].train]
            assert all(not set(g[a]) & set(g[b]) for a, b in splits)


def test_one_class_fold_is_skipped_and_reported(tmp_path: Path) -> None:
    rows = [[f"i{k}.png", f"P{k}", int(k < 3)] for k in range(20)]  # 3 positives, 5 folds
    data = read_labels(_csv(tmp_path / "rare.csv", ["path", "patient_id", "Hernia"], rows), require_paths=False)
    plan = plan_folds(data, n_splits=5, seed=0)
    assert len(plan.per_label[0]) == 3 and len(plan.skipped) == 2
    assert all(s["label"] == "Hernia" and "only negatives" in s["reason"] and "skipped" in s["reason"]
               for s in plan.skipped)


def test_patient_on_both_sides_of_a_given_split(tmp_path: Path) -> None:
    rows = [["a.png", "P1", 1, "train"], ["b.png", "P2", 0, "train"], ["c.png", "P1", 0, "test"], ["d.png", "P3", 1, "test"]]
    path = _csv(tmp_path / "leak.csv", ["path", "patient_id", "Edema", "split"], rows)
    data = read_labels(path, split_column="split", require_paths=False)
    with pytest.raises(InputError, match=r"leak.csv: patient 'P1' \(patient_id\) is in both train \(row 2\) and test \(row 4\)"):
        plan_folds(data)
    rows[2][1] = "P4"
    ok = plan_folds(read_labels(_csv(tmp_path / "ok.csv", ["path", "patient_id", "Edema", "split"], rows),
                                split_column="split", require_paths=False))
    assert ok.kind == "given-split" and ok.per_label[0][0].test.tolist() == [2, 3]


def test_fewer_samples_than_folds(tmp_path: Path) -> None:
    rows = [["a.png", "P1", 1], ["b.png", "P1", 0], ["c.png", "P2", 0], ["d.png", "P3", 1]]
    data = read_labels(_csv(tmp_path / "small.csv", ["path", "patient_id", "Edema"], rows), require_paths=False)
    with pytest.raises(InputError, match=r"small.csv: 4 rows from 3 patients are fewer than the 5 folds"):
        plan_folds(data, n_splits=5)


def test_non_binary_labels_name_the_row_and_label(tmp_path: Path, nih_csv: Path) -> None:
    rows = [["a.png", "P1", "1"], ["b.png", "P2", "-1"], ["c.png", "P3", "0"]]
    path = _csv(tmp_path / "chexpert.csv", ["path", "patient_id", "Edema"], rows)
    with pytest.raises(InputError, match=r"chexpert.csv row 3: label 'Edema' \(column 'Edema'\) is '-1', not 0/1"):
        read_labels(path, ["Edema"])
    with pytest.raises(InputError, match=r"labels.csv row 2: label 'view' \(column 'view'\) is 'PA', not 0/1"):
        read_labels(nih_csv, ["view"])
    with pytest.raises(InputError, match=r"no row has view == 'LL'"):
        read_labels(nih_csv, ["view:LL"])
    with pytest.raises(InputError, match=r"no column\(s\) \['Nope'\]"):
        read_labels(nih_csv, ["Nope"])
    with pytest.raises(InputError, match="label names repeat"):
        read_labels(nih_csv, ["Edema", "view:AP=Edema"])
    bad_split = _csv(tmp_path / "split.csv", ["path", "Edema", "split"], [["a.png", 1, "holdout"]])
    with pytest.raises(InputError, match=r"split.csv row 2: split column 'split' is 'holdout'"):
        read_labels(bad_split, split_column="split")


def test_prior_5x200_json(specs_dir: Path, tmp_path: Path) -> None:
    data = read_labels(specs_dir / "prior" / "chexpert_5x200.json", image_root=tmp_path)
    assert len(data) == 1000 and data.labels[4] == "Pleural Effusion"
    assert (data.y.sum(axis=1) == 1).all() and (data.y.sum(axis=0) == 200).all()
    assert str(data.paths[0]).startswith(str(tmp_path))
    renamed = read_labels(specs_dir / "prior" / "chexpert_5x200.json", ["Pleural Effusion=Effusion"], image_root=tmp_path)
    assert renamed.labels[4] == "Effusion"
