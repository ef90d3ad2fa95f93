"""Throughput of the pipeline on the local Kafka and Elasticsearch, printed, not asserted.

    python -m benchmarks.pipeline [--messages 20000] [--batch-size 500]

Starts Kafka and Elasticsearch if they are not running (and stops them again after), runs
`faust -A streamapp worker` on fresh topics and indices, produces N tweets as fast as
possible, and reports:

- classifier alone (the offline model, batched, in this process);
- end to end, with 1 and with 2 worker processes (one app id: Faust shares the partitions):
  first message produced -> N documents in Elasticsearch, and the tables' totals (gathered
  from every worker).

Compare figures from one run (the machines are shared and noisy): the ratio of end-to-end to
classifier-only throughput shows how much Kafka, Elasticsearch and the tables cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from importlib import resources
from pathlib import Path

from aiokafka import AIOKafkaProducer
from elasticsearch import Elasticsearch

from devstack.config import PROJECT_ROOT, DevstackConfig
from devstack.elasticsearch import ElasticsearchService
from devstack.kafka import KafkaService
from streamapp.classifiers import create_classifier


def sample_texts() -> list[str]:
    path = resources.files("streamapp") / "data" / "sample_tweets.jsonl"
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


def tweets(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    rng = random.Random(7)
    texts = sample_texts()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = []
    for i in range(n):
        doc = {
            "id": f"{tag}-{i}",
            "text": f"{rng.choice(texts)} #{i}",
            "created_at": stamp,
            "author_username": f"user{rng.randint(1, 500)}",
            "lang": "en",
            "source": rng.choice(["twitter", "bluesky"]),
        }
        out.append((doc["id"].encode(), json.dumps(doc).encode()))
    return out


async def classifier_rate(n: int, batch: int) -> float:
    clf = create_classifier("offline")
    await clf.start()
    texts = sample_texts()
    texts = (texts * (n // len(texts) + 1))[:n]
    started = time.perf_counter()
    for i in range(0, n, batch):
        await clf.classify(texts[i : i + batch])
    elapsed = time.perf_counter() - started
    await clf.close()
    return n / elapsed


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k) for k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except Exception:
        return {}


def end_to_end(cfg: DevstackConfig, n: int, batch_size: int, workers: int) -> dict[str, float]:
    """N tweets through `workers` worker processes (one app id) on fresh topics and indices:
    seconds from the first message produced to N searchable, and what the tables counted."""
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="streamapp-bench-"))
    ports = [free_port() for _ in range(workers)]
    env = {
        **os.environ,
        "STREAMAPP_APP_ID": f"streamapp-bench-{tag}",
        "STREAMAPP_KAFKA_BROKER": f"kafka://{cfg.kafka_bootstrap}",
        "STREAMAPP_ELASTICSEARCH_URL": cfg.elasticsearch_url,
        "STREAMAPP_TWEETS_TOPIC": f"bench-tweets-{tag}",
        "STREAMAPP_NEWS_TOPIC": f"bench-news-{tag}",
        "STREAMAPP_DEAD_LETTER_TOPIC": f"bench-deadletter-{tag}",
        "STREAMAPP_TWEETS_INDEX": f"bench-tweets-{tag}",
        "STREAMAPP_NEWS_INDEX": f"bench-news-{tag}",
        "STREAMAPP_BATCH_SIZE": str(batch_size),
    }
    logs = [open(workdir / f"worker-{i}.log", "wb") for i in range(workers)]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "streamapp", "worker", "-l", "warn"],
            env={
                **env,
                "STREAMAPP_DATA_DIR": str(workdir / f"data-{i}"),
                "STREAMAPP_WEB_PORT": str(port),
            },
            stdout=logs[i],
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        for i, port in enumerate(ports)
    ]
    es = Elasticsearch(cfg.elasticsearch_url, request_timeout=30)
    index = env["STREAMAPP_TWEETS_INDEX"]
    web = f"http://127.0.0.1:{ports[0]}"
    try:
        deadline = time.monotonic() + 180

        def settled() -> bool:
            # Every worker healthy and in the group, so the run is not a rebalance.
            for port in ports:
                body = get_json(f"http://127.0.0.1:{port}/health/")
                if body.get("status") != "ok" or len(body.get("workers", {})) != workers:
                    return False
            return True

        while not settled():
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise SystemExit(f"workers did not become healthy; logs in {workdir}")
            time.sleep(0.5)
        messages = tweets(n, tag)
        t0 = time.monotonic()
        asyncio.run(produce(cfg.kafka_bootstrap, env["STREAMAPP_TWEETS_TOPIC"], messages))
        produced = time.monotonic() - t0
        count = 0
        while count < n and time.monotonic() - t0 < 600:
            time.sleep(0.5)
            es.indices.refresh(index=index)
            count = int(es.count(index=index)["count"])
        elapsed = time.monotonic() - t0
        totals = get_json(f"{web}/sentiment/?window=tumbling").get("totals", {})
        counted = sum(v for labels in totals.values() for v in labels.values())
        return {"produced_s": produced, "elapsed_s": elapsed, "indexed": count, "counted": counted}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        for f in logs:
            f.close()
        es.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker processes to compare"
    )
    args = parser.parse_args(argv)
    n = args.messages

    cfg = DevstackConfig.from_env()
    started_here = []
    for svc in (KafkaService(cfg), ElasticsearchService(cfg)):
        if not svc.running():
            svc.start()
            started_here.append(svc)
    try:
        rate = asyncio.run(classifier_rate(min(n, 20_000), args.batch_size))
        print(f"classifier only (offline, batches of {args.batch_size}): {rate:,.0f} msg/s")
        ok = True
        first: float | None = None
        for workers in args.workers:
            r = end_to_end(cfg, n, args.batch_size, workers)
            per_s = r["indexed"] / r["elapsed_s"]
            first = first or per_s
            print(
                f"end to end, {workers} worker process(es): {r['indexed']:,} documents in "
                f"Elasticsearch after {r['elapsed_s']:.1f}s = {per_s:,.0f} msg/s "
                f"(x{per_s / first:.2f} of the first row; produced in {r['produced_s']:.1f}s); "
                f"tables counted {r['counted']:,.0f}"
            )
            ok = ok and r["indexed"] == n and r["counted"] == n
        return 0 if ok else 1
    finally:
        for svc in reversed(started_here):
            svc.stop()


if __name__ == "__main__":
    sys.exit(main())
