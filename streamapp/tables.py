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

The watermark argument needs the changelog to be at least as far as the committed source
offsets. Faust's own pre-commit flush gives up after 0.1 s per message, so the pipeline
awaits `confirm_changelogs()` (every changelog write of the batch acknowledged by the
broker) before it acks a batch.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT
from faust.types.tuples import FutureMessage

from streamapp.app import app, settings

log = logging.getLogger(__name__)

KEY_SEP = "|"


class ChangelogNotConfirmed(RuntimeError):
    """Some changelog writes failed; they were sent again and the batch must be retried."""


class CountTable(faust.Table):
    """A Faust table whose changelog writes can be awaited until the broker has them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unconfirmed: list[tuple[Any, int | None, Any, FutureMessage]] = []

    def send_changelog(  # type: ignore[override]
        self, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any
    ) -> FutureMessage:
        fut = super().send_changelog(partition, key, value, *args, **kwargs)
        self._unconfirmed.append((key, partition, value, fut))
        return fut

    async def confirm_changelog(self) -> None:
        """Wait for every changelog write so far; re-send the latest value of failed keys."""
        batch, self._unconfirmed = self._unconfirmed, []
        if not batch:
            return
        results = await asyncio.gather(*(fut for *_, fut in batch), return_exceptions=True)
        # Values are whole states, not deltas: only the newest write of a key matters, and
        # it is re-sent only if it is the one that failed.
        newest: dict[Any, tuple[int | None, Any, BaseException | None]] = {}
        for (key, partition, value, _fut), result in zip(batch, results, strict=True):
            error = result if isinstance(result, BaseException) else None
            newest[key] = (partition, value, error)
        failed = {k: v for k, v in newest.items() if v[2] is not None}
        if not failed:
            return
        for key, (partition, value, _error) in failed.items():
            self.send_changelog(partition, key, value)
        first_error = next(iter(failed.values()))[2]
        raise ChangelogNotConfirmed(
            f"{len(failed)} changelog writes of table {self.name} failed: {first_error!r}"
        )


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
            # Reads need the event too: the RocksDB store looks a key up only in the
            # partition of the current event, so a read under another partition's event
            # would miss the stored count and restart it from zero.
            token = _current_event.set(weakref.ref(event))
            try:
                current = self.table.get(table_key) or {"n": 0, "o": -1}
                fresh = [c for c in items if c.offset > current["o"]]
                if not fresh:
                    continue
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


def _table(name: str, help_: str) -> CountTable:
    table = CountTable(
        app,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        partitions=settings.topic_partitions,
        key_type=None,
        value_type=None,
        help=help_,
    )
    app.tables.add(table)
    return table


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
ALL = (*SENTIMENT.values(), *HATE.values())


async def confirm_changelogs() -> None:
    """Return once the broker has every changelog write made so far (raise if one failed)."""
    await asyncio.gather(*(counter.table.confirm_changelog() for counter in ALL))
