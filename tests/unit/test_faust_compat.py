"""The private faust-streaming internals streamapp relies on, against the installed Faust.

Each test fails if an upgrade renames or changes what `streamapp.faust_compat` reads, which
no other unit test would notice (they use fakes of its public contract).
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.events import Event
from faust.types import TP
from faust.types.tuples import Message

from streamapp.factory import StreamApp, create_app
from streamapp.faust_compat import (
    ConsumerPositions,
    current_event,
    end_startup_spinner_logging,
    record_defaults,
    record_fields,
)
from streamapp.models import Tweet
from streamapp.offsets import ConsumerView
from streamapp.settings import load_settings
from streamapp.sources.output import KafkaOutput
from streamapp.tables import CountTable


@pytest.fixture
def app(tmp_path: Path) -> StreamApp:
    return create_app(load_settings(table_store="memory://", data_dir=tmp_path / "data"))


def message(partition: int, offset: int) -> Message:
    return Message("tweets", partition, offset, 0.0, 0, None, b"k", b"v", None)


def event(app: StreamApp, partition: int, offset: int) -> Event:
    msg = message(partition, offset)
    return Event(app, msg.key, msg.value, {}, msg)


def test_current_event_is_what_faust_streams_read(app: StreamApp) -> None:
    ev = event(app, 3, 7)
    assert faust.current_event() is None
    with current_event(ev):
        assert faust.current_event() is ev
    assert faust.current_event() is None


async def test_a_table_write_goes_to_the_partition_of_the_current_event(
    app: StreamApp,
) -> None:
    table = app.parts.tables.sentiment["tumbling"].table
    assert isinstance(table, CountTable)
    sent: list[tuple[int | None, Any, Any]] = []

    # Faust's own path: __setitem__ -> on_key_set -> send_changelog(partition of the current
    # event, key, value), the method CountTable overrides: inside a recording it only
    # records (tables.confirm publishes), outside Faust's buffer sends it (send_soon).
    def send_soon(**kw: Any) -> Any:
        sent.append((kw["partition"], kw["key"], kw["value"]))
        return SimpleNamespace(message=SimpleNamespace(partition=kw["partition"]))

    table.changelog_topic.send_soon = send_soon  # type: ignore[method-assign]
    writes: list[Any] = []
    with table.recording(writes), current_event(event(app, 2, 5)):
        table[("k", (0.0, 60.0))] = {"n": 1, "o": 5}
        assert table.get(("k", (0.0, 60.0))) == {"n": 1, "o": 5}
    assert sent == []
    assert [(w.partition, w.value) for w in writes] == [(2, {"n": 1, "o": 5})]
    assert writes[0].pending.message.partition == 2
    ev = event(app, 2, 6)
    with current_event(ev):
        table[("k", (0.0, 60.0))] = {"n": 2, "o": 6}
    assert len(writes) == 1 and [p for p, _, _ in sent] == [2]


def test_consumer_positions_read_and_change_the_real_consumer(app: StreamApp) -> None:
    positions: ConsumerView = ConsumerPositions(app)
    consumer = app.consumer
    tp = TP("tweets", 0)
    assert positions.committed(tp) is None
    consumer._committed_offset.update({tp: 41})  # type: ignore[attr-defined]
    assert positions.committed(tp) == 41
    msg = message(0, 50)
    consumer.track_message(msg)  # what Faust does before a stream sees the message
    positions.forget(msg)
    assert msg not in consumer._unacked_messages  # type: ignore[attr-defined]
    assert isinstance(positions.generation, int) and positions.rebalancing is False
    assert callable(consumer.seek_wait) and callable(consumer.earliest_offsets)


def test_record_fields_and_defaults() -> None:
    fields = record_fields(Tweet)
    assert list(fields)[:3] == ["id", "text", "created_at"]
    assert "source" in record_defaults(Tweet) and "id" not in record_defaults(Tweet)


def test_root_logger_level_restored_after_the_startup_spinner(app: StreamApp) -> None:
    import logging

    from faust.worker import Worker

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        root.handlers[:] = [logging.StreamHandler()]
        worker = Worker(app, loglevel="warn", quiet=False)
        # What Faust's worker does at -l warn: a spinner handler at DEBUG and the root
        # logger at DEBUG, for good.
        worker._setup_spinner_handler(root, logging.WARNING)
        assert root.level == logging.DEBUG and logging.getLogger("faust.topics").isEnabledFor(10)
        end_startup_spinner_logging()
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


async def test_the_worker_consumer_asks_for_the_configured_fetch_wait(tmp_path: Path) -> None:
    def fetch_wait_ms(app: faust.App) -> int:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)
        wait: int = consumer._fetch_max_wait_ms
        return wait

    settings = load_settings(
        table_store="memory://", data_dir=tmp_path / "data", kafka_fetch_max_wait=0.05
    )
    assert fetch_wait_ms(create_app(settings)) == 50
    # What Faust asks for on its own (and the worker did before): the reason for the setting.
    assert fetch_wait_ms(faust.App("plain", broker=settings.kafka_broker)) == 1500


async def test_the_worker_and_source_producers_keep_the_topics_they_know(tmp_path: Path) -> None:
    """Both producers track every topic they know once they add one (aiokafka_compat; the
    real-broker reproduction is tests/test_aiokafka_compat.py)."""

    def tracked_after_adding_one(client: Any) -> set[str]:
        client.cluster._partitions = {"known": {}}  # what a metadata fetch of all left
        client.add_topic("new")
        return set(client._topics)

    settings = load_settings(table_store="memory://", data_dir=tmp_path / "data")
    worker_producer = create_app(settings).producer._new_producer()  # type: ignore[attr-defined]
    assert tracked_after_adding_one(worker_producer.client) == {"known", "new"}
    assert tracked_after_adding_one(KafkaOutput(settings).producer.client) == {"known", "new"}
    # Plain Faust's producer narrows to the one topic: why the patch is there.
    plain = faust.App("plain", broker=settings.kafka_broker).producer._new_producer()  # type: ignore[attr-defined]
    assert tracked_after_adding_one(plain.client) == {"new"}


# -- handing a message to the streams (`_Consumer.wait_first`) ----------------------------


def consumer_in_this_loop(tmp_path: Path) -> Any:
    """The worker's consumer, made in the running loop (mode's tasks use the app's loop)."""
    app = create_app(load_settings(table_store="memory://", data_dir=tmp_path / "data"))
    return app.consumer


