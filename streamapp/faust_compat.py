"""Every use of a private faust-streaming internal, in one place.

faust-streaming 0.15.3 has no public API for six things the worker needs (and one
behaviour of its worker to undo, `end_startup_spinner_logging`):

* which event a table write belongs to (`faust.streams._current_event`): a table stores and
  changelogs a key in the partition of the current event, and batch processing has none of
  its own;
* a consumer's committed offset per partition, and forgetting a message that will be
  delivered again (`Consumer._committed_offset`, `Consumer._unacked_messages`): see
  `offsets.py`;
* a record's declared fields and defaults (`Record._options`): see `decoding.py`;
* how long the broker may hold a fetch (`with_fetch_max_wait`): Faust passes aiokafka a
  fixed 1.5 s; and, in the same consumer, handing a message to the streams without four
  tasks per message (`_Consumer.wait_first`);
* the aiokafka producer it builds, to patch its client (`with_known_topics_kept`, see
  `aiokafka_compat.py`);
* the aiokafka clients of the worker's consumer (in its own thread) and producer, to fetch
  the cluster's metadata now (`refresh_kafka_metadata`; see `Tables.after_failure`).

`tests/unit/test_faust_compat.py` exercises each against the installed Faust, so an upgrade
that renames one fails there rather than in production.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Coroutine, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT, EventT, Message, TransportT
from mode.services import WaitResults

from streamapp.aiokafka_compat import keep_known_topics


@contextmanager
def current_event(event: EventT) -> Iterator[None]:
    """Make `event` the current event of this task (what a Faust stream does per event)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class ConsumerPositions:
    """The consumer state `offsets.OffsetSequencer` reads and repairs."""

    def __init__(self, app: AppT) -> None:
        self.app = app

    @property
    def generation(self) -> int:
        """Changes with each new partition assignment."""
        return int(self.app.consumer_generation_id)

    @property
    def rebalancing(self) -> bool:
        return bool(self.app.rebalancing)

    def committed(self, tp: TP) -> int | None:
        """The offset committed for `tp` (the next one to deliver), None if none yet."""
        offset: int | None = self.app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        return offset

    async def earliest(self, tps: Sequence[TP]) -> Mapping[TP, int]:
        return await self.app.consumer.earliest_offsets(*tps)

    def forget(self, message: Message) -> None:
        """Stop waiting for `message` to be acked: it will be delivered again."""
        self.app.consumer._unacked_messages.discard(message)  # type: ignore[attr-defined]

    def assignment(self) -> set[TP]:
        """The partitions assigned to this worker (empty before the consumer runs)."""
        try:
            return set(self.app.consumer.assignment())
        except Exception:  # not started, or between assignments
            return set()

    def highwater(self, tp: TP) -> int | None:
        """The partition's end offset as of the last fetch (None before one)."""
        try:
            value = self.app.consumer.highwater(tp)
        except Exception:  # not assigned (any more), or the consumer is not running
            return None
        return None if value is None else int(value)

    async def seek(self, offsets: Mapping[TP, int]) -> None:
        await self.app.consumer.seek_wait(dict(offsets))


async def refresh_kafka_metadata(app: AppT) -> None:
    """Have the worker's consumer and producer start fetching the cluster's metadata now
    rather than at their next periodic refresh (`*_metadata_max_age_ms`, 5 minutes): a topic
    they know with fewer partitions than it has (created a moment before the group joined,
    or just repaired) is then seen as it is. Faust checks table writes against the
    consumer's snapshot of it, a changed topic makes the group rebalance onto it, and the
    producer refuses a partition its metadata does not show ("Unrecognized partition")."""
    if isinstance(app.producer, _Producer):
        app.producer.refresh_metadata()
    if isinstance(app.consumer, _Consumer):
        await app.consumer.refresh_metadata()


def record_fields(model: type[Any]) -> Mapping[str, Any]:
    """A Faust Record's fields and their annotations, in declaration order."""
    fields: Mapping[str, Any] = model._options.fields
    return fields


def record_defaults(model: type[Any]) -> Mapping[str, Any]:
    """The fields of a Faust Record that have defaults."""
    defaults: Mapping[str, Any] = model._options.defaults
    return defaults


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start(), which builds its fetcher with it.
        consumer._fetch_max_wait_ms = self.consumer.fetch_max_wait_ms  # type: ignore[attr-defined]
        return consumer


