"""The one place that builds a worker: `create_app(settings)`.

Topics, tables, the shared runtime (sink, classifiers, dead letters), agents, views and the
dashboard are created here from one `Settings` and registered on a fresh app, so one process
can hold several differently configured apps (tests do) and importing any module of the
package builds nothing. `faust -A streamapp worker` gets its app from the package attribute
`streamapp.app` (see `streamapp/__init__.py`), built from the environment on first use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP, TransportT

from streamapp.agents import register_agents
from streamapp.alerts import register_alerts
from streamapp.cluster import Cluster
from streamapp.dashboard import register_dashboard
from streamapp.errors import ServiceUnreachable, UnreachableExit
from streamapp.faust_compat import (
    ConsumerPositions,
    with_fetch_max_wait,
    with_known_topics_kept,
)
from streamapp.metrics import Metrics, register_metrics
from streamapp.offsets import OffsetSequencer
from streamapp.retention import register_retention
from streamapp.runtime import Runtime
from streamapp.settings import Settings
from streamapp.sinks.deadletter import DeadLetterQueue
from streamapp.sinks.elasticsearch import ElasticsearchSink
from streamapp.tables import Tables, declare_tables
from streamapp.topics import Topics, declare_topics, ensure_topics
from streamapp.views import register_not_found, register_views


@dataclass(frozen=True)
class WorkerParts:
    """What the agents and views of one app share."""

    settings: Settings
    topics: Topics
    tables: Tables
    runtime: Runtime
    sequencer: OffsetSequencer
    #: The runtime's sink, for the views that search Elasticsearch directly.
    sink: ElasticsearchSink
    #: The consumer's assignment and offsets, for /health/.
    positions: ConsumerPositions
    #: The other workers of this app id, for views that answer for all partitions.
    cluster: Cluster
    #: The registry /metrics exposes.
    metrics: Metrics

    def lag(self, topics: Iterable[str]) -> dict[TP, int]:
        """Messages after the next one to process, per assigned partition of `topics` whose
        end offset and position are known (not before the first fetch)."""
        wanted = set(topics)
        out: dict[TP, int] = {}
        for tp in self.positions.assignment():
            if tp.topic not in wanted:
                continue
            end = self.positions.highwater(tp)
            nxt = self.sequencer.next_offset(tp)
            if nxt is None:
                nxt = self.positions.committed(tp)
            if end is not None and nxt is not None:
                out[tp] = max(0, end - nxt)
        return out


class StreamApp(faust.App):
    parts: WorkerParts

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings.app_id, **kwargs)
        self.config = settings

    def _new_transport(self) -> TransportT:
        transport = with_fetch_max_wait(super()._new_transport(), self.config.kafka_fetch_max_wait)
        return with_known_topics_kept(transport)

    async def on_stop(self) -> None:
        # First: batches in progress let go, so that Faust's wait for unacked messages (in
        # `super().on_stop()`) does not wait out a dependency's outage.
        self.parts.runtime.abandon()
        # ... nor for messages it delivered that no batch took (a batch in progress holds
        # `take()`'s buffer closed): nothing will ack them now, and Faust would wait until its
        # shutdown timeout. Not waiting is safe: only acked offsets are committed, so they
        # come again after the restart. Only now: on a rebalance the wait keeps a revoked
        # partition's batch from writing its counts while the new owner starts on them.
        self.conf.stream_wait_empty = False
        await super().on_stop()
        await self.parts.cluster.close()

    async def on_start(self) -> None:
        # Input topics are not Faust-internal, so Faust never creates them; a producer that
        # comes first would get the broker's default partition count, and tables need the
        # same count as their source topics. Create them before the consumer subscribes.
        try:
            await ensure_topics(self.config)
        except ServiceUnreachable as exc:
            raise UnreachableExit(str(exc)) from None
        await super().on_start()


def create_app(settings: Settings) -> StreamApp:
    """A worker for `settings`: every topic, table, agent, view and service registered."""
    # RocksDB creates the table stores but not missing parents of the data directory.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = StreamApp(
        settings,
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
        # What other workers use to reach this one's views (Faust shares it in assignments).
        canonical_url=settings.advertised_url,
        web_cors_options=None,
    )
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    sink = ElasticsearchSink(settings)
    metrics = Metrics()
    runtime = Runtime(
        settings,
        sink=sink,
        dead_letters=DeadLetterQueue(topics.dead_letter, settings.dead_letter_max_bytes),
        tables=tables,
        metrics=metrics,
        loop=app.loop,
        beacon=app.beacon,
    )
    app.service(runtime)  # type: ignore[arg-type] # an instance is started as it is
    positions = ConsumerPositions(app)
    sequencer = OffsetSequencer(
        positions, topics=frozenset({settings.tweets_topic, settings.news_topic})
    )
    cluster = Cluster(app, timeout=settings.cluster_timeout)
    app.parts = WorkerParts(
        settings, topics, tables, runtime, sequencer, sink, positions, cluster, metrics
    )
    metrics.watch(app.parts)

    register_agents(
        app,
        settings,
        {"tweets": topics.tweets_raw, "news": topics.news_raw},
        runtime,
        sequencer,
    )
    register_views(app)
    register_alerts(app, app.parts)
    register_retention(app, app.parts)
    register_dashboard(app)
    register_metrics(app)
    register_not_found(app)
    return app
