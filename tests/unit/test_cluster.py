"""Gathering the other workers' partitions: union by key, summed counters."""

from __future__ import annotations

from streamapp.cluster import decode_items, encode_items, sum_numbers, union

W = (0.0, 59.9)


def test_items_round_trip_through_json() -> None:
    items = [(("twitter|neutral|tweets|2", W), {"n": 3, "o": 41})]
    assert decode_items(encode_items(items)) == items


def test_union_keeps_each_key_once_with_the_highest_watermark() -> None:
    mine = [(("twitter|neutral|tweets|0", W), {"n": 5, "o": 10})]
    theirs = [
        (("twitter|neutral|tweets|1", W), {"n": 2, "o": 7}),
        # The same partition seen by both (it moved during a rebalance): the newer state.
        (("twitter|neutral|tweets|0", W), {"n": 6, "o": 11}),
    ]
    older = [(("twitter|neutral|tweets|1", W), {"n": 1, "o": 3})]
    assert dict(union(mine, theirs, older)) == {
        ("twitter|neutral|tweets|0", W): {"n": 6, "o": 11},
        ("twitter|neutral|tweets|1", W): {"n": 2, "o": 7},
    }


def test_counters_of_several_workers_are_summed_leaf_by_leaf() -> None:
    a = {"pipelines": {"tweets": {"indexed": 3, "last_error": None}}, "available": True}
    b = {"pipelines": {"tweets": {"indexed": 4, "last_error": "x"}, "news": {"indexed": 1}}}
    assert sum_numbers([a, b]) == {
        "pipelines": {"tweets": {"indexed": 7, "last_error": "x"}, "news": {"indexed": 1}},
        "available": True,
    }
