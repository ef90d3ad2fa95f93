"""Test helpers: a worker subprocess, message generators, Kafka and Elasticsearch probes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from elasticsearch import Elasticsearch

from devstack.config import PROJECT_ROOT, DevstackConfig

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
ARTIFACTS.mkdir(exist_ok=True)


def unique() -> str:
    return uuid.uuid4().hex[:10]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class Namespace:
    tag: str
    cfg: DevstackConfig
    env: dict[str, str]
    workdir: Path

    @property
    def tweets_topic(self) -> str:
        return self.env["STREAMAPP_TWEETS_TOPIC"]

    @property
    def news_topic(self) -> str:
        return self.env["STREAMAPP_NEWS_TOPIC"]

    @property
    def dead_letter_topic(self) -> str:
        return self.env["STREAMAPP_DEAD_LETTER_TOPIC"]

    @property
    def indices(self) -> str:
        return f"{self.env['STREAMAPP_TWEETS_INDEX']},{self.env['STREAMAPP_NEWS_INDEX']}"

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.env['STREAMAPP_WEB_PORT']}"

    def es(self) -> Elasticsearch:
        return Elasticsearch(self.cfg.elasticsearch_url, request_timeout=10)


class Worker:
    """`faust -A streamapp worker` as a real subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.web = f"http://127.0.0.1:{env['STREAMAPP_WEB_PORT']}"

    def start(self, wait_healthy: bool = True) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "streamapp", "worker", "-l", "info"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        if wait_healthy:
            self.wait_healthy()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float = 120) -> None:
        def ok() -> bool:
            if not self.alive():
                raise AssertionError(f"worker exited; log:\n{self.log_tail()}")
            status, body = self.get("/health/")
            return status == 200 and body.get("status") == "ok"

        wait_for(ok, timeout=timeout, what="worker /health/ ok")

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.web + path, timeout=5) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)
        except (urllib.error.URLError, OSError, ValueError):
            return 0, {}

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def dump_tasks(self) -> None:
        """Ask the worker to log the stack of every asyncio task (mode's SIGUSR1 handler)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class ListOutput:
    """A `sources.base.RecordOutput` that keeps what it is given (for source tests that are
    about the service's wire format, not Kafka)."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.raw: list[tuple[str, str, dict[str, Any]]] = []
        self.flushes = 0

    async def send(self, record: Any) -> None:
        self.records.append(record)

    async def send_json(self, kind: str, key: str, obj: dict[str, Any]) -> None:
        self.raw.append((kind, key, obj))

    async def flush(self) -> None:
        self.flushes += 1


# -- messages --------------------------------------------------------------------------

_SAMPLE = PROJECT_ROOT / "streamapp" / "data" / "sample_tweets.jsonl"
_PHRASES = [
    "I love this, what a wonderful day",
    "this is the worst service I have ever had",
    "meeting at 5pm in the main hall",
    "absolutely furious about the delays again",
    "great game last night, proud of the team",
    "the report was published this morning",
]


def make_tweets(n: int, seed: int = 1, prefix: str = "t") -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    sample = [json.loads(line)["text"] for line in _SAMPLE.read_text().splitlines()]
    now = time.time()
    out = []
    for i in range(n):
        text = rng.choice(sample) if rng.random() < 0.6 else f"{rng.choice(_PHRASES)} #{i}"
        tweet = {
            "id": f"{prefix}{seed}-{i}",
            "text": text,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - rng.random() * 60)),
            "author_id": str(rng.randint(1, 200)),
            "author_username": f"user{rng.randint(1, 200)}",
            "lang": "en",
            "rule_tags": [rng.choice(["news", "sports", "politics"])],
            "source": rng.choice(["twitter", "bluesky"]),
        }
        out.append((f"{prefix}{seed}-{i}", json.dumps(tweet).encode()))
    return out


