"""Windowed sentiment and hate counts: Faust tables, updated once per key per batch.

Four changelogged tables: sentiment and hate counts, each in a tumbling window and a
hopping window. Time is the Kafka record timestamp (stream time), not the wall clock:
`.relative_to_now()` is broken in faust-streaming 0.15.3.

Exactly-once counts over at-least-once delivery
------------------------------------------------
After a crash, Kafka redelivers the messages after the last committed offset, some of which
were already counted. Each table key is therefore per *source partition*
(`source|label|topic|partition`) and its value carries the highest source offset it has
counted: `{"n": count, "o": offset}`. Count and watermark travel in one changelog message, so
whichever value survived, redelivered messages at or below its watermark are skipped and
the rest are counted. Keys are per partition for a second reason: a table partition is
owned by the worker that owns the same source partition, so no two workers write a key.
Readers (web views) sum over partitions.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT

from streamapp.app import app, settings

KEY_SEP = "|"


@dataclass(frozen=True)
class Count:
    """One thing to count: `label` is a sentiment label or a hate category."""

    source: str
    label: str
    topic: str
    partition: int
    offset: int
    timestamp: float


class WindowedCounter:
    """A windowed Faust table of counts with idempotent, batched updates."""

    def __init__(self, name: str, wrapper: faust.tables.wrappers.WindowWrapper, kind: str):
        self.name = name
        self.kind = kind  # tumbling | hopping
        self.wrapper = wrapper
        self.table = wrapper.table
        self.window = self.table.window

    # -- writes ---------------------------------------------------------------
    def apply(
        self, counts: Iterable[Count], events_by_partition: dict[tuple[str, int], EventT]
    ) -> int:
        """Apply a batch; return how many increments were applied (skipping redeliveries).

        `events_by_partition` maps (topic, partition) to an event of that partition: Faust
        sends a changelog record to the partition of the "current event", and batch
        processing has no current event of its own.
        """
        # (key, window) -> [counted events with offset, max offset]
        pending: dict[tuple[str, tuple[float, float]], list[Count]] = defaultdict(list)
        for c in counts:
            key = KEY_SEP.join((c.source, c.label, c.topic, str(c.partition)))
            for window_range in self.window.ranges(c.timestamp):
                pending[(key, tuple(window_range))].append(c)
        applied = 0
        for (key, window_range), items in pending.items():
            first = items[0]
            event = events_by_partition[(first.topic, first.partition)]
            table_key = (key, window_range)
            current = self.table.get(table_key) or {"n": 0, "o": -1}
            fresh = [c for c in items if c.offset > current["o"]]
            if not fresh:
                continue
            token = _current_event.set(weakref.ref(event))
            try:
                self.table[table_key] = {
                    "n": current["n"] + len(fresh),
                    "o": max(c.offset for c in fresh),
                }
            finally:
                _current_event.reset(token)
            applied += len(fresh)
        return applied

    # -- reads ----------------------------------------------------------------
    def windows(
        self, source: str | None = None
    ) -> dict[tuple[float, float], dict[str, dict[str, int]]]:
        """{window: {source: {label: count}}}, summed over partitions."""
        out: dict[tuple[float, float], dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )
        for (key, window_range), value in self._items():
            src, label, _topic, _partition = key.split(KEY_SEP)
            if source is not None and src != source:
                continue
            out[(window_range[0], window_range[1])][src][label] += int(value["n"])
        return out

    def _items(self) -> Iterator[tuple[tuple[str, Any], dict[str, int]]]:
        for table_key, value in list(self.table.items()):
            if value is None:
                continue
            key, window_range = table_key
            yield (key, tuple(window_range)), value

    def current_window(self, now: float) -> tuple[float, float]:
        """The newest window containing `now` (what `WindowSet.now()` reads)."""
        rng = self.window.current(now)
        return (rng[0], rng[1])

    def describe(self) -> dict[str, Any]:
        w = self.window
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "size": w.size,
            "expires": w.expires,
        }
        if self.kind == "hopping":
            out["step"] = w.step
        return out


def _table(name: str, help_: str) -> faust.Table:
    return app.Table(
        name,
        default=None,
        partitions=settings.topic_partitions,
        key_type=None,
        value_type=None,
        help=help_,
    )


_size = settings.window_size
_expires = settings.window_expires

sentiment_tumbling = WindowedCounter(
    "sentiment-tumbling",
    _table("sentiment-counts-tumbling", "sentiment counts per source and label").tumbling(
        _size, expires=_expires
    ),
    "tumbling",
)
sentiment_hopping = WindowedCounter(
    "sentiment-hopping",
    _table("sentiment-counts-hopping", "sentiment counts per source and label").hopping(
        settings.hopping_size, settings.hopping_step, expires=_expires
    ),
    "hopping",
)
hate_tumbling = WindowedCounter(
    "hate-tumbling",
    _table("hate-counts-tumbling", "hate counts per source and category").tumbling(
        _size, expires=_expires
    ),
    "tumbling",
)
hate_hopping = WindowedCounter(
    "hate-hopping",
    _table("hate-counts-hopping", "hate counts per source and category").hopping(
        settings.hopping_size, settings.hopping_step, expires=_expires
    ),
    "hopping",
)

SENTIMENT = {"tumbling": sentiment_tumbling, "hopping": sentiment_hopping}
HATE = {"tumbling": hate_tumbling, "hopping": hate_hopping}