def test_faust_hands_each_message_over_with_wait_first_racing_the_flow() -> None:
    from faust.transport.consumer import Consumer

    source = " ".join(inspect.getsource(Consumer._drain_messages).split())
    assert "await self.wait_first( callback(message), self.suspend_flow.wait() )" in source


async def test_a_delivery_that_does_not_wait_runs_inline_and_the_loop_turns_once(
    tmp_path: Path,
) -> None:
    consumer = consumer_in_this_loop(tmp_path)
    turns: list[int] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(turns.append, 1)
    tasks_before = len(asyncio.all_tasks())
    tasks_during: list[int] = []

    async def deliver() -> str:
        tasks_during.append(len(asyncio.all_tasks()))
        return "delivered"

    result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
    assert result.results == ["delivered"] and not result.stopped
    assert tasks_during == [tasks_before], "the delivery ran in the caller's task, none made"
    # One turn per message, as mode's tasks gave: rebalance callbacks and the consumer
    # thread's hand-offs get their turn between two messages of a long fetch.
    assert turns == [1]


async def test_a_delivery_that_waits_completes_with_what_it_waited_for(tmp_path: Path) -> None:
    consumer = consumer_in_this_loop(tmp_path)
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def deliver() -> int:
        value = await gate
        await asyncio.sleep(0)  # waits again, after the first wait
        return value * 2

    handing = asyncio.ensure_future(consumer.wait_first(deliver(), consumer.suspend_flow.wait()))
    await asyncio.sleep(0.05)
    assert not handing.done()
    gate.set_result(21)
    result = await asyncio.wait_for(handing, 5)
    assert result.results == [42]


async def test_a_waiting_delivery_is_abandoned_when_the_flow_is_suspended(tmp_path: Path) -> None:
    consumer = consumer_in_this_loop(tmp_path)
    cancelled: list[bool] = []

    async def deliver() -> None:
        try:
            await asyncio.sleep(60)  # a full stream buffer, say
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    handing = asyncio.ensure_future(consumer.wait_first(deliver(), consumer.suspend_flow.wait()))
    await asyncio.sleep(0.05)
    consumer.suspend_flow.set()  # a rebalance
    result = await asyncio.wait_for(handing, 5)
    assert result.results == [True], "the flow won"
    await asyncio.sleep(0.05)
    assert cancelled == [True], "the delivery was cancelled, as Faust's own code does"


async def test_a_delivery_while_the_flow_is_suspended_is_raced_as_before(tmp_path: Path) -> None:
    consumer = consumer_in_this_loop(tmp_path)
    consumer.suspend_flow.set()

    async def deliver() -> str:
        return "delivered"

    result = await asyncio.wait_for(consumer.wait_first(deliver(), consumer.suspend_flow.wait()), 5)
    assert True in result.results, "mode's race: the suspended flow is among the winners"


async def test_errors_of_a_delivery_propagate_whether_or_not_it_waited(tmp_path: Path) -> None:
    consumer = consumer_in_this_loop(tmp_path)

    async def fails_at_once() -> None:
        raise ValueError("at once")

    async def fails_later() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("later")

    with pytest.raises(ValueError, match="at once"):
        await consumer.wait_first(fails_at_once(), consumer.suspend_flow.wait())
    with pytest.raises(ValueError, match="later"):
        await consumer.wait_first(fails_later(), consumer.suspend_flow.wait())


async def test_other_calls_are_modes(tmp_path: Path) -> None:
    consumer = consumer_in_this_loop(tmp_path)
    turns: list[bool] = []
    asyncio.get_running_loop().call_soon(turns.append, True)

    async def work() -> str:
        return "done"

    result = await consumer.wait_first(work(), timeout=1.0)
    assert result.results == ["done"]
    assert turns == [True], "mode's tasks: the loop turned"


def test_the_metadata_refresh_reaches_what_it_calls(tmp_path: Path) -> None:
    """`refresh_kafka_metadata` calls into the consumer thread's aiokafka consumer and the
    producer's client (the behaviour is tests/test_pipeline_integration.py's repaired
    changelog, on the real broker)."""
    import aiokafka

    app = create_app(load_settings(table_store="memory://", data_dir=tmp_path / "data"))
    thread = app.consumer._thread  # type: ignore[attr-defined]
    assert callable(thread._ensure_consumer) and callable(thread.call_thread)
    assert callable(app.producer._ensure_producer)  # type: ignore[attr-defined]
    assert callable(aiokafka.AIOKafkaClient.force_metadata_update)
    assert callable(app.consumer.refresh_metadata)  # type: ignore[attr-defined]
    assert callable(app.producer.refresh_metadata)  # type: ignore[attr-defined]
