"""OffsetSequencer: in-order admission, duplicate skipping, gap repair (faust-streaming #596).

The fake implements `offsets.ConsumerView`, the sequencer's public contract; the real
implementation over Faust's private consumer state is tested in test_faust_compat.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streamapp.offsets import ConsumerView, OffsetSequencer

TP0 = TP("tweets", 0)
TP1 = TP("tweets", 1)


@dataclass(eq=False)
class FakeMessage:
    tp: TP
    offset: int


@dataclass
class FakeConsumer:
    committed_offsets: dict[TP, int] = field(default_factory=dict)
    in_flight: set[Any] = field(default_factory=set)
    seeks: list[dict[TP, int]] = field(default_factory=list)
    generation: int = 1
    rebalancing: bool = False

    earliest_offsets: dict[TP, int] = field(default_factory=dict)
    earliest_requests: list[list[TP]] = field(default_factory=list)

    def committed(self, tp: TP) -> int | None:
        return self.committed_offsets.get(tp)

    highwaters: dict[TP, int] = field(default_factory=dict)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters.get(tp)

    async def earliest(self, tps: Any) -> Mapping[TP, int]:
        self.earliest_requests.append(list(tps))
        return {tp: self.earliest_offsets.get(tp, 0) for tp in tps}

    def forget(self, message: Any) -> None:
        self.in_flight.discard(message)

    assigned: set[TP] = field(default_factory=set)

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    async def seek(self, offsets: Mapping[TP, int]) -> None:
        self.seeks.append(dict(offsets))


def make(committed: dict[TP, int]) -> tuple[OffsetSequencer, FakeConsumer, FakeConsumer]:
    consumer = FakeConsumer(committed_offsets=committed)
    view: ConsumerView = consumer
    return OffsetSequencer(view, retry_seconds=0.0, max_seeks=2), consumer, consumer


def events(tp: TP, offsets: range | list[int]) -> list[Any]:
    return [SimpleNamespace(message=FakeMessage(tp, o)) for o in offsets]


def offsets(evs: list[Any]) -> list[int]:
    return [e.message.offset for e in evs]


async def test_in_order_events_are_processed_from_the_committed_offset() -> None:
    seq, consumer, _ = make({TP0: 10})
    out = seq.admit(events(TP0, range(10, 15)))
    assert offsets(out.process) == [10, 11, 12, 13, 14]
    assert not out.duplicates and not out.released
    out = seq.admit(events(TP0, range(15, 17)))
    assert offsets(out.process) == [15, 16]
    await seq.repair()
    assert consumer.seeks == []


async def test_redelivered_events_are_acked_not_processed_again() -> None:
    seq, _, _ = make({TP0: 0})
    seq.admit(events(TP0, range(0, 5)))
    out = seq.admit(events(TP0, range(2, 7)))
    assert offsets(out.duplicates) == [2, 3, 4]
    assert offsets(out.process) == [5, 6]


async def test_skipped_offsets_are_read_again_before_anything_after_them() -> None:
    seq, consumer, _ = make({TP0: 100, TP1: 50})
    early = events(TP0, range(278, 281))
    consumer.in_flight.update(e.message for e in early)
    out = seq.admit(early + events(TP1, [50, 51]))
    # The partition that skipped ahead processes nothing; the other one is unaffected.
    assert offsets(out.released) == [278, 279, 280]
    assert offsets(out.process) == [50, 51]
    # Released messages no longer count as in flight (they are delivered again).
    assert not consumer.in_flight
    await seq.repair()
    assert consumer.seeks == [{TP0: 100}]
    out = seq.admit(events(TP0, range(100, 103)))
    assert offsets(out.process) == [100, 101, 102]
    await seq.repair()
    assert len(consumer.seeks) == 1, "no more seeks once the expected offset arrived"


async def test_a_real_gap_is_accepted_after_the_configured_seeks() -> None:
    seq, consumer, _ = make({TP0: 10})
    assert offsets(seq.admit(events(TP0, [12])).released) == [12]
    await seq.repair()
    assert offsets(seq.admit(events(TP0, [12])).released) == [12]
    await seq.repair()
    out = seq.admit(events(TP0, [12, 13]))
    assert offsets(out.process) == [12, 13]
    assert seq.gaps_accepted == 1 and len(consumer.seeks) == 2


async def test_no_seek_while_rebalancing_and_state_resets_on_new_generation() -> None:
    seq, consumer, app = make({TP0: 10})
    seq.admit(events(TP0, [20]))
    app.rebalancing = True
    await seq.repair()
    assert consumer.seeks == []
    app.rebalancing = False
    app.generation = 2
    consumer.committed_offsets[TP0] = 20
    out = seq.admit(events(TP0, [20, 21]))
    assert offsets(out.process) == [20, 21]


async def test_nothing_committed_yet_starts_from_the_partitions_first_offset() -> None:
    seq, consumer, _ = make({})
    consumer.earliest_offsets = {TP0: 7, TP1: 0}
    first = events(TP0, [7, 8])
    await seq.prepare(first)
    assert offsets(seq.admit(first).process) == [7, 8]
    # The #596 skip on a partition that never committed: its first 5 never came.
    skipped = events(TP1, [5, 6])
    await seq.prepare(skipped)
    out = seq.admit(skipped)
    assert out.process == [] and offsets(out.released) == [5, 6]
    await seq.repair()
    assert consumer.seeks == [{TP1: 0}]
    assert offsets(seq.admit(events(TP1, [0, 1, 2])).process) == [0, 1, 2]
    # One request per partition, not per batch.
    await seq.prepare(events(TP0, [9]) + events(TP1, [3]))
    assert consumer.earliest_requests == [[TP0], [TP1]]


async def test_first_offsets_that_never_come_do_not_hold_the_agent(
    monkeypatch: Any,
) -> None:
    import streamapp.offsets

    seq, consumer, _ = make({})

    async def stuck(tps: Any) -> Mapping[TP, int]:
        await asyncio.sleep(60)
        return {}

    consumer.earliest = stuck  # type: ignore[method-assign]
    monkeypatch.setattr(streamapp.offsets, "EARLIEST_TIMEOUT", 0.05)
    batch = events(TP0, [7, 8])
    await seq.prepare(batch)  # returns: the stream is then taken as it comes, as before
    assert offsets(seq.admit(batch).process) == [7, 8]


async def test_a_partition_that_stops_delivering_with_messages_waiting_is_read_again() -> None:
    seq, consumer, _ = make({TP0: 0, TP1: 0})
    seq.stall_seconds = 0.05
    batch = events(TP0, range(5)) + events(TP1, range(3))
    seq.admit(batch)
    consumer.highwaters = {TP0: 10, TP1: 3}  # TP0: 5 waiting; TP1: all read
    await asyncio.sleep(0.1)
    await seq.repair()
    assert consumer.seeks == [], "a batch in progress is not a stall"
    seq.done(batch)
    await seq.repair()
    assert consumer.seeks == [], "just finished: not stalled yet"
    await asyncio.sleep(0.1)
    await seq.repair()
    assert consumer.seeks == [{TP0: 5}] and seq.as_dict()["stalled_partitions_sought"] == 1
    await seq.repair()
    assert len(consumer.seeks) == 1, "one seek per stall_seconds, not one per check"
    # Delivering again ends it.
    seq.admit(events(TP0, [5, 6]))
    seq.done(events(TP0, [5, 6]))
    consumer.highwaters[TP0] = 7
    await asyncio.sleep(0.1)
    await seq.repair()
    assert len(consumer.seeks) == 1


async def test_a_partition_silent_since_the_assignment_with_messages_waiting_is_read_again() -> (
    None
):
    """Its fetched records all dropped before Faust's seek: nothing arrives to show a skip."""
    tp2, changelog = TP("tweets", 2), TP("counts-changelog", 0)
    seq, consumer, _ = make({TP0: 0, TP1: 40, changelog: 0})
    seq.topics = frozenset({"tweets"})
    seq.stall_seconds = 0.05
    consumer.assigned = {TP0, TP1, tp2, changelog}
    # TP0 delivers; TP1 (committed 40) and tp2 (nothing committed, first offset 7) stay
    # silent with messages waiting; the changelog is not an input.
    consumer.highwaters = {TP0: 3, TP1: 90, tp2: 20, changelog: 50}
    consumer.earliest_offsets = {tp2: 7}
    await seq.repair()
    assert consumer.seeks == [], "just assigned: not stalled yet"
    batch = events(TP0, range(3))
    seq.admit(batch)
    seq.done(batch)
    await asyncio.sleep(0.1)
    await seq.repair()
    assert consumer.seeks == [{TP1: 40, tp2: 7}]
    assert seq.as_dict()["stalled_partitions_sought"] == 2
    await seq.repair()
    assert len(consumer.seeks) == 1, "one seek per stall_seconds, not one per check"
    # A new assignment starts the clock again.
    consumer.generation += 1
    await asyncio.sleep(0.1)
    consumer.generation += 1
    await seq.repair()
    assert len(consumer.seeks) == 1
