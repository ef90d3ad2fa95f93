"""A work-around for aiokafka (0.14) losing the metadata of topics a producer writes to.

An aiokafka client starts by tracking no topic in particular, which means "fetch the
metadata of every topic". The first time its producer sends to a topic that this metadata
does not hold yet (one created a moment ago: a table's changelog at a fresh worker's first
batch, the news topic after the tweets one), `add_topic` makes that topic the only one
tracked. The next metadata update asks for it alone and *replaces* the cluster metadata
with the answer: every other topic the producer was writing to loses its partitions.
Records already queued for those topics then wait for a leader that no update will bring
back (updates ask only for the tracked topic), until a later send to the same topic happens
to add it again. A worker retrying a batch until its changelog writes are acknowledged
makes no such send: the fault suite saw it wait minutes (`ChangelogNotConfirmed`), and
`tests/test_aiokafka_compat.py` reproduces it against the real broker.

`keep_known_topics` makes the switch from "every topic" to a tracked set start from every
topic the client already knows, so no known topic is dropped.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaClient


def keep_known_topics(client: AIOKafkaClient) -> AIOKafkaClient:
    """Patch `client` (an aiokafka producer's `.client`) in place; returns it."""
    add_topic = client.add_topic

    def add_topic_keeping_known(topic: str) -> Any:
        tracked: set[str] = client._topics  # the set add_topic narrows
        if not tracked:
            tracked.update(client.cluster.topics())
        return add_topic(topic)

    client.add_topic = add_topic_keeping_known
    return client
