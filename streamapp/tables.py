"""Windowed sentiment and hate counts in Faust tables, updated once per key per batch.

Four changelogged tables: sentiment and hate counts, each in a tumbling window and a
hopping window. Time is the Kafka record timestamp (stream time), not the wall clock:
`.relative_to_now()` is broken in faust-streaming 0.15.3.

What is counted, and why counts stay exact over at-least-once delivery (per-partition keys
with offset watermarks), is pure code in `counting.py`; this module stores it.

The watermark argument needs the changelog to be at least as far as the committed source
offsets. Faust's own pre-commit flush gives up after 0.1 s per message, so the pipeline
awaits `Tables.confirm()` — every changelog write *of its own batch* acknowledged by the
broker, within a bounded time — before it acks the batch. Writes are collected per call of
`apply` (which never awaits), so two agents can never take, or ack on, each other's writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faust
from faust.exceptions import PartitionsMismatch
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
    shared_step,
    summarise,
)
from streamapp.errors import DependencyError
from streamapp.faust_compat import current_event, refresh_kafka_metadata
from streamapp.settings import Settings

log = logging.getLogger(__name__)


class ChangelogNotConfirmed(DependencyError):
    """Some changelog writes failed or are still pending; the batch must be retried (the
    writes stay in the caller's list and are published again or awaited again)."""


@dataclass
class ChangelogWrite:
    """One table change to publish to its changelog: whole state, not a delta."""

    table: CountTable
    key: Any
    partition: int | None
    value: Any
    pending: FutureMessage
    published: bool = False


class CountTable(faust.Table):
    """A Faust table whose batch writes are published and awaited by `confirm`, not by
    Faust's producer buffer.

    Why not the buffer: its one draining task sends each buffered message in turn and dies at
    the first send that raises (a metadata timeout under a burst, say), after which nothing
    else it holds is ever sent and whatever waits for those writes waits forever. That is how
    a 40,000-message burst hung the worker. `confirm` publishes the writes itself, in order,
    and sees every error.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recording: list[ChangelogWrite] | None = None

    def send_changelog(
        self, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any
    ) -> FutureMessage:
        if self._recording is None:
            # Faust's own writes (expired windows removed by its cleanup timer).
            return super().send_changelog(partition, key, value, *args, **kwargs)
        write = self._changelog_write(partition, key, value)
        self._recording.append(write)
        return write.pending

    def _changelog_write(self, partition: int | None, key: Any, value: Any) -> ChangelogWrite:
        pending = self.changelog_topic.as_future_message(
            key=key,
            value=value,
            partition=partition,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            # Faust records the changelog offset a store holds on delivery.
            callback=self._on_changelog_sent,
            eager_partitioning=True,
        )
        return ChangelogWrite(self, key, partition, value, pending)

    @contextmanager
    def recording(self, into: list[ChangelogWrite]) -> Iterator[None]:
        """Collect the changelog writes made inside the block (which must not await)."""
        self._recording = into
        try:
            yield
        finally:
            self._recording = None


async def confirm(writes: list[ChangelogWrite], wait_seconds: float) -> None:
    """Publish `writes` in order and wait up to `wait_seconds` for the broker to have them.

    Confirmed writes are removed from the list. If some failed or are still pending after
    `wait_seconds`, they stay in it (failed ones re-armed to be published again, pending ones to be
    awaited again: never re-sent while the first send may still land, which could put an
    older state after a newer one) and ChangelogNotConfirmed is raised; the caller retries
    with the same list.
    """
    if not writes:
        return
    # Values are whole states: of several writes to a key only the newest matters.
    newest: dict[tuple[str, Any], ChangelogWrite] = {}
    for write in writes:
        newest[(write.table.name, write.key)] = write
    writes[:] = [w for w in writes if newest[(w.table.name, w.key)] is w]
    errors: list[BaseException] = []
    for write in writes:
        if write.published:
            continue
        try:
            await write.table.changelog_topic.publish_message(write.pending, wait=False)
            write.published = True
        except Exception as exc:  # the producer refused it: try again with the batch
            errors.append(exc)
            break  # keep the order: nothing after a write that could not be queued
    waiting = [w.pending for w in writes if w.published and not w.pending.done()]
    if waiting:
        await asyncio.wait(waiting, timeout=wait_seconds)
    remaining: list[ChangelogWrite] = []
    for write in writes:
        if not write.published or not write.pending.done():
            remaining.append(write)
        elif write.pending.exception() is not None:
            errors.append(write.pending.exception())  # type: ignore[arg-type]
            remaining.append(write.table._changelog_write(write.partition, write.key, write.value))
    writes[:] = remaining
    if remaining:
        cause = f": {errors[0]!r}" if errors else f" within {wait_seconds:.0f}s"
        raise ChangelogNotConfirmed(
            f"{len(remaining)} changelog writes not confirmed{cause}; retrying the batch"
        )


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

    def get(self, key: TableKey) -> Mapping[str, Any] | None:
        value: Mapping[str, Any] | None = self.table.get(key)
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
                _TableStore(self.table, events_by_partition),
                counts,
                self.window.ranges,
                shared_step(self.window.step),
            )

    # -- reads ----------------------------------------------------------------
    def windows(self, source: str | None = None) -> dict[Window, dict[str, dict[str, int]]]:
        """{window: {source: {label: count}}}, summed over this worker's partitions."""
        return summarise(self._items(), source)

    @property
    def changelog_topic(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def items(self) -> Iterator[tuple[TableKey, Mapping[str, Any]]]:
        """This worker's items: ((key, window), value) (see `counting` for the values)."""
        return self._items()

    def _items(self) -> Iterator[tuple[TableKey, Mapping[str, Any]]]:
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
    #: Seconds to wait for a batch's changelog writes before retrying the batch.
    confirm_timeout: float = 30.0
    #: Has the worker's consumer and producer fetch the cluster's metadata now.
    metadata_refresher: Callable[[], Awaitable[None]] | None = None

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
        `confirm` (this never awaits, so the writes are exactly this batch's: two agents
        never wait on, or ack with, each other's)."""
        writes: list[ChangelogWrite] = []
        for counter in self.sentiment.values():
            counter.apply(sentiment, events_by_partition, writes)
        for counter in self.hate.values():
            counter.apply(hate, events_by_partition, writes)
        return writes

    async def confirm(self, writes: list[ChangelogWrite]) -> None:
        """Return once the broker has `writes`; see `confirm`."""
        await confirm(writes, self.confirm_timeout)

    async def after_failure(self, exc: BaseException) -> None:
        """A batch failed with `exc`: if the tables' view of Kafka may be what failed it,
        start renewing that view (during the retry's backoff, which waits no longer for it).

        Faust refuses a table write (`PartitionsMismatch`) when the consumer's metadata
        snapshot shows the changelog with other partitions than the source topic, and the
        producer refuses a partition its metadata does not show. A changelog created just
        before the group joined is in the snapshot with no partitions (its leader not
        elected yet: seen in a CI run), and both are renewed only with the metadata, every
        5 minutes: until then every batch failed."""
        if self.metadata_refresher is not None and isinstance(
            exc, PartitionsMismatch | ChangelogNotConfirmed
        ):
            await self.metadata_refresher()


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

    def counters(name: str, help_: str) -> dict[str, WindowedCounter]:
        """`name`'s tumbling and hopping counters (tables `<name>-counts-<kind>`)."""
        return {
            "tumbling": WindowedCounter(
                f"{name}-tumbling",
                table(f"{name}-counts-tumbling", help_).tumbling(size, expires=expires),
                "tumbling",
            ),
            "hopping": WindowedCounter(
                f"{name}-hopping",
                table(f"{name}-counts-hopping", help_).hopping(hop, step, expires=expires),
                "hopping",
            ),
        }

    async def refresh() -> None:
        await refresh_kafka_metadata(app)

    return Tables(
        confirm_timeout=settings.changelog_confirm_timeout,
        metadata_refresher=refresh,
        sentiment=counters("sentiment", "sentiment counts per source and label"),
        hate=counters("hate", "hate counts per source and category"),
    )
