"""Per-partition offset order for the agents: every input message is processed once, in order.

Why this exists: after a rebalance, Faust resumes the input partitions and only then seeks
them back to the committed offsets; records fetched in between can be dropped, so a stream
starts some way after the committed offset (faust-streaming issue #596). Measured here, about
one restart in five after a SIGKILL skipped ~180 messages per partition. Because Faust
commits only a contiguous run of acked offsets, the partition would then never commit
again, and the skipped messages would never be processed.

The sequencer knows the next offset each partition must deliver (initially the committed
offset; with none committed, the partition's first offset, which is where Faust's "earliest"
reset starts it: the skip happens there too, and taking the stream as it came lost the
skipped messages in 3 of 5 SIGKILL test runs) and sorts every incoming event:

* offset == expected: processed, in order (which the tables' offset watermarks rely on);
* offset <  expected: already processed (a re-seek delivered it again): acked, not redone;
* offset >  expected: messages are missing. The early events are released unprocessed and
  the partition is sought back to the expected offset (they come again after it). If the
  expected offset still does not arrive after a few seeks, the gap is real (compaction,
  transaction markers, retention) and is accepted with a warning.

A watchdog covers what sorting cannot see: a partition that stops delivering altogether
while messages wait in it (seen about once in ten scale-out runs, after a #596 repair during
a rebalance). When a partition has lag, no batch of it is in progress and nothing of it has
arrived for `stall_seconds`, it is sought back to its expected offset. That includes an
assigned partition that has delivered nothing at all since the assignment (then from its
committed offset): when the records a worker fetched of a partition before Faust's seek are
all dropped, no later record arrives to show the skip (seen after a SIGKILL, 2 of 5 restarts
in one series: the partition stayed silent with its whole backlog waiting).

It reads the consumer through `ConsumerView`; `faust_compat.ConsumerPositions` implements it
over Faust's private consumer state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka.errors import KafkaError
from faust.types import TP, EventT, Message

log = logging.getLogger(__name__)

#: Seconds `prepare` waits for a partition's first offset.
EARLIEST_TIMEOUT = 10.0


class ConsumerView(Protocol):
    """What the sequencer needs of the consumer."""

    @property
    def generation(self) -> int: ...

    @property
    def rebalancing(self) -> bool: ...

    def committed(self, tp: TP) -> int | None: ...

    async def earliest(self, tps: Sequence[TP]) -> Mapping[TP, int]:
        """The first offset each partition holds (where a partition with no committed
        offset is read from)."""
        ...

    def forget(self, message: Message) -> None: ...

    def assignment(self) -> set[TP]:
        """The partitions assigned to this worker (empty before the consumer runs)."""
        ...

    def highwater(self, tp: TP) -> int | None:
        """The partition's end offset as of the last fetch (None before one)."""
        ...

    async def seek(self, offsets: Mapping[TP, int]) -> None: ...


@dataclass
class Admission:
    process: list[EventT] = field(default_factory=list)
    duplicates: list[EventT] = field(default_factory=list)
    released: list[EventT] = field(default_factory=list)


@dataclass
class _Repair:
    expected: int
    last_seek: float | None = None
    seeks: int = 0


