"""`make bench` in small: the harness runs every row on the real Kafka and Elasticsearch and
writes figures that add up (its speed figures are printed, never asserted)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from benchmarks.baselines import PARTITIONS, create_topic, delete_topic
from benchmarks.pipeline import main, prepare, produce
from devstack.config import DevstackConfig


@pytest.mark.integration
def test_bench_harness_measures_every_row(devstack: DevstackConfig, tmp_path: Path) -> None:
    code = main(
        [
            "--messages", "400",
            "--workers", "1",
            "--seed-messages", "40",
            "--latency-rate", "100",
            "--latency-seconds", "3",
            "--sustained-rate", "150",
            "--sustained-seconds", "2",
            "--sustained-workers", "1",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    (path,) = tmp_path.glob("bench-*.json")
    results = json.loads(path.read_text())
    assert code == 0, results
    assert results["classifier_msgs_per_s"] > 0
    assert {name: r["indexed"] for name, r in results["baselines"].items()} == {
        "raw ceiling": 400,
        "seed-style": 40,
    }
    (e2e,) = results["end_to_end"]
    assert (e2e["indexed"], e2e["counted"], e2e["workers"]) == (400, 400, 1)
    assert set(e2e["cpu_s_per_1000"]) == {"worker-0", "kafka", "elasticsearch", "producer"}
    assert all(v > 0 for v in e2e["peak_rss_mb"].values()), e2e
    for name, produced in (("latency", 300), ("sustained", 300)):
        lat = results[name]
        assert lat["produced"] == lat["searchable"] == produced, name
        assert 0 < lat["p50_s"] <= lat["p90_s"] <= lat["p99_s"] <= lat["max_s"] < 30, name
        assert lat["produced_per_s"] > 0 and "worker-0" in lat["cpu_s_per_1000"], name


@pytest.mark.integration
def test_the_load_generator_sends_each_tweet_once_where_kafka_would_put_it(
    devstack: DevstackConfig,
) -> None:
    """Batches built by hand, partitioned as Kafka's default partitioner does by key."""
    topic = f"bench-producer-{uuid.uuid4().hex[:8]}"
    tweets = prepare(1500, "t")

    async def run() -> dict[bytes, tuple[int, bytes]]:
        await create_topic(devstack.kafka_bootstrap, topic)
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=devstack.kafka_bootstrap, auto_offset_reset="earliest"
        )
        try:
            produced = await produce(devstack.kafka_bootstrap, topic, tweets)
            assert produced.seconds > 0 and produced.cpu_s > 0
            await consumer.start()
            got: dict[bytes, tuple[int, bytes]] = {}
            while len(got) < len(tweets):
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                for tp, records in batches.items():
                    for r in records:
                        assert r.key not in got, "sent twice"
                        got[r.key] = (tp.partition, r.value)
            return got
        finally:
            await consumer.stop()
            await delete_topic(devstack.kafka_bootstrap, topic)

    got = asyncio.run(run())
    partitions = list(range(PARTITIONS))
    expected = {
        key: (DefaultPartitioner()(key, partitions, partitions), value) for _, key, value in tweets
    }
    assert got == expected
    assert len({p for p, _ in got.values()}) == PARTITIONS
