"""`python -m streamapp.bootstrap` against the real Kafka and Elasticsearch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from helpers import Namespace, free_port

from devstack.config import PROJECT_ROOT

pytestmark = pytest.mark.integration


def bootstrap(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamapp.bootstrap", *args],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def partition_counts(bootstrap_servers: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}


async def test_creates_topics_and_aliases_and_is_idempotent(namespace: Namespace) -> None:
    ns = namespace
    env = {**ns.env, "STREAMAPP_TOPIC_PARTITIONS": "3"}
    first = bootstrap(env, "--timeout", "60")
    assert first.returncode == 0, first.stderr
    counts = await partition_counts(
        ns.cfg.kafka_bootstrap, [ns.tweets_topic, ns.news_topic, ns.dead_letter_topic]
    )
    assert counts == {ns.tweets_topic: 3, ns.news_topic: 3, ns.dead_letter_topic: 1}
    es = ns.es()
    try:
        for alias in (env["STREAMAPP_TWEETS_INDEX"], env["STREAMAPP_NEWS_INDEX"]):
            assert set(es.indices.get_alias(name=alias).body) == {f"{alias}-v1"}
            assert f"alias {alias} -> {alias}-v1" in first.stdout
            mapping = es.indices.get_mapping(index=alias).body[f"{alias}-v1"]["mappings"]
            assert mapping["dynamic"] == "strict"
    finally:
        es.close()
    assert f"topic {ns.tweets_topic} (3 partitions)" in first.stdout

    # A second run (a restarted `setup` container) keeps what exists and succeeds.
    second = bootstrap(env, "--timeout", "60")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[:-1] == first.stdout.splitlines()[:-1]

    # The topics exist with 3 partitions now: a different setting is refused, by name.
    mismatch = bootstrap({**env, "STREAMAPP_TOPIC_PARTITIONS": "4"}, "--timeout", "30")
    assert mismatch.returncode != 0
    assert "STREAMAPP_TOPIC_PARTITIONS=4" in mismatch.stderr


def test_unreachable_kafka_fails_with_a_clear_message(namespace: Namespace) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = bootstrap({**namespace.env, "STREAMAPP_KAFKA_BROKER": dead}, "--timeout", "2")
    assert result.returncode == 1
    assert f"bootstrap failed: Kafka at {dead}: not ready after 2s" in result.stderr
