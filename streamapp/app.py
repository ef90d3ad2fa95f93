"""The Faust application, configured from `settings.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust

from streamapp.settings import Settings, get_settings
from streamapp.topics import ensure_topics

settings: Settings = get_settings()
# RocksDB creates the table stores but not missing parents of the data directory.
settings.data_dir.mkdir(parents=True, exist_ok=True)


class StreamApp(faust.App):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def register_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` when the worker stops (HTTP sessions, classifier threads)."""
        self._closers.append(closer)

    async def on_stop(self) -> None:
        await super().on_stop()
        for closer in self._closers:
            try:
                await closer()
            except Exception:
                self.log.exception("error while closing %r", closer)

    async def on_start(self) -> None:
        # Input topics are not Faust-internal, so Faust never creates them; a producer that
        # comes first would get the broker's default partition count, and tables need the
        # same count as their source topics. Create them before the consumer subscribes.
        await ensure_topics(settings)
        await super().on_start()


app = StreamApp(
    settings.app_id,
    broker=settings.kafka_broker,
    store=settings.table_store,
    datadir=str(settings.data_dir),
    version=1,
    autodiscover=False,
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    broker_commit_interval=settings.commit_interval,
    broker_session_timeout=settings.broker_session_timeout,
    broker_heartbeat_interval=settings.broker_heartbeat_interval,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    producer_linger_ms=5,
    # Stale windows are dropped by Faust's cleanup timer; a minute is plenty.
    table_cleanup_interval=60.0,
    web_enabled=True,
    web_bind=settings.web_host,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_cors_options=None,
)
