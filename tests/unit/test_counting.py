"""The exactly-once counting core, without Faust, Kafka or Elasticsearch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from streamapp.counting import (
    HATEFUL_LABEL,
    MESSAGES_LABEL,
    Count,
    MemoryCountStore,
    Position,
    apply_counts,
    batch_counts,
    counts_for,
    facet,
    hate_labels,
    is_repeat,
    known_values,
    last_per_id,
    merge,
    shared_step,
    split_key,
    summarise,
)


def tumbling(size: float = 60.0) -> Callable[[float], list[tuple[float, float]]]:
    def ranges(ts: float) -> list[tuple[float, float]]:
        start = ts - ts % size
        return [(start, start + size - 0.1)]

    return ranges


def hopping(
    size: float = 300.0, step: float = 60.0
) -> Callable[[float], list[tuple[float, float]]]:
    def ranges(ts: float) -> list[tuple[float, float]]:
        last = ts - ts % step
        starts = [last - i * step for i in range(int(size // step)) if last - i * step + size > ts]
        return [(s, s + size - 0.1) for s in sorted(starts)]

    return ranges


def doc(i: int, *, hate: bool = False, label: str = "neutral", cats: Sequence[str] = ()) -> dict:
    return {
        "id": f"m{i}",
        "source": "twitter",
        "sentiment_label": label,
        "hate": hate,
        "hate_categories": list(cats),
    }


def counted_batch(
    store: MemoryCountStore,
    docs: Sequence[tuple[dict[str, Any], Position]],
    previous: dict[str, Any] | None = None,
    ranges: Any = None,
) -> int:
    batch = batch_counts([(d, at, 1_000.0) for d, at in docs], previous or {})
    return apply_counts(store, batch.sentiment, ranges or tumbling())


def totals(store: MemoryCountStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for labels in summarise(store.items()).values():
        for label, n in labels["twitter"].items():
            out[label] = out.get(label, 0) + n
    return out


def at(offset: int, partition: int = 0) -> Position:
    return Position("tweets", partition, offset)


# -- merge ---------------------------------------------------------------------------------


def test_merge_counts_only_offsets_above_the_watermark() -> None:
    a, b = ("|neutral", "lang=en|neutral"), ("|negative", "lang=und|negative")
    first = merge(None, [(3, a), (4, b)])
    assert first == {
        "o": 4,
        "c": {"|neutral": 1, "lang=en|neutral": 1, "|negative": 1, "lang=und|negative": 1},
    }
    assert merge(first, [(3, a), (4, b)]) is None
    assert merge(first, [(4, b), (5, a), (7, a)]) == {
        "o": 7,
        "c": {"|neutral": 3, "lang=en|neutral": 3, "|negative": 1, "lang=und|negative": 1},
    }


def test_redelivery_below_the_watermark_is_not_counted_again() -> None:
    store = MemoryCountStore()
    first = [(doc(i), at(i)) for i in range(10)]
    assert counted_batch(store, first) == 10
    # Kafka redelivers from the last commit (offset 5): 5..9 again, then 10..11 new.
    redelivered = [(doc(i), at(i)) for i in range(5, 12)]
    assert counted_batch(store, redelivered) == 2
    assert totals(store) == {"neutral": 12}


def test_each_partition_has_its_own_watermark() -> None:
    store = MemoryCountStore()
    counted_batch(store, [(doc(i), at(100 + i, partition=0)) for i in range(3)])
    # Lower offsets of another partition are new messages, not redeliveries.
    assert counted_batch(store, [(doc(10 + i), at(i, partition=1)) for i in range(3)]) == 3
    keys = {split_key(key) for key, _ in store.values}
    assert keys == {("twitter", "tweets", 0), ("twitter", "tweets", 1)}


def test_a_retry_after_a_failed_changelog_confirmation_counts_once() -> None:
    # The batch was applied to the table, then confirming its changelog writes failed, so the
    # batch is retried: the local values still hold the watermark, nothing is counted twice.
    store = MemoryCountStore()
    batch = [(doc(i), at(i)) for i in range(5)]
    assert counted_batch(store, batch) == 5
    assert counted_batch(store, batch) == 0
    assert totals(store) == {"neutral": 5}


def test_after_a_crash_that_lost_the_changelog_write_the_batch_is_counted_again() -> None:
    # The worker died before the broker had the write: the recovered table holds the older
    # value (and its older watermark), so the redelivered batch is counted, once.
    store = MemoryCountStore()
    counted_batch(store, [(doc(i), at(i)) for i in range(3)])
    before_crash = dict(store.values)
    counted_batch(store, [(doc(i), at(i)) for i in range(3, 6)])
    store.values = before_crash  # recovered from the changelog
    assert counted_batch(store, [(doc(i), at(i)) for i in range(3, 6)]) == 3
    assert totals(store) == {"neutral": 6}


def test_writes_happen_inside_their_partition_scope() -> None:
    store = MemoryCountStore()
    seen: list[tuple[str, int] | None] = []
    original = store.set

    def spy(key: Any, value: Any) -> None:
        seen.append(store.scope)
        original(key, value)

    store.set = spy  # type: ignore[method-assign]
    counted_batch(store, [(doc(0), at(5, 0)), (doc(1), at(9, 3))])
    assert sorted({s for s in seen if s}) == [("tweets", 0), ("tweets", 3)] and None not in seen


def test_one_write_per_key_per_batch() -> None:
    store = MemoryCountStore()
    writes = 0
    original = store.set

    def count_writes(key: Any, value: Any) -> None:
        nonlocal writes
        writes += 1
        original(key, value)

    store.set = count_writes  # type: ignore[method-assign]
    counted_batch(store, [(doc(i), at(i)) for i in range(50)])
    # One key holds every label and facet of a source partition and window.
    assert writes == 1 and totals(store) == {"neutral": 50}


def test_hopping_windows_count_a_message_in_each_window_it_falls_in() -> None:
    store = MemoryCountStore()
    counted_batch(store, [(doc(0), at(0))], ranges=hopping())
    assert len(store.values) == 5
    assert all(
        v == {"o": 0, "c": {"|neutral": 1, "lang=und|neutral": 1}} for v in store.values.values()
    )


@pytest.mark.parametrize(("size", "step"), [(60.0, 60.0), (300.0, 60.0), (10.0, 5.0)])
def test_windows_worked_out_per_step_count_as_per_timestamp(size: float, step: float) -> None:
    """Faust's own windows with a whole-second step depend only on `timestamp // step`:
    counting with `step` (one `ranges` call per step) gives what one call per timestamp
    gives."""
    from faust.windows import HoppingWindow

    window = HoppingWindow(size, step)
    calls: list[float] = []

    def ranges(ts: float) -> list:
        calls.append(ts)
        return window.ranges(ts)

    stamps = [1_000.0 + i * 0.37 for i in range(200)]  # across several steps and windows
    docs = [(doc(i, label=("positive", "negative")[i % 2]), at(i, i % 3), ts)
            for i, ts in enumerate(stamps)]  # fmt: skip
    by_timestamp, by_step = MemoryCountStore(), MemoryCountStore()
    counts = batch_counts(docs, {}).sentiment
    assert apply_counts(by_timestamp, counts, window.ranges) == apply_counts(
        by_step, counts, ranges, step
    )
    assert by_step.values == by_timestamp.values and len(by_step.values) > 3
    assert len(calls) == len({ts // step for ts in stamps}) < len(stamps)
    assert shared_step(step) == step


def test_a_fractional_step_is_not_shared() -> None:
    """Faust's `ranges` truncates to whole seconds: with a step of 2.5 s, two timestamps of
    one step can fall in different windows, so each timestamp is worked out on its own."""
    from faust.windows import HoppingWindow

    window = HoppingWindow(7.5, 2.5)
    assert window.ranges(1_002.6) != window.ranges(1_004.9)  # 1002.6 // 2.5 == 1004.9 // 2.5
    assert shared_step(2.5) is None


# -- which documents count -----------------------------------------------------------------


def test_duplicates_within_a_batch_keep_the_last_record() -> None:
    records = [("a", 0), ("b", 1), ("a", 2), ("c", 3), ("b", 4)]
    assert last_per_id(records, lambda r: r[0]) == [("a", 2), ("c", 3), ("b", 4)]


def test_an_id_indexed_before_from_another_record_is_a_repeat() -> None:
    assert not is_repeat(None, at(5))
    assert not is_repeat(("tweets", 0, 5), at(5))  # redelivery of the same record
    assert not is_repeat((None, None, None), at(5))  # indexed before positions were kept
    assert is_repeat(("tweets", 0, 4), at(5))
    assert is_repeat(("tweets", 1, 5), at(5))


def test_repeats_are_not_counted_but_redeliveries_are_left_to_the_watermark() -> None:
    store = MemoryCountStore()
    docs = [(doc(i), at(i)) for i in range(4)]
    previous = {"m0": ("tweets", 0, 0), "m1": ("tweets", 0, 99)}  # m1: sent twice
    batch = batch_counts([(d, p, 1_000.0) for d, p in docs], previous)
    assert (batch.counted, batch.repeats) == (3, 1)
    assert apply_counts(store, batch.sentiment, tumbling()) == 3


def test_rejected_documents_are_not_counted() -> None:
    # The pipeline passes only what Elasticsearch accepted; a rejected one never reaches
    # the counts, and counting the rest is not disturbed by the gap in offsets.
    store = MemoryCountStore()
    accepted = [(doc(i), at(i)) for i in (0, 1, 3)]  # offset 2 was rejected
    assert counted_batch(store, accepted) == 3
    assert store.values[next(iter(store.values))]["o"] == 3


def test_hate_labels() -> None:
    assert hate_labels(doc(0)) == [MESSAGES_LABEL]
    assert hate_labels(doc(0, hate=True, cats=["racism"])) == [
        MESSAGES_LABEL,
        HATEFUL_LABEL,
        "racism",
    ]


def test_summarise_sums_partitions_and_filters_by_source() -> None:
    w = (0.0, 60.0)
    items = [
        (("twitter|tweets|0", w), {"o": 1, "c": {"|neutral": 2, "lang=en|neutral": 2}}),
        (("twitter|tweets|1", w), {"o": 7, "c": {"|neutral": 3, "lang=de|neutral": 3}}),
        (("bluesky|tweets|1", w), {"o": 8, "c": {"|neutral": 1, "lang=en|neutral": 1}}),
    ]
    assert summarise(items) == {w: {"twitter": {"neutral": 5}, "bluesky": {"neutral": 1}}}
    assert summarise(items, "bluesky") == {w: {"bluesky": {"neutral": 1}}}
    assert summarise(items, lang="en") == {
        w: {"twitter": {"neutral": 2}, "bluesky": {"neutral": 1}}
    }


def test_values_of_the_layout_before_are_read_as_totals() -> None:
    # Written before labels and languages shared a key: still counted until they expire.
    w = (0.0, 60.0)
    items: list[tuple[tuple[str, tuple[float, float]], dict[str, Any]]] = [
        (("twitter|neutral|tweets|0", w), {"n": 2, "o": 1}),
        (("twitter|tweets|0", w), {"o": 9, "c": {"|neutral": 3, "lang=en|neutral": 3}}),
    ]
    assert summarise(items) == {w: {"twitter": {"neutral": 5}}}
    assert summarise(items, lang="en") == {w: {"twitter": {"neutral": 3}}}
    assert known_values(items) == ({"twitter"}, set(), {"en"})


def test_count_keys_round_trip() -> None:
    c = Count("twitter", "tweets", 3, 10, 0.0, ("|hateful",))
    assert split_key(c.key) == ("twitter", "tweets", 3)


# -- facets: languages and tracked terms --------------------------------------------------------


def test_a_document_counts_overall_in_its_language_and_under_each_term() -> None:
    d = {**doc(0, hate=True), "lang": "de", "terms": ["climate", "net zero"]}
    (c,) = counts_for(d, at(5), 1.0, hate_labels(d))
    assert c.cells == tuple(
        f"{f}|{label}"
        for label in ("messages", "hateful")
        for f in ("", "lang=de", "term=climate", "term=net zero")
    )
    (unknown,) = counts_for(doc(1), at(6), 1.0, ["neutral"])
    assert unknown.cells == ("|neutral", "lang=und|neutral")  # not known: still counted
    with pytest.raises(ValueError, match="not both"):
        facet(term="climate", lang="de")


def test_facets_sum_to_the_total_and_keep_exactly_once_counts() -> None:
    store = MemoryCountStore()
    langs = ["en", "de", None]
    docs = [
        (
            {
                **doc(i, label=["negative", "neutral"][i % 2]),
                "lang": langs[i % 3],
                "terms": ["ai"] if i % 4 == 0 else [],
            },
            at(i),
        )
        for i in range(24)
    ]
    assert counted_batch(store, docs) == 24
    # A redelivery of the whole batch and more: only the new ones count, in every facet.
    assert counted_batch(store, [*docs, ({**doc(99), "lang": "en", "terms": ["ai"]}, at(24))]) == 1
    items = list(store.items())

    def flat(windows: dict) -> dict[str, int]:
        out: dict[str, int] = {}
        for sources in windows.values():
            for label, n in sources["twitter"].items():
                out[label] = out.get(label, 0) + n
        return out

    total = flat(summarise(items))
    assert total == {"negative": 12, "neutral": 13}
    by_lang = [flat(summarise(items, lang=code)) for code in ("en", "de", "und")]
    assert sum(sum(c.values()) for c in by_lang) == 25
    assert flat(summarise(items, lang="en")) == {"negative": 4, "neutral": 5}
    assert flat(summarise(items, term="ai")) == {"negative": 6, "neutral": 1}
    assert known_values(items) == ({"twitter"}, {"ai"}, {"en", "de", "und"})


def reference_counts(store: MemoryCountStore, counts: Sequence[Count], ranges: Any) -> int:
    """What `apply_counts` stands for, message by message and window by window: `merge`
    of each (key, window)'s messages in arrival order."""
    by_key: dict[Any, list[tuple[int, Sequence[str]]]] = {}
    for c in counts:
        for r in ranges(c.timestamp):
            by_key.setdefault((c.key, (r[0], r[1])), []).append((c.offset, c.cells))
    applied = 0
    for key, entries in by_key.items():
        current = store.values.get(key)
        new = merge(current, entries)
        if new is not None:
            watermark = int(current["o"]) if current else -1
            applied += sum(1 for o, _ in entries if o > watermark)
            store.values[key] = new
    return applied


