"""One-shot set-up of what the worker and the sources need before they start.

    python -m streamapp.bootstrap [--timeout SECONDS]

Creates the Kafka input and dead-letter topics (`topics.ensure_topics`) and the Elasticsearch
index templates, concrete indices and write aliases (`ElasticsearchSink.setup`), waiting for
each service up to `--timeout` seconds, then prints what exists. Safe to run again: what
exists is kept. Exits non-zero with one line naming the service and the reason on failure.

With `KIBANA_PASSWORD` set (Elasticsearch security on, see docker-compose.yml) it also sets
the password of the built-in `kibana_system` user, which Kibana logs in as: Kibana cannot become
available before that, so this step does not wait for Kibana (`python -m streamapp.kibana import`
does).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from elastic_transport import TransportError
from elasticsearch import exceptions as es_exc

from streamapp.errors import ServiceUnreachable
from streamapp.settings import Settings, load_settings
from streamapp.sinks.elasticsearch import RETRYABLE_STATUSES, ElasticsearchSink
from streamapp.topics import ensure_topics

log = logging.getLogger("streamapp.bootstrap")

T = TypeVar("T")
KIBANA_SYSTEM_USER = "kibana_system"


class BootstrapError(Exception):
    """A service that could not be set up; the message says which and why."""


async def retry_until(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    wait_seconds: float,
    retry_on: tuple[type[BaseException], ...],
) -> T:
    """Run `attempt` until it succeeds or `wait_seconds` seconds have passed; only `retry_on`
    errors and timeouts (the service not being up yet) are retried, anything else fails at
    once. The error names `what` and the last reason seen."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.5
    last: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason = f"{type(last).__name__}: {last}" if last else "no answer"
            raise BootstrapError(
                f"{what}: not ready after {wait_seconds:.0f}s (last error: {reason})"
            )
        try:
            # A client can hang on a half-open connection; the deadline bounds every attempt.
            return await asyncio.wait_for(attempt(), timeout=remaining)
        except TimeoutError:
            if last is None:
                last = TimeoutError("no answer")
        except retry_on as exc:
            last = exc
            log.info("waiting for %s (%s: %s)", what, type(exc).__name__, exc)
        await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, 5.0)


async def kafka_topics(settings: Settings) -> dict[str, int]:
    """Partition count of each topic the app uses, as the broker reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_urls)
    await admin.start()
    try:
        names = [settings.tweets_topic, settings.news_topic, settings.dead_letter_topic]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: len(t.get("partitions", [])) for t in described if not t.get("error_code")}


KAFKA_WAIT_ERRORS = (KafkaError, OSError, ServiceUnreachable)


async def setup_kafka(settings: Settings, wait_seconds: float) -> dict[str, int]:
    where = f"Kafka at {settings.broker_urls}"
    await retry_until(where, lambda: ensure_topics(settings), wait_seconds, KAFKA_WAIT_ERRORS)
    return await retry_until(where, lambda: kafka_topics(settings), wait_seconds, KAFKA_WAIT_ERRORS)


class NotReady(Exception):
    """Elasticsearch answered, but with a status that means "not yet" (503 while starting)."""


async def es_health(sink: ElasticsearchSink) -> None:
    try:
        await sink.client.cluster.health()
    except es_exc.ApiError as exc:
        if exc.meta.status in RETRYABLE_STATUSES:
            raise NotReady(f"HTTP {exc.meta.status} {exc.error}") from None
        raise


ES_WAIT_ERRORS = (es_exc.ConnectionError, es_exc.ConnectionTimeout, NotReady)


async def setup_elasticsearch(settings: Settings, wait_seconds: float) -> dict[str, list[str]]:
    sink = ElasticsearchSink(settings)
    where = f"Elasticsearch at {settings.elasticsearch_url}"
    try:
        # The sink's own waiting retries forever (right for the worker); this one gives up.
        await retry_until(where, lambda: es_health(sink), wait_seconds, ES_WAIT_ERRORS)
        await retry_until(where, sink.setup, wait_seconds, ())
        aliases: dict[str, list[str]] = {}
        for alias in sink.indices:
            resp = await sink.client.indices.get_alias(name=alias)
            aliases[alias] = sorted(resp.body)
        return aliases
    except es_exc.ApiError as exc:
        hint = ""
        if exc.meta.status in (401, 403):
            hint = " (check STREAMAPP_ELASTICSEARCH_USERNAME/_PASSWORD or _API_KEY)"
        raise BootstrapError(f"{where}: HTTP {exc.meta.status} {exc.error}{hint}") from None
    finally:
        await sink.close()


async def set_kibana_system_password(
    settings: Settings, password: str, wait_seconds: float
) -> None:
    """Kibana 8 may not log in as `elastic`; it uses `kibana_system`, whose password only
    someone holding a superuser's credentials can set."""
    sink = ElasticsearchSink(settings)
    where = f"Elasticsearch at {settings.elasticsearch_url}"
    try:
        await retry_until(
            f"{where} (password of {KIBANA_SYSTEM_USER})",
            lambda: sink.client.security.change_password(
                username=KIBANA_SYSTEM_USER, password=password
            ),
            wait_seconds,
            ES_WAIT_ERRORS,
        )
    except es_exc.ApiError as exc:
        raise BootstrapError(
            f"{where}: could not set the password of {KIBANA_SYSTEM_USER}: HTTP "
            f"{exc.meta.status} {exc.error} (KIBANA_PASSWORD needs xpack.security.enabled=true "
            "and superuser credentials in STREAMAPP_ELASTICSEARCH_USERNAME/_PASSWORD)"
        ) from None
    finally:
        await sink.close()


async def run(args: argparse.Namespace, settings: Settings) -> None:
    topics = await setup_kafka(settings, args.timeout)
    for name, partitions in topics.items():
        unit = "partition" if partitions == 1 else "partitions"
        print(f"kafka {settings.broker_urls}: topic {name} ({partitions} {unit})")
    aliases = await setup_elasticsearch(settings, args.timeout)
    for alias, indices in aliases.items():
        print(f"elasticsearch {settings.elasticsearch_url}: alias {alias} -> {', '.join(indices)}")
    password = os.environ.get("KIBANA_PASSWORD", "")
    if password:
        await set_kibana_system_password(settings, password, args.timeout)
        print(f"elasticsearch: password of {KIBANA_SYSTEM_USER} set from KIBANA_PASSWORD")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamapp.bootstrap", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for each service"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    started = time.monotonic()
    try:
        asyncio.run(run(args, settings))
    except (BootstrapError, TransportError) as exc:
        print(f"bootstrap failed: {exc}", file=sys.stderr)
        return 1
    print(f"bootstrap done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
