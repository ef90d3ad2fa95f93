"""aiokafka's producer dropping the metadata of topics it writes to, on the real broker
(`streamapp/aiokafka_compat.py`).

The situation of a fresh worker's first batch: records queued for a topic the producer knows
while it sends to one it does not know yet (created a moment ago)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from helpers import Namespace

from streamapp.aiokafka_compat import keep_known_topics


@pytest.fixture
async def admin(namespace: Namespace) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=namespace.cfg.kafka_bootstrap)
    await client.start()
    yield client
    await client.close()


async def queued_while_a_new_topic_is_added(
    ns: Namespace, admin: AIOKafkaAdminClient, patched: bool
) -> tuple[bool, bool]:
    """Whether a record queued for a known topic, just before the first send to a new topic,
    is acknowledged within 10 s; and whether the producer still knows the known topic."""
    known, new = f"tweets-{ns.tag}-{int(patched)}", f"news-{ns.tag}-{int(patched)}"
    await admin.create_topics([NewTopic(known, 1, 1)])
    # The linger keeps the first record queued while the new topic's metadata is fetched.
    producer = AIOKafkaProducer(bootstrap_servers=ns.cfg.kafka_bootstrap, linger_ms=500)
    if patched:
        keep_known_topics(producer.client)
    await producer.start()
    try:
        # Learnt from a fetch of every topic (none tracked yet), as a worker's producer
        # learns the topics that existed when it started.
        for _ in range(100):
            await producer.client.force_metadata_update()
            if producer.client.cluster.partitions_for_topic(known) is not None:
                break
            await asyncio.sleep(0.1)
        assert not producer.client._topics
        await producer.send_and_wait(known, b"first")
        await admin.create_topics([NewTopic(new, 1, 1)])
        queued = await producer.send(known, b"queued")
        await (await producer.send(new, b"other"))
        try:
            await asyncio.wait_for(asyncio.shield(queued), 10)
            acked = True
        except TimeoutError:
            acked = False
        still_known = producer.client.cluster.partitions_for_topic(known) is not None
        # A later send to the topic brings it back, and the queued record with it.
        await asyncio.wait_for(producer.send_and_wait(known, b"later"), 30)
        await asyncio.wait_for(queued, 30)
        return acked, still_known
    finally:
        await producer.stop()
        await admin.delete_topics([known, new])


async def test_a_record_queued_for_a_known_topic_is_sent_when_a_new_topic_is_added(
    namespace: Namespace, admin: AIOKafkaAdminClient
) -> None:
    assert await queued_while_a_new_topic_is_added(namespace, admin, patched=True) == (True, True)


async def test_plain_aiokafka_still_drops_the_known_topic(
    namespace: Namespace, admin: AIOKafkaAdminClient
) -> None:
    """The bug the patch works around. When an aiokafka upgrade fixes it, this fails: then
    `keep_known_topics` can go."""
    assert await queued_while_a_new_topic_is_added(namespace, admin, patched=False) == (
        False,
        False,
    )
