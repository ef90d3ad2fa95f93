"""The benchmark harness: throughput, latency and resources of the pipeline on the local
Kafka and Elasticsearch, beside two baselines, printed and written as JSON. Not asserted.

    python -m benchmarks.pipeline [--messages 100000] [--workers 1 2]
                                  [--latency-rate 1000] [--latency-seconds 60]
                                  [--sustained-rate 5000] [--sustained-seconds 20]

Starts Kafka and Elasticsearch if they are not running (and stops them again after). In one
run, on fresh topics and indices each time:

- classifier alone: the offline heads, batches of 500, in this process (one core);
- baselines (`baselines.py`): the seed-style pipeline (one message at a time) and the raw
  ceiling (getmany -> bulk, no classification);
- streamapp end to end with 1 and with 2 worker processes (`faust -A streamapp worker`, one
  app id): first message produced -> N documents searchable, what the tables counted, and
  CPU seconds per 1,000 messages and peak RSS of the workers, Kafka and Elasticsearch;
- latency at a steady rate (one worker): produce -> searchable percentiles. Searchable is
  when Elasticsearch's count (no forced refresh, polled every 50 ms) first includes the
  document; the k-th document to become searchable is matched with the k-th produced, which
  is exact for one partition and close for four (they are spread over them by key);
- the same at the throughput target held steady (5,000 a second for 20 s, two workers:
  "sustained"): whether the pipeline keeps up with it, not only drains a backlog at it.

The load generator shares the machine with what it measures: the tweets of the throughput
rows are made before the clock starts and sent as record batches, and the CPU it spent is
printed beside the others (`producer`).

Compare figures from one run only: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
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
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from elasticsearch import Elasticsearch

from benchmarks.baselines import run_baseline
from benchmarks.procstat import Usage
from devstack.cleanup import delete_namespace
from devstack.config import PROJECT_ROOT, DevstackConfig
from devstack.elasticsearch import ElasticsearchService
from devstack.kafka import KafkaService
from devstack.process import running_pid
from streamapp.classifiers import create_classifier

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"

BENCH_TERMS = "love,money,school,yankees,trash"


def sample_texts() -> list[str]:
    path = resources.files("streamapp") / "data" / "sample_tweets.jsonl"
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


class Tweets:
    """Tweets from the bundled sample, each with its own id and a number in the text."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.rng = random.Random(7)
        self.texts = sample_texts()
        self.n = 0

    def next(self, created_at: str) -> tuple[bytes, bytes]:
        i, self.n = self.n, self.n + 1
        doc = {
            "id": f"{self.tag}-{i}",
            "text": f"{self.rng.choice(self.texts)} #{i}",
            "created_at": created_at,
            "author_username": f"user{self.rng.randint(1, 500)}",
            "lang": "en",
            "source": self.rng.choice(["twitter", "bluesky"]),
        }
        return doc["id"].encode(), json.dumps(doc).encode()


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


#: A tweet ready to send: its key's murmur2 hash (Kafka's default partitioner: the partition
#: is this modulo the partition count), key and value.
Prepared = tuple[int, bytes, bytes]


def prepare(n: int, tag: str) -> list[Prepared]:
    """N tweets made and hashed before the clock starts: the load generator shares the two
    cores with what it measures, so the clock should see it only send."""
    tweets = Tweets(tag)
    stamp = now_iso()
    out = []
    for _ in range(n):
        key, value = tweets.next(stamp)
        out.append((murmur2(key) & 0x7FFFFFFF, key, value))
    return out


@dataclass(frozen=True)
class Produced:
    seconds: float
    cpu_s: float  # of the producing thread


