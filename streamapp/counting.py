"""Exactly-once counts over at-least-once delivery: the pure core (no Faust, no I/O).

The project's main promise is that the windowed tables count every distinct message once,
whatever Kafka redelivers. Everything that decides *what* is counted lives here, so it can be
tested directly; `tables.py` only stores the values in Faust tables.

How
---
After a crash Kafka redelivers the messages after the last committed offset, some of which
were already counted. Each count is therefore kept per *source partition*
(`source|label|topic|partition`, one key per window) and its value carries the highest source
offset it has counted: `{"n": count, "o": offset}`. Count and watermark travel in one
changelog message, so whichever value survived a crash, redelivered messages at or below its
watermark are skipped and the rest are counted (`merge`). Keys are per partition for a second
reason: a table partition is owned by the worker that owns the same source partition, so no
two workers write a key. Readers sum over partitions.

Two further rules keep counts equal to the number of distinct messages:

* the same message sent twice as two Kafka records (a producer retry, a source re-reading
  after a restart) is one document in Elasticsearch and is counted once (`is_repeat`): the
  document records the Kafka position it was indexed from;
* within one batch the last record of an id wins, as it would in Elasticsearch
  (`last_per_id`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

MESSAGES_LABEL = "messages"  # hate tables: every message, so counts can be checked against N
HATEFUL_LABEL = "hateful"  # hate tables: messages flagged hateful
KEY_SEP = "|"

#: A stored count: `{"n": count, "o": highest source offset counted}`.
CountValue = dict[str, int]
Window = tuple[float, float]
TableKey = tuple[str, Window]
#: Every window (start, end) a timestamp falls in.
WindowRanges = Callable[[float], Iterable[Sequence[float]]]


@dataclass(frozen=True)
class Position:
    """Where a message was read from."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass(frozen=True)
class Count:
    """One thing to count: `label` is a sentiment label or a hate category."""

    source: str
    label: str
    topic: str
    partition: int
    offset: int
    timestamp: float

    @property
    def key(self) -> str:
        return KEY_SEP.join((self.source, self.label, self.topic, str(self.partition)))


def split_key(key: str) -> tuple[str, str, str, int]:
    """`source, label, topic, partition` of a table key (sources never contain the separator:
    decoding enforces their pattern)."""
    source, label, topic, partition = key.split(KEY_SEP)
    return source, label, topic, int(partition)


# -- what a document counts as ----------------------------------------------------------


def sentiment_labels(doc: Mapping[str, Any]) -> list[str]:
    return [str(doc["sentiment_label"])]


def hate_labels(doc: Mapping[str, Any]) -> list[str]:
    """Every message counts under `messages`, hateful ones under `hateful` and under each of
    their categories."""
    labels = [MESSAGES_LABEL]
    if doc["hate"]:
        labels.append(HATEFUL_LABEL)
    labels.extend(str(c) for c in doc.get("hate_categories") or ())
    return labels


def counts_for(
    doc: Mapping[str, Any], at: Position, timestamp: float, labels: Iterable[str]
) -> list[Count]:
    return [
        Count(
            source=str(doc["source"]),
            label=label,
            topic=at.topic,
            partition=at.partition,
            offset=at.offset,
            timestamp=timestamp,
        )
        for label in labels
    ]


# -- which documents count ----------------------------------------------------------------

T = TypeVar("T")


def last_per_id(items: Iterable[T], id_of: Callable[[T], Hashable]) -> list[T]:
    """One item per id, the last one, in the order the last occurrences arrived."""
    out: dict[Hashable, T] = {}
    for item in items:
        key = id_of(item)
        out.pop(key, None)
        out[key] = item
    return list(out.values())


def is_repeat(previous: Sequence[object] | None, at: Position) -> bool:
    """True when the id was indexed before from a different Kafka record.

    `previous` is the (topic, partition, offset) stored with the existing document, None when
    there is none. A redelivery of the same record is not a repeat: the watermarks decide
    whether it was counted before.
    """
    if previous is None or previous[0] is None:
        # New, or indexed before positions were recorded: counted as before.
        return False
    return tuple(previous) != (at.topic, at.partition, at.offset)