class _Consumer(aiokafka_driver.Consumer):
    fetch_max_wait_ms = 1500  # Faust's own

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def refresh_metadata(self) -> None:
        """Start a fetch of the cluster's metadata; see `refresh_kafka_metadata`."""
        thread: Any = self._thread

        def start() -> None:
            # In the consumer thread's loop, where its client lives. Not awaited there: the
            # thread's other calls (fetches, commits) never queue behind a slow broker.
            thread._ensure_consumer()._client.force_metadata_update()

        await thread.call_thread(start)

    async def wait_first(
        self,
        *coros: Any,
        timeout: Any = None,  # noqa: ASYNC109 - mode's signature, overridden
    ) -> WaitResults:
        """Faust's fetch loop hands each message to the streams with
        `wait_first(callback(message), self.suspend_flow.wait())`: the delivery, abandoned if
        a rebalance suspends the flow first. mode runs that as four tasks (the two, and the
        consumer stopping or crashing) and cancels three: a third of a loaded worker's CPU
        (make bench, one run: 0.43 -> 0.28 s per 1,000 messages without them; 1 worker
        1,921 -> 2,686 msgs/s, 2 workers 2,938 -> 3,816).

        A delivery almost never waits (it puts the event on a queue with room), and one that
        does not wait cannot lose a race. So it runs inline, up to its first wait, and the
        loop turns once after it; only one that does wait (a full queue, a rebalance) goes on
        as before: raced, and cancelled if the flow is suspended first. Any other call is
        mode's."""
        if not (
            timeout is None
            and len(coros) == 2
            and inspect.iscoroutine(coros[0])
            and _is_wait_of(coros[1], self.suspend_flow)
        ) or (self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()):
            return await super().wait_first(*coros, timeout=timeout)
        delivery, flow_suspended = coros
        try:
            first = delivery.send(None)
        except StopIteration as done:
            flow_suspended.close()
            # One turn of the loop per message, as mode's tasks gave: without it a fetch of
            # hundreds of messages runs between two turns, and the rebalance callbacks and
            # the consumer thread's hand-offs wait behind it (the SIGKILL-worker fault test
            # stalled in 1 of 3 runs so).
            await asyncio.sleep(0)
            return WaitResults([delivery], [done.value], False)
        except BaseException:
            flow_suspended.close()
            raise
        return await super().wait_first(_Started(delivery, first), flow_suspended)


def _is_wait_of(coro: Any, event: Any) -> bool:
    """True when `coro` is `event.wait()`, not yet started."""
    frame = getattr(coro, "cr_frame", None)
    return (
        frame is not None
        and coro.cr_code is type(event).wait.__code__
        and frame.f_locals.get("self") is event
    )


class _Started:
    """Awaiting it continues `coro`, which has run up to its first wait, where it yielded
    `first`: what a task would have done with it (mode wraps it in one)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.first
        while True:
            try:
                sent = yield pending  # the task driving us waits for it, as coro asked
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # the task's cancellation, or the awaited error
                try:
                    pending = coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                pending = coro.send(sent)
            except StopIteration as done:
                return done.value


def with_fetch_max_wait(transport: TransportT, seconds: float) -> TransportT:
    """`transport`'s worker consumer asks the broker to hold a fetch at most `seconds`, and
    hands messages to the streams without a task per message (`_Consumer.wait_first`).

    The only driver Faust 0.15 has for `kafka://` is aiokafka's; another is returned as is.
    """
    if isinstance(transport, aiokafka_driver.Transport):
        wait_ms = max(1, round(seconds * 1000))
        consumer = type("Consumer", (_Consumer,), {"fetch_max_wait_ms": wait_ms})
        transport.Consumer = consumer  # type: ignore[misc]
    return transport


class _Producer(aiokafka_driver.Producer):
    def _new_producer(self, transactional_id: str | None = None) -> Any:
        producer = super()._new_producer(transactional_id)
        keep_known_topics(producer.client)
        return producer

    def refresh_metadata(self) -> None:
        """Start a fetch of the cluster's metadata; see `refresh_kafka_metadata`."""
        self._ensure_producer().client.force_metadata_update()


def with_known_topics_kept(transport: TransportT) -> TransportT:
    """`transport`'s producer keeps the metadata of every topic it writes to (see
    `aiokafka_compat`: a table's changelog writes could otherwise wait for minutes)."""
    if isinstance(transport, aiokafka_driver.Transport):
        transport.Producer = _Producer  # type: ignore[misc]
    return transport


def end_startup_spinner_logging() -> None:
    """Give the root logger back the level the worker was started with (`-l`).

    Faust's worker started at WARN or above shows a startup spinner: it sets the root logger
    to DEBUG, feeds every record to the spinner, and never sets the level back. Every
    `log.debug` of Faust and aiokafka (one per message produced) then builds a LogRecord that
    the handlers drop: 5% of a loaded worker's CPU in a py-spy profile.
    """
    import logging

    root = logging.getLogger()
    levels = [h.level for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
    if root.level == logging.DEBUG and levels and min(levels) > logging.DEBUG:
        root.setLevel(min(levels))
