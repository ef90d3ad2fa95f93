"""Topic names, their creation, and the typed topic objects producers use."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faust.types import AppT, TopicT

from streamapp.errors import ServiceUnreachable
from streamapp.settings import Settings

log = logging.getLogger(__name__)


def input_topics(settings: Settings) -> list[str]:
    return [settings.tweets_topic, settings.news_topic]


async def ensure_topics(settings: Settings) -> None:
    """Create the input and dead-letter topics if missing; refuse to run on input topics
    whose partition count differs from the tables' (Faust would fail later, less clearly)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_urls)
    try:
        await admin.start()
    except KafkaError as exc:
        raise ServiceUnreachable(
            f"cannot reach Kafka at {settings.broker_urls} (STREAMAPP_KAFKA_BROKER): "
            f"{type(exc).__name__}"
        ) from None
    try:
        wanted = {
            settings.tweets_topic: settings.topic_partitions,
            settings.news_topic: settings.topic_partitions,
            settings.dead_letter_topic: 1,
        }
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=settings.topic_replication)
            for name, n in wanted.items()
            if name not in existing
        ]
        if missing:
            resp = await admin.create_topics(missing)
            for error in getattr(resp, "topic_errors", []):
                name, code = error[0], error[1]
                if code not in (0, TopicAlreadyExistsError.errno):  # lost a race: fine
                    raise SystemExit(f"could not create Kafka topic {name!r}: error {error[1:]}")
            log.info("created topics %s", ", ".join(t.name for t in missing))
        described = await admin.describe_topics(input_topics(settings))
        for topic in described:
            count = len(topic.get("partitions", []))
            if count and count != settings.topic_partitions:
                raise SystemExit(
                    f"topic {topic['topic']!r} has {count} partitions but "
                    f"STREAMAPP_TOPIC_PARTITIONS={settings.topic_partitions}; "
                    "set it to match (the tables are partitioned like their source topics)"
                )
    finally:
        await admin.close()


@dataclass(frozen=True)
class Topics:
    """Agents read raw bytes (see decoding.py for why); producers use the typed topics."""

    tweets_raw: TopicT
    news_raw: TopicT
    tweets: TopicT
    news: TopicT
    dead_letter: TopicT


def declare_topics(app: AppT, settings: Settings) -> Topics:
    from streamapp.models import DeadLetter, NewsArticle, Tweet

    def raw(name: str) -> TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )

    return Topics(
        tweets_raw=raw(settings.tweets_topic),
        news_raw=raw(settings.news_topic),
        tweets=app.topic(
            settings.tweets_topic,
            key_type=str,
            value_type=Tweet,
            key_serializer="raw",
            partitions=settings.topic_partitions,
        ),
        news=app.topic(
            settings.news_topic,
            key_type=str,
            value_type=NewsArticle,
            key_serializer="raw",
            partitions=settings.topic_partitions,
        ),
        dead_letter=app.topic(
            settings.dead_letter_topic,
            key_type=bytes,
            value_type=DeadLetter,
            key_serializer="raw",
            partitions=1,
        ),
    )