def make_articles(n: int, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """NewsAPI-shaped articles (nested source, camelCase, nullable fields)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        url = f"https://news.example.org/{seed}/{i}"
        article = {
            "source": {
                "id": rng.choice([None, "bbc-news", "reuters"]),
                "name": rng.choice(["BBC", "Reuters"]),
            },
            "author": rng.choice([None, "Staff"]),
            "title": f"{rng.choice(_PHRASES)} ({i})",
            "description": rng.choice([None, "A short description of the story."]),
            "url": url,
            "urlToImage": None,
            "publishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "content": rng.choice([None, "Full text of the story… [+1234 chars]"]),
        }
        out.append((url, article))
    return out


async def produce(
    bootstrap: str, topic: str, messages: list[tuple[str, bytes]], rate: float | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        futures = []
        for i, (key, value) in enumerate(messages, start=1):
            futures.append(await producer.send(topic, value, key=key.encode() if key else None))
            if rate:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, expected: int, within: float = 60) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + within
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
        # Give extra messages (there should be none) a moment to show up.
        batch = await consumer.getmany(timeout_ms=1500)
        for msgs in batch.values():
            records.extend(msgs)
    finally:
        await consumer.stop()
    return records


def es_count(ns: Namespace) -> int:
    es = ns.es()
    try:
        es.indices.refresh(index=ns.indices, ignore_unavailable=True)
        return int(es.count(index=ns.indices, ignore_unavailable=True)["count"])
    except Exception:
        return -1
    finally:
        es.close()


def es_breakdown(
    ns: Namespace, query: dict[str, Any] | None = None
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """What the documents (those matching `query`, default all) say: {source: {sentiment
    label: n}} and {source: {messages, hateful, <category>: n}}, from Elasticsearch
    aggregations."""
    es = ns.es()
    try:
        resp = es.search(
            index=ns.indices,
            size=0,
            query=query or {"match_all": {}},
            aggs={
                "by_source": {
                    "terms": {"field": "source", "size": 100},
                    "aggs": {
                        "sentiment": {"terms": {"field": "sentiment_label", "size": 10}},
                        "hateful": {"filter": {"term": {"hate": True}}},
                        "categories": {"terms": {"field": "hate_categories", "size": 50}},
                    },
                }
            },
        )
    finally:
        es.close()
    sentiment: dict[str, dict[str, int]] = {}
    hate: dict[str, dict[str, int]] = {}
    for bucket in resp["aggregations"]["by_source"]["buckets"]:
        src = bucket["key"]
        sentiment[src] = {b["key"]: b["doc_count"] for b in bucket["sentiment"]["buckets"]}
        h = {"messages": bucket["doc_count"]}
        if bucket["hateful"]["doc_count"]:
            h["hateful"] = bucket["hateful"]["doc_count"]
        h.update({b["key"]: b["doc_count"] for b in bucket["categories"]["buckets"]})
        hate[src] = h
    return sentiment, hate


def view_totals(worker: Worker, view: str) -> dict[str, dict[str, int]]:
    status, body = worker.get(f"/{view}/?window=tumbling&limit=10000")
    assert status == 200, body
    return body["totals"]


def total(counts: dict[str, dict[str, int]], label: str | None = None) -> int:
    return sum(n for labels in counts.values() for lab, n in labels.items() if label in (None, lab))


#: One text the offline model calls positive, one it calls negative.
LABELLED_TEXTS = ["I love this, what a wonderful day", "the worst service ever, I hate it"]


def stored_document(i: int, processed_at: str, **fields: Any) -> dict[str, Any]:
    """A tweet document as an older model stored it (id `d<i>`, neutral, not hateful, its text
    positive for even `i` and negative for odd): what re-classification should change."""
    return {
        "id": f"d{i}",
        "source": "twitter",
        "text": LABELLED_TEXTS[i % 2],
        "lang": "en",
        "sentiment_label": "neutral",
        "sentiment_score": 0.0,
        "hate": False,
        "hate_score": 0.0,
        "hate_categories": [],
        "classifier": "offline",
        "classifier_version": "old-model",
        "processed_at": processed_at,
        **fields,
    }
