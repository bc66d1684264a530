"""Input discovery on real folders: recursion, globs, file lists, problems as values."""

from __future__ import annotations

from pathlib import Path

import pytest

from radzoo.errors import InputError
from radzoo.extract.discovery import discover


def test_folder_glob_list_and_duplicates(png_subset: Path, tmp_path: Path) -> None:
    nested = png_subset / "sub" / "deeper"
    nested.mkdir(parents=True)
    first = sorted(png_subset.glob("*.png"))[0]
    (nested / "copy.png").write_bytes(first.read_bytes())
    (png_subset / ".hidden.png").write_bytes(first.read_bytes())
    lst = tmp_path / "list.txt"
    lst.write_text(f"# a comment\n\n{first}\npngs/sub/deeper/copy.png\n")

    found = discover([png_subset, str(png_subset / "*.png"), f"@{lst}"])
    paths = [i.path for i in found.items]
    assert len(paths) == len(set(paths)) == 13  # 12 + nested copy; glob and list add nothing new
    assert str(nested / "copy.png") in paths
    assert not any(".hidden" in p for p in paths)
    assert all(Path(p).is_absolute() for p in paths)
    assert all(i.from_walk for i in found.items)  # all first seen while walking the folder
    assert not found.problems

    only_glob = discover([str(png_subset / "**" / "*.png")])
    assert len(only_glob.items) == 13 and not any(i.from_walk for i in only_glob.items)
    assert sorted(i.path for i in discover([], files_from=[lst]).items) == sorted([str(first), str(nested / "copy.png")])


def test_problems_are_reported_not_raised(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    found = discover([empty, tmp_path / "missing.dcm", str(tmp_path / "*.nothing"), "@" + str(tmp_path / "nolist.txt")])
    kinds = {p.error_type for p in found.problems}
    assert kinds == {"EmptyFolder", "FileNotFound", "NoMatch", "FileListError"}
    assert all(p.message for p in found.problems)
    assert not found.items


def test_no_inputs_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no inputs"):
        discover([])


def test_default_decode_workers_leave_small_cpu_machines_to_inference() -> None:
    from radzoo.extract.api import default_workers

    assert default_workers(2, "cpu") == 0  # measured: inline beats a decode process on 2 cores
    assert default_workers(4, "cpu") == 0
    assert default_workers(16, "cpu") == 4
    assert default_workers(64, "cpu") == 8
