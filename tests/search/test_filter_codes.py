"""Filter masks from dictionary codes agree with plain Python membership on the stored strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from radzoo.search.similar import _Codes


def test_codes_match_like_python_membership_with_nulls_and_ranges() -> None:
    values = ["CR", "DX", None, "MR", "CT", "US", "XA", "CR", None, "DX"] * 3
    codes = _Codes(pa.chunked_array([pa.array(values[:7]), pa.array(values[7:])]))
    for wanted in (["CR"], ["CR", "DX"], ["CR", "DX", "MR", "CT", "US"], ["nothing"], ["CR", "nothing"]):
        assert codes.matching(wanted).tolist() == [v in wanted for v in values], wanted
    dates = ["20190105", "20200101", None, "20201231", "20210101", "20200615"]
    by_date = _Codes(pa.chunked_array([pa.array(dates)]))
    want = [d is not None and "20200101" <= d <= "20201231" for d in dates]
    assert by_date.matching(["20200101..20201231"], ranges=True).tolist() == want
    assert by_date.matching(["..20191231", "20210101.."], ranges=True).tolist() == \
        [d is not None and (d <= "20191231" or d >= "20210101") for d in dates]
    assert codes.not_equal("CR").tolist() == [v != "CR" for v in values]
    assert codes.not_equal("unseen").all() and isinstance(codes.not_equal("CR"), np.ndarray)
