"""tables.confirm: a batch's changelog writes are published in order, awaited for a bounded
time, and never lost or re-sent while a first send may still land."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.events import Event
from faust.exceptions import PartitionsMismatch
from faust.types.tuples import Message

from streamapp.factory import StreamApp, create_app
from streamapp.faust_compat import current_event
from streamapp.settings import load_settings
from streamapp.tables import (
    ChangelogNotConfirmed,
    ChangelogWrite,
    CountTable,
    Tables,
    confirm,
)


class FakeBroker:
    """Stands in for `Topic.publish_message`: records the order and settles futures as told."""

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.refuse_next = 0  # the producer raises on send (e.g. a metadata timeout)
        self.hold = False  # leave the futures pending (broker slow)
        self.fail = False  # settle with an error (delivery failed)

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        if self.refuse_next:
            self.refuse_next -= 1
            raise RuntimeError("KafkaTimeoutError")
        self.published.append(fut.message.value)
        if self.fail:
            fut.set_exception(RuntimeError("NotLeaderForPartition"))
        elif not self.hold:
            fut.set_result(None)


@pytest.fixture
def table(tmp_path: Path) -> tuple[CountTable, FakeBroker, StreamApp]:
    app = create_app(load_settings(table_store="memory://", data_dir=tmp_path / "data"))
    table = app.parts.tables.hate["tumbling"].table
    broker = FakeBroker()
    table.changelog_topic.publish_message = broker.publish_message  # type: ignore[method-assign,assignment]
    return table, broker, app


def write(table: CountTable, app: StreamApp, n: int, key: str = "k") -> list[ChangelogWrite]:
    writes: list[ChangelogWrite] = []
    msg = Message("tweets", 0, n, 0.0, 0, None, b"k", b"v", None)
    with table.recording(writes), current_event(Event(app, b"k", b"v", {}, msg)):
        table[(key, (0.0, 60.0))] = {"n": n, "o": n}
    return writes


async def test_confirmed_writes_leave_the_list(table: Any) -> None:
    t, broker, app = table
    writes = write(t, app, 1, "a") + write(t, app, 1, "b")
    await confirm(writes, wait_seconds=1)
    assert writes == [] and len(broker.published) == 2


async def test_a_refused_send_keeps_the_order_and_is_published_at_the_retry(table: Any) -> None:
    t, broker, app = table
    writes = write(t, app, 1, "a") + write(t, app, 2, "b") + write(t, app, 3, "c")
    broker.refuse_next = 1
    with pytest.raises(ChangelogNotConfirmed, match="KafkaTimeoutError"):
        await confirm(writes, wait_seconds=1)
    assert broker.published == [] and len(writes) == 3, "nothing after the refused one"
    await confirm(writes, wait_seconds=1)
    assert len(broker.published) == 3 and writes == []


async def test_a_failed_delivery_is_re_armed_and_sent_again(table: Any) -> None:
    t, broker, app = table
    writes = write(t, app, 1)
    broker.fail = True
    with pytest.raises(ChangelogNotConfirmed, match="NotLeaderForPartition"):
        await confirm(writes, wait_seconds=1)
    broker.fail = False
    await confirm(writes, wait_seconds=1)
    assert len(broker.published) == 2 and writes == []


async def test_a_pending_write_is_awaited_again_never_sent_twice(table: Any) -> None:
    t, broker, app = table
    writes = write(t, app, 1)
    broker.hold = True
    with pytest.raises(ChangelogNotConfirmed, match="within"):
        await confirm(writes, wait_seconds=0.05)
    with pytest.raises(ChangelogNotConfirmed):
        await confirm(writes, wait_seconds=0.05)
    assert len(broker.published) == 1, "not re-sent while the first send may land"
    writes[0].pending.set_result(None)  # type: ignore[arg-type] # the broker catches up
    await confirm(writes, wait_seconds=0.05)
    assert writes == []


async def test_of_several_writes_to_a_key_only_the_newest_is_kept(table: Any) -> None:
    t, broker, app = table
    writes = write(t, app, 1) + write(t, app, 2)
    await confirm(writes, wait_seconds=1)
    assert len(broker.published) == 1


async def test_the_wait_is_bounded(table: Any) -> None:
    t, broker, app = table
    broker.hold = True
    writes = write(t, app, 1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ChangelogNotConfirmed):
        await confirm(writes, wait_seconds=0.2)
    assert asyncio.get_running_loop().time() - started < 2


async def test_the_tables_renew_their_view_of_kafka_only_after_failures_it_can_explain() -> None:
    refreshes = 0

    async def refresh() -> None:
        nonlocal refreshes
        refreshes += 1

    tables = Tables(sentiment={}, hate={}, metadata_refresher=refresh)
    await tables.after_failure(PartitionsMismatch("changelog has 0 partitions"))
    await tables.after_failure(ChangelogNotConfirmed("Unrecognized partition"))
    assert refreshes == 2
    # Elasticsearch or the network failing: nothing a metadata fetch would change.
    await tables.after_failure(ConnectionError("elasticsearch down"))
    assert refreshes == 2
