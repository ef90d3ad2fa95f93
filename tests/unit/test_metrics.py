"""GET /metrics: the Prometheus text format, read from the worker's own bookkeeping."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from streamapp.factory import create_app
from streamapp.metrics import MetricsView
from streamapp.pipeline import Stats
from streamapp.settings import load_settings


async def test_metrics_are_prometheus_text_with_the_pipeline_figures(tmp_path: Path) -> None:
    app = create_app(load_settings(table_store="memory://", data_dir=tmp_path / "data"))
    stats = Stats(received=12, indexed=10, dead_lettered=2, repeats=1, retries=3)
    stats.by_reason["invalid_json"] = 2
    app.parts.runtime.pipelines["tweets"] = SimpleNamespace(stats=stats)  # type: ignore[assignment]
    app.parts.metrics.batch_seconds.labels("tweets").observe(0.3)
    app.parts.sink.retries = 4

    response = await MetricsView(app, app.web).get(SimpleNamespace())  # type: ignore[arg-type]
    assert response.content_type == "text/plain"  # version parameter aside
    text = response.body.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    topic = (("topic", "tweets"),)
    assert samples[("streamapp_messages_received_total", topic)] == 12
    assert samples[("streamapp_messages_indexed_total", topic)] == 10
    assert samples[("streamapp_messages_dead_lettered_total", topic)] == 2
    assert samples[("streamapp_batch_retries_total", topic)] == 3
    key = ("streamapp_dead_letters_total", (("reason", "invalid_json"), ("topic", "tweets")))
    assert samples[key] == 2
    assert samples[("streamapp_elasticsearch_retries_total", ())] == 4
    assert samples[("streamapp_batch_seconds_count", topic)] == 1
    assert ("streamapp_table_keys", (("table", "hate-tumbling"),)) in samples