@pytest.mark.parametrize("seed", range(5))
def test_slots_count_what_message_by_message_merging_counts(seed: int) -> None:
    """Messages sharing windows are counted once per slot and added to each window; with
    redeliveries (some at or below a window's watermark, some not) the stored values and
    the number applied equal merging message by message."""
    import random

    from faust.windows import HoppingWindow

    rng = random.Random(seed)
    window = HoppingWindow(300, 60)
    fast, reference = MemoryCountStore(), MemoryCountStore()
    offsets = {p: 0 for p in range(3)}
    for _batch in range(6):
        docs = []
        for _ in range(rng.randrange(1, 120)):
            p = rng.randrange(3)
            # A quarter are redeliveries of an earlier offset of the partition.
            if offsets[p] and rng.random() < 0.25:
                offset = rng.randrange(offsets[p])
            else:
                offset = offsets[p] = offsets[p] + 1
            d = doc(offset, label=rng.choice(["negative", "neutral", "positive"]),
                    hate=rng.random() < 0.2, cats=rng.choice([(), ("offensive",)]))  # fmt: skip
            d["lang"] = rng.choice(["en", "de"])
            d["terms"] = rng.choice([[], ["climate"], ["climate", "net zero"]])
            docs.append((d, at(offset, p), 10_000.0 + offset * rng.uniform(0.5, 2.0)))
        batch = batch_counts(docs, {})
        for counts in (batch.sentiment, batch.hate):
            applied = apply_counts(fast, counts, window.ranges, shared_step(60))
            assert applied == reference_counts(reference, counts, window.ranges)
    assert fast.values == reference.values and len(fast.values) > 10


def test_a_batch_counts_each_document_as_counts_for_does() -> None:
    from streamapp.counting import sentiment_labels

    docs = []
    for i in range(40):
        d = doc(i, label=("negative", "neutral", "positive")[i % 3], hate=i % 4 == 0,
                cats=(("offensive",), (), ("racism", "offensive"))[i % 3])  # fmt: skip
        d.update(lang=("en", None, "de")[i % 3], terms=([], ["climate"], ["a", "b"])[i % 3])
        docs.append((d, at(i, i % 2), 1_000.0 + i))
    batch = batch_counts(docs, {})
    assert batch.sentiment == [
        c for d, p, ts in docs for c in counts_for(d, p, ts, sentiment_labels(d))
    ]
    assert batch.hate == [c for d, p, ts in docs for c in counts_for(d, p, ts, hate_labels(d))]