@dataclass
class BatchCounts:
    """What one batch adds to the sentiment and the hate tables."""

    sentiment: list[Count]
    hate: list[Count]
    counted: int
    repeats: int


def batch_counts(
    indexed: Iterable[tuple[Mapping[str, Any], Position, float]],
    previous: Mapping[str, Sequence[object] | None],
) -> BatchCounts:
    """Counts for the documents of a batch that Elasticsearch accepted (rejected ones are
    dead-lettered, not counted), `(document, position, timestamp)` each; `previous` maps an
    id to the position its existing document was indexed from, read before the batch was
    written."""
    out = BatchCounts([], [], 0, 0)
    for doc, at, timestamp in indexed:
        if is_repeat(previous.get(doc["id"]), at):
            out.repeats += 1
            continue
        out.counted += 1
        out.sentiment += counts_for(doc, at, timestamp, sentiment_labels(doc))
        out.hate += counts_for(doc, at, timestamp, hate_labels(doc))
    return out


# -- the watermark merge --------------------------------------------------------------------


def merge(current: Mapping[str, int] | None, offsets: Iterable[int]) -> CountValue | None:
    """The new value of a key after counting messages at `offsets`, or None when every one
    is at or below the stored watermark (counted before)."""
    n, watermark = (int(current["n"]), int(current["o"])) if current else (0, -1)
    fresh = [o for o in offsets if o > watermark]
    if not fresh:
        return None
    return {"n": n + len(fresh), "o": max(fresh)}


def plan(
    counts: Iterable[Count], ranges: WindowRanges
) -> dict[tuple[str, int], dict[TableKey, list[int]]]:
    """Group a batch's counts as writes: per source partition, the offsets to merge into each
    (key, window)."""
    out: dict[tuple[str, int], dict[TableKey, list[int]]] = defaultdict(lambda: defaultdict(list))
    for c in counts:
        for rng in ranges(c.timestamp):
            out[(c.topic, c.partition)][(c.key, (rng[0], rng[1]))].append(c.offset)
    return out


class CountStore(Protocol):
    """Where counts live. Reads and writes of one source partition happen inside
    `partition(topic, partition)`: a Faust table stores and changelogs a key in the partition
    of the event being processed, which batch processing has to set."""

    def partition(self, topic: str, partition: int) -> AbstractContextManager[None]: ...

    def get(self, key: TableKey) -> Mapping[str, int] | None: ...

    def set(self, key: TableKey, value: CountValue) -> None: ...


def apply_counts(store: CountStore, counts: Iterable[Count], ranges: WindowRanges) -> int:
    """Merge a batch into `store`, one write per key; return the increments applied (those
    at or below a watermark are skipped)."""
    applied = 0
    for (topic, partition), writes in plan(counts, ranges).items():
        with store.partition(topic, partition):
            for key, offsets in writes.items():
                current = store.get(key)
                new = merge(current, offsets)
                if new is None:
                    continue
                applied += new["n"] - (int(current["n"]) if current else 0)
                store.set(key, new)
    return applied


def summarise(
    items: Iterable[tuple[TableKey, Mapping[str, int]]], source: str | None = None
) -> dict[Window, dict[str, dict[str, int]]]:
    """`{window: {source: {label: count}}}`, summed over partitions."""
    out: dict[Window, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    for (key, window), value in items:
        src, label, _topic, _partition = split_key(key)
        if source is not None and src != source:
            continue
        out[(window[0], window[1])][src][label] += int(value["n"])
    return out


class MemoryCountStore:
    """A plain dict as a CountStore: what the Faust tables do, minus persistence."""

    def __init__(self) -> None:
        self.values: dict[TableKey, CountValue] = {}
        self.scope: tuple[str, int] | None = None

    @contextmanager
    def partition(self, topic: str, partition: int) -> Iterator[None]:
        self.scope = (topic, partition)
        try:
            yield
        finally:
            self.scope = None

    def get(self, key: TableKey) -> Mapping[str, int] | None:
        return self.values.get(key)

    def set(self, key: TableKey, value: CountValue) -> None:
        if self.scope is None:
            raise RuntimeError("write outside a partition scope")
        self.values[key] = dict(value)

    def items(self) -> Iterator[tuple[TableKey, Mapping[str, int]]]:
        return iter(list(self.values.items()))
