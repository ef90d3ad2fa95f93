"""Windowed sentiment and hate counts in Faust tables, updated once per key per batch.

Four changelogged tables: sentiment and hate counts, each in a tumbling window and a
hopping window. Time is the Kafka record timestamp (stream time), not the wall clock:
`.relative_to_now()` is broken in faust-streaming 0.15.3.

What is counted, and why counts stay exact over at-least-once delivery (per-partition keys
with offset watermarks), is pure code in `counting.py`; this module stores it.

The watermark argument needs the changelog to be at least as far as the committed source
offsets. Faust's own pre-commit flush gives up after 0.1 s per message, so the pipeline
awaits `Tables.confirm()` — every changelog write *of its own batch* acknowledged by the
broker — before it acks the batch. Writes are collected per call of `apply` (which never
awaits), so two agents can never take, or ack on, each other's writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import AppT, EventT
from faust.types.tables import WindowWrapperT
from faust.types.tuples import FutureMessage
from faust.windows import HoppingWindow

from streamapp.counting import (
    Count,
    CountValue,
    TableKey,
    Window,
    apply_counts,
    summarise,
)
from streamapp.faust_compat import current_event
from streamapp.settings import Settings

log = logging.getLogger(__name__)


class ChangelogNotConfirmed(RuntimeError):
    """Some changelog writes failed; they were sent again and the batch must be retried."""


@dataclass(frozen=True)
class ChangelogWrite:
    table: CountTable
    key: Any
    partition: int | None
    value: Any
    future: FutureMessage


class CountTable(faust.Table):
    """A Faust table whose changelog writes can be collected and awaited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recording: list[ChangelogWrite] | None = None

    def send_changelog(
        self, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any
    ) -> FutureMessage:
        fut = super().send_changelog(partition, key, value, *args, **kwargs)
        if self._recording is not None:
            self._recording.append(ChangelogWrite(self, key, partition, value, fut))
        return fut

    @contextmanager
    def recording(self, into: list[ChangelogWrite]) -> Iterator[None]:
        """Collect the changelog writes made inside the block (which must not await)."""
        self._recording = into
        try:
            yield
        finally:
            self._recording = None


async def confirm(writes: Sequence[ChangelogWrite]) -> None:
    """Wait for `writes`; re-send the newest value of each key whose write failed, and raise
    so the batch is retried."""
    if not writes:
        return
    results = await asyncio.gather(*(w.future for w in writes), return_exceptions=True)
    # Values are whole states, not deltas: only the newest write of a key matters, and it is
    # re-sent only if it is the one that failed.
    newest: dict[tuple[str, Any], tuple[ChangelogWrite, BaseException | None]] = {}
    for write, result in zip(writes, results, strict=True):
        error = result if isinstance(result, BaseException) else None
        newest[(write.table.name, write.key)] = (write, error)
    failed = [(w, e) for w, e in newest.values() if e is not None]
    if not failed:
        return
    for write, _ in failed:
        write.table.send_changelog(write.partition, write.key, write.value)
    raise ChangelogNotConfirmed(f"{len(failed)} changelog writes failed: {failed[0][1]!r}")


class _TableStore:
    """`counting.CountStore` over a windowed Faust table, for one batch."""

    def __init__(self, table: CountTable, events: Mapping[tuple[str, int], EventT]) -> None:
        self.table = table
        self.events = events

    @contextmanager
    def partition(self, topic: str, partition: int) -> Iterator[None]:
        # Reads need the event too: the RocksDB store looks a key up only in the partition
        # of the current event, so a read under another partition's event would miss the
        # stored count and restart it from zero.
        with current_event(self.events[(topic, partition)]):
            yield

    def get(self, key: TableKey) -> Mapping[str, int] | None:
        value: Mapping[str, int] | None = self.table.get(key)
        return value

    def set(self, key: TableKey, value: CountValue) -> None:
        self.table[key] = value


