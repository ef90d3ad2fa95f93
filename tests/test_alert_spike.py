"""A hate spike driven through the real pipeline raises one alert: in the alerts index, on
the alerts topic, and POSTed to a local webhook that fails the first try."""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import Any

import pytest
from aiohttp import web
from helpers import Namespace, consume_all, free_port, produce, wait_for
from playwright.async_api import async_playwright
from test_dashboard_browser import chromium_path

from streamapp.classifiers.offline import OfflineClassifier

WINDOW = 2.0


def sample_split() -> tuple[list[str], list[str]]:
    """Sample tweets the offline model calls hateful, and calm ones (neither hateful nor
    negative)."""
    path = resources.files("streamapp") / "data" / "sample_tweets.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    clf = OfflineClassifier()
    analyses = clf.classify_sync(texts)
    hateful = [t for t, a in zip(texts, analyses, strict=True) if a.hate]
    calm = [
        t
        for t, a in zip(texts, analyses, strict=True)
        if not a.hate and a.sentiment_label != "negative"
    ]
    return hateful, calm


def tweets(texts: list[str], n: int, tag: str) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        doc = {
            "id": f"{tag}-{i}",
            "text": texts[i % len(texts)],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lang": "en",
            "source": "twitter",
        }
        out.append((doc["id"], json.dumps(doc).encode()))
    return out


async def at_window_start() -> None:
    """Sleep into the start of the next tumbling window (Faust aligns them to the epoch)."""
    await asyncio.sleep(WINDOW - time.time() % WINDOW + 0.1)


@pytest.mark.integration
async def test_a_hate_spike_raises_one_alert_everywhere(
    namespace: Namespace, worker_factory: Any
) -> None:
    ns = namespace
    received: list[dict[str, Any]] = []
    attempts = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return web.Response(status=503)  # the first try fails: it must be retried
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tag = ns.tag
    worker = worker_factory(
        STREAMAPP_WINDOW_SIZE=str(WINDOW),
        STREAMAPP_ALERT_INTERVAL="0.5",
        STREAMAPP_ALERT_MIN_VOLUME="10",
        STREAMAPP_ALERT_BASELINE_WINDOWS="5",
        STREAMAPP_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook",
        STREAMAPP_ALERTS_TOPIC=f"alerts-{tag}",
        STREAMAPP_ALERTS_INDEX=f"test-alerts-{tag}",
        STREAMAPP_BATCH_TIMEOUT="0.2",
    ).start()
    try:
        hateful, calm = sample_split()
        assert hateful and calm
        # Three calm windows, then one where most messages are hateful.
        for w in range(3):
            await at_window_start()
            await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, tweets(calm, 12, f"c{w}"))
        await at_window_start()
        spike = tweets(hateful, 15, "h") + tweets(calm, 5, "c3")
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, spike)

        def hate_alerts() -> list[dict[str, Any]]:
            return [a for a in received if a["kind"] == "hate"]

        await asyncio.to_thread(wait_for, hate_alerts, timeout=60, what="the webhook's alert")
        (alert,) = hate_alerts()
        assert alert["source"] == "twitter" and alert["volume"] == 20 and alert["count"] == 15
        assert alert["baseline_rate"] < 0.1 and alert["baseline_volume"] == 36
        assert attempts >= 2
        await asyncio.sleep(3)  # several more checks: still published once
        assert len(hate_alerts()) == 1
        es = ns.es()
        try:
            es.indices.refresh(index=f"test-alerts-{tag}")
            hits = es.search(index=f"test-alerts-{tag}", query={"term": {"kind": "hate"}})
            assert [h["_id"] for h in hits["hits"]["hits"]] == [alert["id"]]
        finally:
            es.close()
        on_topic = await consume_all(ns.cfg.kafka_bootstrap, f"alerts-{tag}", len(received))
        assert sorted(json.loads(m.value)["id"] for m in on_topic) == sorted(
            a["id"] for a in received
        )
        status, body = worker.get("/alerts/?limit=5")
        assert status == 200 and alert["id"] in [a["id"] for a in body["items"]]
        # And on the dashboard.
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium_path())
            try:
                page = await browser.new_page()
                await page.goto(worker.web + "/dashboard/")
                item = page.locator(f'#alerts-list li[data-id="{alert["id"]}"]')
                await item.wait_for(timeout=20_000)
                text = await item.inner_text()
                assert "hate on twitter: 75% of 20 messages (baseline 0%)" in text, text
                assert await page.is_hidden("#alerts-empty")
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
