"""Remove what one test or benchmark run created on the local Kafka and Elasticsearch.

Each run names its topics, indices and Faust app id with a tag of its own; left behind, they
add up (hundreds of topics and millions of documents after a day of benchmark runs), and the
brokers' background work then shows up in later measurements.
"""

from __future__ import annotations

import asyncio

from elasticsearch import Elasticsearch, NotFoundError

from devstack.config import DevstackConfig


def delete_namespace(cfg: DevstackConfig, tag: str) -> None:
    """Drop the indices, index templates and topics whose names hold `tag` (Faust's internal
    topics included: their names carry the app id, which carries the tag). Never raises:
    a cleanup must not fail the test or the benchmark run it follows."""
    es = Elasticsearch(cfg.elasticsearch_url, request_timeout=30)
    try:
        # Deleting by wildcard is refused by default (action.destructive_requires_name).
        names = list(
            es.indices.get(index=f"*{tag}*", allow_no_indices=True, expand_wildcards="all")
        )
        if names:
            es.indices.delete(index=",".join(names))
        try:
            templates = es.indices.get_index_template(name=f"*{tag}*")["index_templates"]
        except NotFoundError:  # none created
            templates = []
        for template in templates:
            es.indices.delete_index_template(name=template["name"])
    except Exception as exc:
        print(f"could not delete the indices of {tag}: {exc}")
    finally:
        es.close()

    async def drop_topics() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=cfg.kafka_bootstrap)
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if tag in t]
            if topics:
                await admin.delete_topics(topics)
        finally:
            await admin.close()

    try:
        asyncio.run(drop_topics())
    except Exception as exc:
        print(f"could not delete the topics of {tag}: {exc}")
