"""Shared fixtures. Integration tests run against the real Kafka and Elasticsearch started by
`devstack` (started here if not already running, and stopped again if started here)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import ARTIFACTS, Namespace, Worker, free_port, unique

from devstack.cleanup import delete_namespace
from devstack.config import DevstackConfig
from devstack.elasticsearch import ElasticsearchService
from devstack.kafka import KafkaService
from streamapp.eventloop import FAUST_LOOP_VARIABLES
from streamapp.settings import Settings, load_settings
from streamapp.sinks.elasticsearch import ElasticsearchSink
from streamapp.sources.output import KafkaOutput
from streamapp.topics import ensure_topics


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


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
def namespace(
    devstack: DevstackConfig, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Namespace]:
    """Topics, indices, consumer group and port of one test, so tests never share state.
    Deleted afterwards unless the test failed (they help explain why) or
    STREAMAPP_TEST_KEEP_DATA=1."""
    tag = unique()
    ns = Namespace(
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
    yield ns
    report = getattr(request.node, "report_call", None)
    if report is not None and report.passed and os.environ.get("STREAMAPP_TEST_KEEP_DATA") != "1":
        delete_namespace(devstack, tag)


@pytest.fixture
def app_settings(namespace: Namespace) -> Settings:
    """The app's settings as a worker of this test's namespace reads them."""
    return load_settings(
        **{k.removeprefix("STREAMAPP_").lower(): v for k, v in namespace.env.items()}
    )


@pytest.fixture
async def kafka_out(app_settings: Settings) -> AsyncIterator[KafkaOutput]:
    """A source's output into this test's topics (created first)."""
    await ensure_topics(app_settings)
    out = KafkaOutput(app_settings)
    await out.start()
    yield out
    await out.stop()


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
    report = getattr(request.node, "report_call", None)
    failed = report is None or report.failed
    for w in workers:
        if failed:
            w.dump_tasks()  # into its log under test-artifacts/, to see where it was stuck
        w.stop()


@pytest.fixture
async def es_sink(app_settings: Settings) -> AsyncIterator[ElasticsearchSink]:
    """The sink of this test's settings, its indices and aliases created; afterwards every
    index behind the aliases (`<alias>-v*`, re-classified copies included) and the index
    templates are deleted."""
    sink = ElasticsearchSink(app_settings)
    await sink.setup()
    try:
        yield sink
    finally:
        client = sink.client
        for alias in (app_settings.tweets_index, app_settings.news_index):
            names = list((await client.indices.get(index=f"{alias}-v*")).body)
            if names:
                await client.indices.delete(index=",".join(names), ignore_unavailable=True)
            await client.options(ignore_status=404).indices.delete_index_template(name=alias)
        await sink.close()


@pytest.fixture
def loop_choice_restored() -> Iterator[None]:
    """No loop named with Faust's switch during the test; afterwards the event loop policy
    and those variables are as before (`use_default_loop` sets both, process-wide)."""
    saved = {name: os.environ.pop(name, None) for name in FAUST_LOOP_VARIABLES}
    policy = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(policy)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
