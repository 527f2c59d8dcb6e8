"""snapshot.last_complete: the complete records of a torn tail, found in O(log n) lookups."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

from hypothesis import given
from hypothesis import strategies as st

from kara_core.row.snapshot import last_complete


@given(st.lists(st.integers(0, 50), max_size=200), st.integers(0, 6000))
def test_last_complete_is_the_last_record_ending_within_the_data(sizes: list[int], data_bytes: int) -> None:
    ends = list(accumulate(sizes))
    calls: list[int] = []

    def end_of(i: int) -> int:
        calls.append(i)
        return ends[i]

    count, end = last_complete(len(ends), end_of, data_bytes)
    assert count == bisect_right(ends, data_bytes)
    assert end == (ends[count - 1] if count else 0)
    assert len(calls) <= 2 + max(1, len(ends)).bit_length()  # the last entry, the search, the end
