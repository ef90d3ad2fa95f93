"""`GET /metrics`: the worker's figures in the Prometheus text format (prometheus-client).

Counters and gauges are read from the pipeline's own bookkeeping at scrape time (one source of
truth with `/stats/`), so the hot path only records the two latency histograms. Every worker
exposes its own figures, as Prometheus expects: scrape each worker, sum in the queries. The
registry belongs to the app (not the library's global one), so one process can hold several.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from faust.types import AppT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from streamapp.factory import WorkerParts

#: Batch latencies span from milliseconds (idle) to minutes (a dependency down).
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The app's registry and the histograms the pipeline records into."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batch_seconds = Histogram(
            "streamapp_batch_seconds",
            "Time to process one batch: decode, classify, index, dead letters, tables.",
            ["topic"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.classify_seconds = Histogram(
            "streamapp_classify_seconds",
            "Time the classifier took for one batch.",
            ["topic"],
            buckets=BUCKETS,
            registry=self.registry,
        )

    def watch(self, parts: WorkerParts) -> None:
        self.registry.register(_StateCollector(parts))


class _StateCollector(Collector):
    """Counters and gauges read from the worker's state at each scrape."""

    def __init__(self, parts: WorkerParts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        parts = self.parts
        topic_of = {"tweets": parts.settings.tweets_topic, "news": parts.settings.news_topic}
        per_topic = {
            "received": "Messages taken from the input topic.",
            "indexed": "Messages written to Elasticsearch.",
            "dead_lettered": "Messages sent to the dead-letter topic.",
            "repeats": "Messages indexed before from another Kafka record (not counted again).",
            "retries": "Batch attempts that failed and were retried.",
        }
        for name, doc in per_topic.items():
            family = CounterMetricFamily(f"streamapp_messages_{name}", doc, labels=["topic"])
            if name == "retries":
                family = CounterMetricFamily("streamapp_batch_retries", doc, labels=["topic"])
            for kind, pipeline in parts.runtime.pipelines.items():
                family.add_metric([topic_of[kind]], getattr(pipeline.stats, name))
            yield family
        reasons = CounterMetricFamily(
            "streamapp_dead_letters",
            "Dead letters by reason.",
            labels=["topic", "reason"],
        )
        for kind, pipeline in parts.runtime.pipelines.items():
            for reason, n in pipeline.stats.by_reason.items():
                reasons.add_metric([topic_of[kind], reason], n)
        yield reasons
        es = CounterMetricFamily(
            "streamapp_elasticsearch_retries",
            "Elasticsearch requests retried (outages, 429, 5xx).",
        )
        es.add_metric([], parts.sink.retries)
        yield es
        lag = GaugeMetricFamily(
            "streamapp_consumer_lag",
            "Messages after the next one to process, per input partition of this worker.",
            labels=["topic", "partition"],
        )
        for tp, n in sorted(parts.lag(topic_of.values()).items()):
            lag.add_metric([tp.topic, str(tp.partition)], n)
        yield lag
        sizes = GaugeMetricFamily(
            "streamapp_table_keys",
            "Keys (source x input partition x window) in this worker's table partitions.",
            labels=["table"],
        )
        for counter in parts.tables.all:
            sizes.add_metric([counter.name], sum(1 for _ in counter.items()))
        yield sizes


class MetricsView(View):
    async def get(self, request: Request) -> Response:
        parts: WorkerParts = self.app.parts  # type: ignore[attr-defined]
        body = generate_latest(parts.metrics.registry)
        # aiohttp wants the charset apart from the content type.
        return self.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def register_metrics(app: AppT) -> None:
    app.page("/metrics")(MetricsView)
