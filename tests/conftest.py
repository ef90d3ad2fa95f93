"""Shared fixtures. Integration tests run against the real Kafka and Elasticsearch started by
`devstack` (started here if not already running, and stopped again if started here)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from devstack.config import DevstackConfig  # noqa: E402
from devstack.elasticsearch import ElasticsearchService  # noqa: E402
from devstack.kafka import KafkaService  # noqa: E402
from helpers import ARTIFACTS, Namespace, Worker, free_port, unique  # noqa: E402


@pytest.fixture(scope="session")
def devstack() -> Iterator[DevstackConfig]:
    cfg = DevstackConfig.from_env()
    started = []
    for svc in (KafkaService(cfg), ElasticsearchService(cfg)):
        if not svc.running():
            svc.start()
            started.append(svc)
    yield cfg
    if os.environ.get("DEVSTACK_KEEP") != "1":
        for svc in reversed(started):
            svc.stop()


@pytest.fixture
def namespace(devstack: DevstackConfig, tmp_path: Path) -> Namespace:
    """Topics, indices, consumer group and port of one test, so tests never share state."""
    tag = unique()
    return Namespace(
        tag=tag,
        cfg=devstack,
        env={
            "STREAMAPP_APP_ID": f"streamapp-test-{tag}",
            "STREAMAPP_KAFKA_BROKER": f"kafka://{devstack.kafka_bootstrap}",
            "STREAMAPP_ELASTICSEARCH_URL": devstack.elasticsearch_url,
            "STREAMAPP_TWEETS_TOPIC": f"tweets-{tag}",
            "STREAMAPP_NEWS_TOPIC": f"news-{tag}",
            "STREAMAPP_DEAD_LETTER_TOPIC": f"deadletter-{tag}",
            "STREAMAPP_TWEETS_INDEX": f"test-tweets-{tag}",
            "STREAMAPP_NEWS_INDEX": f"test-news-{tag}",
            "STREAMAPP_DATA_DIR": str(tmp_path / "worker-data"),
            "STREAMAPP_WEB_PORT": str(free_port()),
            "STREAMAPP_TOPIC_PARTITIONS": "4",
            # A SIGKILLed member holds its partitions until its session times out.
            "STREAMAPP_BROKER_SESSION_TIMEOUT": "10",
            "STREAMAPP_BROKER_HEARTBEAT_INTERVAL": "1",
            "STREAMAPP_COMMIT_INTERVAL": "1",
            "STREAMAPP_RETRY_MAX": "2",
        },
        workdir=tmp_path,
    )


@pytest.fixture
def worker_factory(namespace: Namespace, request: pytest.FixtureRequest) -> Iterator[type]:
    workers: list[Worker] = []

    def make(**extra_env: str) -> Worker:
        w = Worker(
            env={**namespace.env, **extra_env},
            log_path=ARTIFACTS / f"{request.node.name}-worker-{len(workers)}.log",
        )
        workers.append(w)
        return w

    yield make  # type: ignore[misc]
    for w in workers:
        w.stop()
