"""The pipeline with a remote backend selected: worker -> Expert.ai wire format (local server)
-> Elasticsearch, including language fallback, failure fallback and the `wait` mode."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from helpers import Namespace, es_count, produce, wait_for
from servers.expertai_server import ExpertAiServer

pytestmark = pytest.mark.integration


def tweet(i: int, text: str, lang: str | None) -> tuple[str, bytes]:
    doc = {
        "id": f"x{i}",
        "text": text,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "author_username": f"user{i}",
        "lang": lang,
        "source": "twitter",
    }
    return f"x{i}", json.dumps(doc).encode()


def expertai_env(server: ExpertAiServer, **extra: str) -> dict[str, str]:
    return {
        "STREAMAPP_CLASSIFIER": "expertai",
        "STREAMAPP_EXPERTAI_TOKEN_URL": server.token_url,
        "STREAMAPP_EXPERTAI_API_URL": server.api_url,
        "STREAMAPP_EXPERTAI_MAX_ATTEMPTS": "2",
        "STREAMAPP_EXPERTAI_RETRY_INITIAL": "0.05",
        "STREAMAPP_EXPERTAI_RETRY_MAX": "0.2",
        "EAI_USERNAME": server.username,
        "EAI_PASSWORD": server.password,
        **extra,
    }


def documents(ns: Namespace) -> dict[str, dict[str, Any]]:
    es = ns.es()
    try:
        es.indices.refresh(index=ns.indices)
        hits = es.search(index=ns.indices, size=1000, query={"match_all": {}})["hits"]["hits"]
        return {h["_id"]: h["_source"] for h in hits}
    finally:
        es.close()


async def until(check: Any, within: float, what: str) -> Any:
    # The Expert.ai stand-in runs on this event loop: never block it while waiting.
    return await asyncio.to_thread(wait_for, check, timeout=within, what=what)


async def test_expertai_backend_with_language_and_failure_fallback(
    namespace: Namespace, worker_factory
) -> None:
    ns = namespace
    async with ExpertAiServer() as server:
        worker = worker_factory(**expertai_env(server))
        await asyncio.to_thread(worker.start)
        messages = [
            tweet(0, "you racist idiot @bob", "en"),
            tweet(1, "what a great and happy day", "en"),
            tweet(2, "que dia maravilhoso com os amigos", "pt"),
            tweet(3, "this one breaks the service [[503]]", "en"),
            tweet(4, "Das ist ein wirklich schöner Tag in Berlin heute", None),
        ]
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, messages)
        await until(lambda: es_count(ns) == len(messages), 90, "5 documents")
        docs = documents(ns)

        insult = docs["x0"]
        assert insult["classifier"] == "expertai" and insult["fallback_reason"] is None
        assert insult["hate"] is True
        assert set(insult["hate_categories"]) == {
            "personal_insult",
            "discrimination_and_harassment",
            "racism",
        }
        assert insult["hate_targets"] == ["@bob"]
        assert (
            docs["x1"]["sentiment_label"] == "positive" and docs["x1"]["classifier"] == "expertai"
        )
        # Portuguese is not an Expert.ai language: the offline model labels it, and says why.
        assert docs["x2"]["classifier"] == "offline"
        assert docs["x2"]["fallback_reason"] == "expertai: language pt unsupported"
        # Failing past its retries: offline, marked, not lost.
        assert docs["x3"]["classifier"] == "offline"
        assert "503" in docs["x3"]["fallback_reason"]
        # No language from the source: detected, then sent to Expert.ai.
        assert docs["x4"]["lang"] == "de" and docs["x4"]["lang_detected"] is True
        assert docs["x4"]["classifier"] == "expertai"
        assert {r.path.split("/")[-1] for r in server.api_requests()} >= {"sentiment", "en", "de"}

        status, stats = worker.get("/stats/")
        assert status == 200
        assert stats["classifiers"]["tweets"]["backend"] == "expertai"
        assert stats["classifiers"]["tweets"]["counts"]["fallback"] == 2
        assert stats["backends"]["expertai"]["requests"] >= 6


async def test_wait_mode_holds_the_batch_until_the_backend_recovers(
    namespace: Namespace, worker_factory
) -> None:
    ns = namespace
    async with ExpertAiServer() as server:
        worker = worker_factory(**expertai_env(server, STREAMAPP_CLASSIFIER_FALLBACK="wait"))
        await asyncio.to_thread(worker.start)
        server.fail_next(503, times=100_000)
        messages = [tweet(i, f"a good day number {i}", "en") for i in range(20)]
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, messages)

        def degraded() -> bool:
            status, body = worker.get("/health/")
            return status == 503 and bool(body.get("failing_pipelines"))

        await until(degraded, 60, "health degraded while Expert.ai is down")
        assert es_count(ns) == 0  # nothing classified offline behind the user's back
        server.scripted.clear()
        await until(lambda: es_count(ns) == len(messages), 90, "all documents after recovery")
        docs = documents(ns)
        assert {d["classifier"] for d in docs.values()} == {"expertai"}
        assert all(d["fallback_reason"] is None for d in docs.values())


async def test_transformers_backend_with_tiny_local_models(
    namespace: Namespace, worker_factory, tmp_path
) -> None:
    pytest.importorskip("torch", reason="needs the transformers extra (make test installs it)")
    from tiny_models import build_tiny_models

    ns = namespace
    models = build_tiny_models(tmp_path / "models")
    worker = worker_factory(
        STREAMAPP_TWEETS_CLASSIFIER="transformers",
        STREAMAPP_TRANSFORMERS_SENTIMENT_MODEL=str(models["sentiment"].folder),
        STREAMAPP_TRANSFORMERS_HATE_MODEL=str(models["hate"].folder),
        HF_HUB_OFFLINE="1",
    ).start()
    messages = [tweet(i, t, "en") for i, t in enumerate(["i love this day", "kill them all"])]
    await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, messages)
    await until(lambda: es_count(ns) == len(messages), 90, "2 documents")
    docs = documents(ns)
    for i, (_, raw) in enumerate(messages):
        doc, text = docs[f"x{i}"], json.loads(raw)["text"]
        assert doc["classifier"] == "transformers" and doc["fallback_reason"] is None
        assert doc["classifier_version"].startswith("sentiment=sentiment@")
        # The worker's scores are the tiny models' own softmax outputs.
        neg, _, pos = models["sentiment"].probs(text)
        assert doc["sentiment_score"] == pytest.approx(pos - neg, abs=1e-3)
        assert doc["hate_score"] == pytest.approx(models["hate"].probs(text)[1], abs=1e-3)
    # News stayed on the default backend.
    assert worker.get("/stats/")[1]["classifiers"]["news"]["backend"] == "offline"