async def send_batches(
    producer: AIOKafkaProducer, topic: str, tweets: Sequence[Prepared]
) -> list[asyncio.Future[Any]]:
    """Hand `tweets` to the producer as record batches, each to the partition Kafka's
    default partitioner gives its key, one partition's batch at a time in turn; the futures
    of the sends. (Sent with one `send()` each, tweets cost ~48 us apiece, a tenth of the
    machine at 5,000 a second.)"""
    partitions = sorted(await producer.partitions_for(topic))
    queues: dict[int, deque[tuple[bytes, bytes]]] = {p: deque() for p in partitions}
    for hashed, key, value in tweets:
        queues[partitions[hashed % len(partitions)]].append((key, value))
    futures = []
    while any(queues.values()):
        for partition, queue in queues.items():
            if not queue:
                continue
            batch = producer.create_batch()
            # `append` returns None once the batch is full (`batch_size` bytes).
            while queue and batch.append(key=queue[0][0], value=queue[0][1], timestamp=None):
                queue.popleft()
            if not batch.record_count():
                raise ValueError(f"a tweet of {len(queue[0][1])} bytes fills no batch")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def produce(bootstrap: str, topic: str, tweets: Sequence[Prepared]) -> Produced:
    """`tweets` as fast as the broker takes them: the seconds it took and the CPU seconds
    it cost."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        started, cpu = time.monotonic(), time.thread_time()
        await asyncio.gather(*await send_batches(producer, topic, tweets))
        return Produced(time.monotonic() - started, time.thread_time() - cpu)
    finally:
        await producer.stop()


async def produce_paced(
    bootstrap: str, topic: str, tweets: Sequence[Prepared], rate: float
) -> list[float]:
    """`tweets` at `rate` a second, in ticks of 10 ms, each tick's as record batches; the wall
    time each was handed to the producer, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent: list[float] = []
    futures = []
    try:
        started = time.time()
        while len(sent) < len(tweets):
            due = min(len(tweets), int((time.time() - started) * rate) + 1)
            tick = tweets[len(sent) : due]
            handed = time.time()
            futures += await send_batches(producer, topic, tick)
            sent += [handed] * len(tick)
            await asyncio.sleep(0.01)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def classifier_rate(n: int, batch: int) -> float:
    clf = create_classifier("offline")
    await clf.start()
    texts = sample_texts()
    texts = [f"{t} #{i}" for i, t in enumerate((texts * (n // len(texts) + 1))[:n])]
    started = time.perf_counter()
    for i in range(0, n, batch):
        await clf.classify(texts[i : i + batch])
    elapsed = time.perf_counter() - started
    await clf.close()
    return n / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except Exception:
        return {}


@dataclass
class Workers:
    """Worker processes of one app on fresh topics and indices, all healthy."""

    env: dict[str, str]
    ports: list[int]
    pids: list[int]

    @property
    def topic(self) -> str:
        return self.env["STREAMAPP_TWEETS_TOPIC"]

    @property
    def index(self) -> str:
        return self.env["STREAMAPP_TWEETS_INDEX"]

    def counted(self) -> int:
        """Messages the tables counted (gathered from every worker)."""
        web = f"http://127.0.0.1:{self.ports[0]}"
        totals = get_json(f"{web}/sentiment/?window=tumbling").get("totals", {})
        return int(sum(v for labels in totals.values() for v in labels.values()))


@contextmanager
def workers(cfg: DevstackConfig, count: int, batch_size: int | None) -> Iterator[Workers]:
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="streamapp-bench-"))
    ports = [free_port() for _ in range(count)]
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
        # Every feature on: words of the sample as tracked terms (~1 tweet in 4 has one).
        "STREAMAPP_TERMS": os.environ.get("STREAMAPP_TERMS", BENCH_TERMS),
        # The demo loop and sources are `make run`'s, not the worker's: nothing else runs.
    }
    if batch_size is not None:  # else the worker's default
        env["STREAMAPP_BATCH_SIZE"] = str(batch_size)
    logs = [open(workdir / f"worker-{i}.log", "wb") for i in range(count)]  # noqa: SIM115
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
    try:
        deadline = time.monotonic() + 180

        def settled() -> bool:
            # Every worker healthy and in the group, so the run is not a rebalance.
            for port in ports:
                body = get_json(f"http://127.0.0.1:{port}/health/")
                if body.get("status") != "ok" or len(body.get("workers", {})) != count:
                    return False
            return True

        while not settled():
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise SystemExit(f"workers did not become healthy; logs in {workdir}")
            time.sleep(0.5)
        yield Workers(env=env, ports=ports, pids=[p.pid for p in procs])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        for f in logs:
            f.close()
        # Left behind, a run's topics and indices add up and weigh on later runs.
        delete_namespace(cfg, tag)


def service_pids(cfg: DevstackConfig) -> dict[str, int]:
    out = {}
    for name, svc in (("kafka", KafkaService(cfg)), ("elasticsearch", ElasticsearchService(cfg))):
        pid = running_pid(svc.pid_file)
        if pid is not None:
            out[name] = pid
    return out


def throughput(cfg: DevstackConfig, n: int, batch_size: int | None, count: int) -> dict[str, Any]:
    """N tweets through `count` worker processes: first produced -> N searchable."""
    es = Elasticsearch(cfg.elasticsearch_url, request_timeout=30)
    try:
        with workers(cfg, count, batch_size) as w:
            usage = Usage({**{f"worker-{i}": p for i, p in enumerate(w.pids)}, **service_pids(cfg)})
            tweets = prepare(n, uuid.uuid4().hex[:8])
            usage.start()
            t0 = time.monotonic()
            producing = start_producing(cfg.kafka_bootstrap, w.topic, tweets)
            indexed = 0
            # Searchable as a user sees it: after Elasticsearch's own refresh (1 s), never a
            # refresh forced by the measurement (each one costs the node a segment).
            while indexed < n and time.monotonic() - t0 < 900:
                time.sleep(0.2)
                usage.sample()
                if _exists(es, w.index):
                    indexed = int(es.count(index=w.index)["count"])
            elapsed = time.monotonic() - t0
            usage.stop()
            produced = producing.result()
            counted = w.counted()
            # More than one when the run rolled the alias over (STREAMAPP_INDEX_ROLLOVER_*).
            indices = len(es.indices.get_alias(name=w.index).body) if indexed else 0
        return {
            "workers": count,
            "messages": n,
            "indexed": indexed,
            "counted": counted,
            "indices": indices,
            "elapsed_s": round(elapsed, 2),
            "msgs_per_s": round(indexed / elapsed, 1),
            "produced_s": round(produced.seconds, 2),
            "cpu_s_per_1000": {
                **usage.per_thousand(indexed),
                "producer": round(produced.cpu_s / max(indexed, 1) * 1000, 3),
            },
            "peak_rss_mb": usage.peak_mb(),
        }
    finally:
        es.close()


def start_producing(
    bootstrap: str, topic: str, tweets: Sequence[Prepared]
) -> concurrent.futures.Future[Produced]:
    """`produce` in a thread of its own, so the measuring loop keeps its pace."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(lambda: asyncio.run(produce(bootstrap, topic, tweets)))
    pool.shutdown(wait=False)
    return future


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def latency(
    cfg: DevstackConfig, rate: float, seconds: float, batch_size: int | None, count: int = 1
) -> dict[str, Any]:
    """A steady `rate` for `seconds` through `count` workers: produce -> searchable."""
    es = Elasticsearch(cfg.elasticsearch_url, request_timeout=30)
    try:
        with workers(cfg, count, batch_size) as w:
            usage = Usage({**{f"worker-{i}": p for i, p in enumerate(w.pids)}, **service_pids(cfg)})
            tweets = prepare(int(rate * seconds), uuid.uuid4().hex[:8])
            usage.start()
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                paced = pool.submit(
                    lambda: asyncio.run(produce_paced(cfg.kafka_bootstrap, w.topic, tweets, rate))
                )
                total = len(tweets)
                seen_at: list[float] = []
                deadline = time.monotonic() + seconds + 120
                last_sample = 0.0
                while len(seen_at) < total and time.monotonic() < deadline:
                    visible = int(es.count(index=w.index)["count"]) if _exists(es, w.index) else 0
                    now = time.time()
                    seen_at.extend([now] * (min(visible, total) - len(seen_at)))
                    if now - last_sample > 0.5:
                        usage.sample()
                        last_sample = now
                    time.sleep(0.05)
                sent = paced.result()
            usage.stop()
        delays = sorted(s - p for s, p in zip(seen_at, sent, strict=False))
        return {
            "rate": rate,
            "seconds": seconds,
            "workers": count,
            "produced": len(sent),
            # What the producer kept up: below `rate` when the machine could not give it its
            # share of the CPU.
            "produced_per_s": round(len(sent) / max(sent[-1] - sent[0], 1e-9), 1) if sent else 0,
            "searchable": len(seen_at),
            "p50_s": round(percentile(delays, 50), 3),
            "p90_s": round(percentile(delays, 90), 3),
            "p99_s": round(percentile(delays, 99), 3),
            "max_s": round(delays[-1], 3) if delays else None,
            "cpu_s_per_1000": usage.per_thousand(len(seen_at)),
            "peak_rss_mb": usage.peak_mb(),
        }
    finally:
        es.close()


def _exists(es: Elasticsearch, index: str) -> bool:
    return bool(es.indices.exists(index=index))


def baseline(cfg: DevstackConfig, name: str, n: int) -> dict[str, Any]:
    tweets = prepare(n, uuid.uuid4().hex[:8])

    async def send(topic: str) -> float:
        return (await produce(cfg.kafka_bootstrap, topic, tweets)).seconds

    async def run() -> dict[str, float]:
        return await run_baseline(name, cfg.kafka_bootstrap, cfg.elasticsearch_url, send, n)

    r = asyncio.run(run())
    return {
        "messages": n,
        "indexed": int(r["indexed"]),
        "elapsed_s": round(r["elapsed_s"], 2),
        "msgs_per_s": round(r["indexed"] / r["elapsed_s"], 1),
    }


def table(results: dict[str, Any]) -> str:
    rows = []
    ceiling = results["baselines"].get("raw ceiling", {}).get("msgs_per_s")
    seed = results["baselines"].get("seed-style", {}).get("msgs_per_s")

    def ratios(rate: float) -> str:
        parts = []
        if seed:
            parts.append(f"x{rate / seed:,.1f} seed")
        if ceiling:
            parts.append(f"{100 * rate / ceiling:.0f}% of ceiling")
        return ", ".join(parts)

    rows.append(f"{'pipeline, same input':<44} {'msgs/s':>9}  vs baselines")
    clf_rate = results["classifier_msgs_per_s"]
    rows.append(f"{'classifier alone (offline, one core)':<44} {clf_rate:>9,.0f}")
    for name, r in results["baselines"].items():
        label = f"{name} ({r['messages']:,})"
        rows.append(f"{label:<44} {r['msgs_per_s']:>9,.0f}")
    for r in results["end_to_end"]:
        label = f"streamapp, {r['workers']} worker(s) ({r['messages']:,})"
        rows.append(f"{label:<44} {r['msgs_per_s']:>9,.0f}  {ratios(r['msgs_per_s'])}")
    lines = ["\n".join(rows), ""]
    lines.append("CPU seconds per 1,000 messages / peak RSS MB:")
    for r in results["end_to_end"]:
        lines.append(
            f"  {r['workers']} worker(s): "
            + ", ".join(
                f"{k} {v:.2f}s"
                + (f"/{r['peak_rss_mb'][k]:,.0f}MB" if k in r["peak_rss_mb"] else "")
                for k, v in r["cpu_s_per_1000"].items()
            )
            + f"; tables counted {r['counted']:,} of {r['messages']:,}"
            + (f"; in {r['indices']} indices" if r.get("indices", 1) > 1 else "")
        )
    for name in ("latency", "sustained"):
        lat = results.get(name)
        if not lat:
            continue
        workers_cpu = sum(v for k, v in lat["cpu_s_per_1000"].items() if k.startswith("worker-"))
        lines.append(
            f"{name} at {lat['rate']:,.0f} msgs/s for {lat['seconds']:.0f}s "
            f"({lat['workers']} worker(s), produced at {lat['produced_per_s']:,.0f}/s): "
            f"p50 {lat['p50_s']:.2f}s, p90 {lat['p90_s']:.2f}s, p99 {lat['p99_s']:.2f}s, "
            f"max {lat['max_s']:.2f}s; {lat['searchable']:,} of {lat['produced']:,} searchable; "
            f"worker peak RSS {lat['peak_rss_mb'].get('worker-0', 0):,.0f} MB, "
            f"workers' CPU {workers_cpu:.2f}s per 1,000"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="STREAMAPP_BATCH_SIZE (the worker's default)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker processes to compare"
    )
    parser.add_argument("--seed-messages", type=int, default=3_000, help="seed-style is slow")
    parser.add_argument("--latency-rate", type=float, default=1_000)
    parser.add_argument("--latency-seconds", type=float, default=60, help="0: no latency run")
    parser.add_argument(
        "--sustained-rate", type=float, default=5_000, help="the throughput target, held steady"
    )
    parser.add_argument("--sustained-seconds", type=float, default=20, help="0: no such run")
    parser.add_argument("--sustained-workers", type=int, default=2)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    n = args.messages

    cfg = DevstackConfig.from_env()
    started_here = []
    for svc in (KafkaService(cfg), ElasticsearchService(cfg)):
        if not svc.running():
            svc.start()
            started_here.append(svc)
    try:
        results: dict[str, Any] = {
            "started_at": now_iso(),
            "messages": n,
            "batch_size": args.batch_size or "worker default",
            "batch_timeout": os.environ.get("STREAMAPP_BATCH_TIMEOUT", "worker default"),
            "cpus": os.cpu_count(),
            "terms": os.environ.get("STREAMAPP_TERMS", BENCH_TERMS),
        }
        rate = asyncio.run(classifier_rate(min(n, 20_000), 500))
        results["classifier_msgs_per_s"] = round(rate, 1)
        print(f"classifier alone: {rate:,.0f} msgs/s", flush=True)
        results["baselines"] = {}
        if not args.no_baselines:
            for name, count in (("raw ceiling", n), ("seed-style", min(n, args.seed_messages))):
                r = baseline(cfg, name, count)
                results["baselines"][name] = r
                print(f"{name}: {r['msgs_per_s']:,.0f} msgs/s ({r['indexed']:,})", flush=True)
        results["end_to_end"] = []
        for count in args.workers:
            r = throughput(cfg, n, args.batch_size, count)
            results["end_to_end"].append(r)
            print(f"streamapp, {count} worker(s): {r['msgs_per_s']:,.0f} msgs/s", flush=True)
        if args.latency_seconds > 0:
            results["latency"] = latency(
                cfg, args.latency_rate, args.latency_seconds, args.batch_size
            )
        if args.sustained_seconds > 0:
            results["sustained"] = latency(
                cfg,
                args.sustained_rate,
                args.sustained_seconds,
                args.batch_size,
                args.sustained_workers,
            )
        print()
        print(table(results))
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"bench-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nfigures in {path}")
        complete = (
            all(r["indexed"] == n and r["counted"] == n for r in results["end_to_end"])
            and all(r["indexed"] == r["messages"] for r in results["baselines"].values())
            and all(
                results[name]["searchable"] == results[name]["produced"]
                for name in ("latency", "sustained")
                if name in results
            )
        )
        return 0 if complete else 1
    finally:
        for svc in reversed(started_here):
            svc.stop()


if __name__ == "__main__":
    sys.exit(main())