@dataclass
class OffsetSequencer:
    consumer: ConsumerView
    #: Time after a seek for the expected offset to arrive before seeking again.
    retry_seconds: float = 3.0
    #: Seeks per gap before it is accepted as real (compaction, transaction markers).
    max_seeks: int = 3
    #: Seconds a partition with waiting messages may deliver nothing before it is sought.
    stall_seconds: float = 30.0
    #: The input topics: the watchdog watches every assigned partition of them.
    topics: frozenset[str] = frozenset()
    stall_seeks: int = 0
    seeks: int = 0
    duplicates: int = 0
    released: int = 0
    gaps_accepted: int = 0
    _expected: dict[TP, int] = field(default_factory=dict)
    #: First offsets of partitions with nothing committed, read by `prepare`.
    _earliest: dict[TP, int] = field(default_factory=dict)
    _generation: int | None = None
    _repairs: dict[TP, _Repair] = field(default_factory=dict)
    #: When each partition last delivered something, and those with a batch in progress.
    _last_progress: dict[TP, float] = field(default_factory=dict)
    _in_flight: set[TP] = field(default_factory=set)
    #: When this generation's assignment was first seen (the watchdog's clock for partitions
    #: that have delivered nothing since).
    _assigned_at: float | None = None

    async def prepare(self, events: Sequence[EventT]) -> None:
        """Before `admit`: read the first offset of each partition in `events` that has
        nothing committed and no expected offset yet (one request per new partition)."""
        self._check_generation()
        consumer = self.consumer
        missing = {
            e.message.tp
            for e in events
            if e.message.tp not in self._expected
            and e.message.tp not in self._earliest
            and consumer.committed(e.message.tp) is None
        }
        if not missing:
            return
        try:
            # Bounded: this goes through Faust's consumer thread, which a rebalance can keep
            # busy; a stalled agent would be worse than the old behaviour below.
            found = await asyncio.wait_for(consumer.earliest(sorted(missing)), EARLIEST_TIMEOUT)
        except (TimeoutError, KafkaError) as exc:
            log.warning(
                "could not read the first offsets of %s (%s); taking their streams as they "
                "come this time",
                sorted(f"{tp.topic}[{tp.partition}]" for tp in missing),
                type(exc).__name__,
            )
            return
        log.info(
            "nothing committed yet for %s: reading from %s",
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(found)),
            ", ".join(str(found[tp]) for tp in sorted(found)),
        )
        self._earliest.update(found)

    def _check_generation(self) -> None:
        if self._generation != self.consumer.generation:
            # New assignment: whatever we knew may be stale; start from the committed offsets.
            self._generation = self.consumer.generation
            self._expected.clear()
            self._repairs.clear()
            self._earliest.clear()
            self._last_progress.clear()
            self._in_flight.clear()
            self._assigned_at = time.monotonic()

    def admit(self, events: Sequence[EventT]) -> Admission:
        """Sort a batch into events to process, duplicates to ack, and events to release."""
        consumer = self.consumer
        self._check_generation()
        out = Admission()
        now = time.monotonic()
        for event in events:
            msg = event.message
            tp, offset = msg.tp, msg.offset
            expected = self._expected.get(tp)
            if expected is None:
                expected = consumer.committed(tp)
                if expected is None:  # nothing committed: from the partition's start
                    expected = self._earliest.get(tp, offset)
            if offset < expected:
                out.duplicates.append(event)
                self._last_progress[tp] = now
                continue
            if offset > expected:
                repair = self._repairs.get(tp)
                if repair is None or repair.expected != expected:
                    self._repairs[tp] = _Repair(expected)
                    log.warning(
                        "%s[%d] skipped ahead from offset %d to %d (faust-streaming #596); "
                        "reading it again",
                        tp.topic,
                        tp.partition,
                        expected,
                        offset,
                    )
                    out.released.append(event)
                    continue
                waited = (
                    repair.last_seek is not None and now - repair.last_seek > self.retry_seconds
                )
                if repair.seeks < self.max_seeks or not waited:
                    out.released.append(event)
                    continue
                self.gaps_accepted += 1
                log.warning(
                    "offsets %d..%d of %s[%d] never arrived after %d seeks; accepting the gap",
                    expected,
                    offset - 1,
                    tp.topic,
                    tp.partition,
                    repair.seeks,
                )
            self._repairs.pop(tp, None)
            self._expected[tp] = offset + 1
            self._last_progress[tp] = now
            self._in_flight.add(tp)
            out.process.append(event)
        for event in out.released:
            # Faust would wait for these at the next rebalance; they will be delivered again.
            consumer.forget(event.message)
        self.duplicates += len(out.duplicates)
        self.released += len(out.released)
        return out

    async def repair(self) -> None:
        """Seek partitions with missing messages back (called periodically).

        Not done inside `admit`: until recovery has finished, Faust may still clear the
        stream queues (`FlowControlEvent.resume`), which would drop the re-read records again.
        """
        if self.consumer.rebalancing:
            return
        now = time.monotonic()
        await self._unstall(now)
        due = {
            tp: r
            for tp, r in self._repairs.items()
            if r.last_seek is None or now - r.last_seek > self.retry_seconds
        }
        if not due:
            return
        await self.consumer.seek({tp: r.expected for tp, r in due.items()})
        for r in due.values():
            r.last_seek = now
            r.seeks += 1
        self.seeks += len(due)

    async def _unstall(self, now: float) -> None:
        """The watchdog (see the module docstring)."""
        self._check_generation()
        assigned_at = self._assigned_at if self._assigned_at is not None else now
        watched = set(self._expected)
        watched.update(tp for tp in self.consumer.assignment() if tp.topic in self.topics)
        silent: dict[TP, float] = {}
        for tp in watched:
            if tp in self._repairs or tp in self._in_flight:
                continue
            since = self._last_progress.get(tp, assigned_at)
            if now - since > self.stall_seconds:
                silent[tp] = since
        if not silent:
            return
        expected = {tp: self._expected.get(tp, self.consumer.committed(tp)) for tp in silent}
        unknown = sorted(tp for tp, offset in expected.items() if offset is None)
        if unknown:
            # Nothing committed and nothing delivered: Faust reads it from its first offset.
            try:
                first = await asyncio.wait_for(self.consumer.earliest(unknown), EARLIEST_TIMEOUT)
            except (TimeoutError, KafkaError):
                first = {}
            expected.update(first)
        stalled: dict[TP, int] = {}
        for tp, since in silent.items():
            offset = expected.get(tp)
            end = self.consumer.highwater(tp)
            if offset is None or end is None or end <= offset:
                continue
            log.warning(
                "%s[%d] delivered nothing for %.0fs with %d messages waiting; reading it "
                "again from offset %d",
                tp.topic,
                tp.partition,
                now - since,
                end - offset,
                offset,
            )
            self._last_progress[tp] = now  # the next try after another stall_seconds
            stalled[tp] = offset
        if not stalled:
            return
        await self.consumer.seek(stalled)
        self.stall_seeks += len(stalled)

    def done(self, events: Sequence[EventT]) -> None:
        """The batch of `events` is finished (acked): its partitions are idle again."""
        now = time.monotonic()
        for event in events:
            self._in_flight.discard(event.message.tp)
            self._last_progress[event.message.tp] = now

    def release(self, events: Sequence[EventT]) -> None:
        """Give up on `events` unprocessed: they will be delivered again (after a restart
        or a new assignment), so Faust must not wait for their acks."""
        for event in events:
            self.consumer.forget(event.message)
            self._in_flight.discard(event.message.tp)
        # Whatever comes next for these partitions starts from the committed offsets again.
        self._expected.clear()
        self._repairs.clear()

    def next_offset(self, tp: TP) -> int | None:
        """The next offset of `tp` the agent will process (None before its first batch)."""
        return self._expected.get(tp)

    def as_dict(self) -> dict[str, int]:
        return {
            "seeks": self.seeks,
            "duplicates_skipped": self.duplicates,
            "released_for_redelivery": self.released,
            "gaps_accepted": self.gaps_accepted,
            "partitions_repairing": len(self._repairs),
            "stalled_partitions_sought": self.stall_seeks,
        }
