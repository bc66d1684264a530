"""Several memory-mapped segments read as one row-id space, without a concatenated copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radzoo.search.segment_vectors import SegmentVectors, row_blocks


def test_segment_vectors_index_like_the_concatenated_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 6)).astype(np.float32) for n in (5, 1, 9)]
    maps = []
    for i, a in enumerate(arrays):
        np.save(tmp_path / f"s{i}.npy", a)
        maps.append(np.load(tmp_path / f"s{i}.npy", mmap_mode="r"))
    view, whole = SegmentVectors(maps), np.concatenate(arrays)
    assert view.shape == whole.shape and len(view) == 15
    rows = np.array([14, 0, 5, 6, 5, 13])
    assert np.array_equal(view[rows], whole[rows]) and np.array_equal(view[7], whole[7])
    for sl in (slice(3, 12), slice(0, 15), slice(6, 6), slice(2, 14, 3), slice(-4, None)):
        assert np.array_equal(view[sl], whole[sl])
    assert np.array_equal(np.asarray(view), whole)
    got = np.concatenate([b for _, b in row_blocks(view, start=4, size=4)])
    assert np.array_equal(got, whole[4:]) and [lo for lo, _ in row_blocks(view, 4, 4)] == [4, 8, 12]
    assert np.array_equal(np.concatenate([b for _, b in row_blocks(whole, 2, 5)]), whole[2:])
    with pytest.raises(IndexError, match="row ids must be in 0..14"):
        view[np.array([15])]
