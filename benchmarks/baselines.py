"""The two pipelines streamapp is measured against, on the same Kafka and Elasticsearch.

- seed-style: what the project started as: one message at a time, classify it, index one
  document, commit its offset;
- raw ceiling: aiokafka `getmany` -> JSON -> Elasticsearch bulk, no classification, no
  tables, no dead letters: what the broker, the index and one Python process allow at best.

Both consume a fresh topic while it is being produced and report the seconds from the first
message produced to all N documents searchable, like the streamapp rows of `pipeline.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk

from streamapp.classifiers.offline import OfflineClassifier

PARTITIONS = 4


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def _document(value: bytes, analysis: Any | None) -> dict[str, Any]:
    doc = json.loads(value)
    if analysis is not None:
        doc.update(
            sentiment_label=analysis.sentiment_label,
            sentiment_score=analysis.sentiment_score,
            hate=analysis.hate,
            hate_score=analysis.hate_score,
        )
    return doc


async def seed_style(
    consumer: AIOKafkaConsumer, es: AsyncElasticsearch, index: str, n: int
) -> None:
    clf = OfflineClassifier()
    try:
        for _ in range(n):
            msg = await consumer.getone()
            assert msg.value is not None
            (analysis,) = clf.classify_sync([json.loads(msg.value)["text"]])
            doc = _document(msg.value, analysis)
            await es.index(index=index, id=doc["id"], document=doc)
            await consumer.commit()
    finally:
        await clf.close()


async def raw_ceiling(
    consumer: AIOKafkaConsumer, es: AsyncElasticsearch, index: str, n: int
) -> None:
    done = 0
    while done < n:
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        actions = [
            {"_index": index, "_id": doc["id"], "_source": doc}
            for records in batches.values()
            for doc in (_document(r.value, None) for r in records if r.value is not None)
        ]
        if actions:
            await async_bulk(es, actions, chunk_size=500)
            await consumer.commit()
            done += len(actions)


BASELINES: dict[str, Callable[[AIOKafkaConsumer, AsyncElasticsearch, str, int], Awaitable[None]]]
BASELINES = {"seed-style": seed_style, "raw ceiling": raw_ceiling}


async def run_baseline(
    name: str,
    bootstrap: str,
    es_url: str,
    produce: Callable[[str], Coroutine[Any, Any, float]],
    n: int,
) -> dict[str, float]:
    """Run baseline `name` on a fresh topic and index while `produce(topic)` sends N
    messages; seconds from the first message produced to N searchable."""
    tag = uuid.uuid4().hex[:8]
    topic, index = f"bench-baseline-{tag}", f"bench-baseline-{tag}"
    await create_topic(bootstrap, topic)
    es = AsyncElasticsearch(es_url, request_timeout=60)
    await es.indices.create(index=index)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-baseline-{tag}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        # Assigned before the clock starts, as the streamapp workers are.
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka has no event for it
            await asyncio.sleep(0.1)
        started = time.monotonic()
        producing = asyncio.create_task(produce(topic))
        await BASELINES[name](consumer, es, index, n)
        produced_s = await producing
        # Searchable after the index's own refresh, as for the streamapp rows.
        count = 0
        while count < n and time.monotonic() - started < 900:
            count = int((await es.count(index=index))["count"])
            if count < n:
                await asyncio.sleep(0.2)
        return {"elapsed_s": time.monotonic() - started, "indexed": count, "produced_s": produced_s}
    finally:
        await consumer.stop()
        await es.indices.delete(index=index, ignore_unavailable=True)
        await es.close()
        await delete_topic(bootstrap, topic)
