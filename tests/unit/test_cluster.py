"""Gathering the other workers' partitions: union by key, summed counters."""

from __future__ import annotations

import json
from typing import Any

from streamapp.cluster import decode_items, encode_items, sum_numbers, union

W = (0.0, 59.9)


def test_items_round_trip_through_json() -> None:
    items: list[tuple[tuple[str, tuple[float, float]], dict[str, Any]]] = [
        (("twitter|tweets|2", W), {"o": 41, "c": {"|neutral": 3, "lang=en|neutral": 3}}),
        (("twitter|neutral|tweets|2", W), {"n": 3, "o": 41}),  # the layout before
    ]
    assert decode_items(json.loads(json.dumps(encode_items(items)))) == items


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