class WindowedCounter:
    """A windowed Faust table of counts with idempotent, batched updates."""

    def __init__(self, name: str, wrapper: WindowWrapperT, kind: str) -> None:
        self.name = name
        self.kind = kind  # tumbling | hopping
        self.wrapper = wrapper
        table, window = wrapper.table, wrapper.table.window
        # Faust's tumbling window is a hopping window whose step is its size.
        if not isinstance(table, CountTable) or not isinstance(window, HoppingWindow):
            raise TypeError(f"{name}: expected a windowed CountTable, got {table!r}")
        self.table = table
        self.window: HoppingWindow = window

    def apply(
        self,
        counts: Sequence[Count],
        events_by_partition: Mapping[tuple[str, int], EventT],
        writes: list[ChangelogWrite],
    ) -> int:
        """Apply a batch; return the increments applied (redeliveries skipped). Changelog
        writes are appended to `writes`.

        `events_by_partition` maps (topic, partition) to an event of that partition: Faust
        sends a changelog record to the partition of the "current event", and batch
        processing has no current event of its own.
        """
        with self.table.recording(writes):
            return apply_counts(
                _TableStore(self.table, events_by_partition), counts, self.window.ranges
            )

    # -- reads ----------------------------------------------------------------
    def windows(self, source: str | None = None) -> dict[Window, dict[str, dict[str, int]]]:
        """{window: {source: {label: count}}}, summed over this worker's partitions."""
        return summarise(self._items(), source)

    def _items(self) -> Iterator[tuple[TableKey, Mapping[str, int]]]:
        for table_key, value in list(self.table.items()):
            if value is None:
                continue
            key, window_range = table_key
            yield (key, (window_range[0], window_range[1])), value

    def current_window(self, now: float) -> Window:
        """The newest window containing `now` (what `WindowSet.now()` reads)."""
        rng = self.window.current(now)
        return (rng[0], rng[1])

    def describe(self) -> dict[str, Any]:
        w = self.window
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "size": w.size}
        out["expires"] = w.expires
        if self.kind == "hopping":
            out["step"] = w.step
        return out


@dataclass(frozen=True)
class Tables:
    """The worker's four counters."""

    sentiment: dict[str, WindowedCounter]  # by window kind: tumbling | hopping
    hate: dict[str, WindowedCounter]

    @property
    def all(self) -> tuple[WindowedCounter, ...]:
        return (*self.sentiment.values(), *self.hate.values())

    def apply(
        self,
        sentiment: Sequence[Count],
        hate: Sequence[Count],
        events_by_partition: Mapping[tuple[str, int], EventT],
    ) -> list[ChangelogWrite]:
        """Apply one batch's counts to every table; return its changelog writes, for
        `confirm` (this never awaits, so the writes are exactly this batch's)."""
        writes: list[ChangelogWrite] = []
        for counter in self.sentiment.values():
            counter.apply(sentiment, events_by_partition, writes)
        for counter in self.hate.values():
            counter.apply(hate, events_by_partition, writes)
        return writes

    async def confirm(self, writes: Sequence[ChangelogWrite]) -> None:
        """Return once the broker has `writes` (raise if one failed; it is re-sent)."""
        await confirm(writes)


def declare_tables(app: AppT, settings: Settings) -> Tables:
    def table(name: str, help_: str) -> CountTable:
        t = CountTable(
            app,
            name=name,
            default=None,
            beacon=app.tables.beacon,
            partitions=settings.topic_partitions,
            key_type=None,
            value_type=None,
            help=help_,
        )
        app.tables.add(t)
        return t

    size, expires = settings.window_size, settings.window_expires
    hop, step = settings.hopping_size, settings.hopping_step
    sentiment_help = "sentiment counts per source and label"
    hate_help = "hate counts per source and category"
    return Tables(
        sentiment={
            "tumbling": WindowedCounter(
                "sentiment-tumbling",
                table("sentiment-counts-tumbling", sentiment_help).tumbling(size, expires=expires),
                "tumbling",
            ),
            "hopping": WindowedCounter(
                "sentiment-hopping",
                table("sentiment-counts-hopping", sentiment_help).hopping(
                    hop, step, expires=expires
                ),
                "hopping",
            ),
        },
        hate={
            "tumbling": WindowedCounter(
                "hate-tumbling",
                table("hate-counts-tumbling", hate_help).tumbling(size, expires=expires),
                "tumbling",
            ),
            "hopping": WindowedCounter(
                "hate-hopping",
                table("hate-counts-hopping", hate_help).hopping(hop, step, expires=expires),
                "hopping",
            ),
        },
    )
