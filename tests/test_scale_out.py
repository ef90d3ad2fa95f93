"""Several workers behave as one service, on the real Kafka and Elasticsearch.

Two workers with the same app id (own web ports and data directories) share the 4-partition
topic. Each answers the views for every partition, gathering the others' from their owners;
when one is killed the survivor takes its partitions over from the changelog, and a worker
joining mid-stream takes some; the totals stay equal to the number of distinct messages.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import Namespace, Worker, es_count, free_port, make_tweets, produce, total, wait_for

pytestmark = pytest.mark.integration


def counted(worker: Worker) -> tuple[int, dict]:
    """(messages counted, the view's body) as `worker` sees the whole service."""
    status, body = worker.get("/hate/?window=tumbling&limit=10000")
    if status != 200:
        return -1, body
    return total(body["totals"], "messages"), body


def sees_all(worker: Worker, n: int, workers: int) -> bool:
    got, body = counted(worker)
    return (
        got == n
        and body.get("missing_partitions") == []
        and sum(1 for s in body.get("workers", {}).values() if s == "ok") == workers
    )


def all_see(workers: list[Worker], n: int, alive: int, timeout: float) -> None:
    for worker in workers:
        wait_for(
            lambda: sees_all(worker, n, alive),  # noqa: B023 - called at once, in the loop
            timeout=timeout,
            what=f"{worker.web} to count all {n}",
        )


def local_count(worker: Worker) -> int:
    """Messages counted in this worker's own partitions (what it answers other workers)."""
    status, body = worker.get("/hate/?window=tumbling&scope=local")
    assert status == 200, body
    return sum(value["c"].get("|messages", 0) for _key, _start, _end, value in body["items"])


def spare(worker_factory, namespace: Namespace, name: str) -> Worker:
    return worker_factory(
        STREAMAPP_WEB_PORT=str(free_port()),
        STREAMAPP_DATA_DIR=str(namespace.workdir / f"data-{name}"),
    )


async def test_two_workers_answer_as_one_and_survive_a_kill_and_a_join(
    namespace: Namespace, worker_factory
) -> None:
    ns = namespace
    a = spare(worker_factory, ns, "a").start()
    b = spare(worker_factory, ns, "b").start()
    first = make_tweets(2_000, seed=41)
    await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, first)
    n = len(first)
    await asyncio.to_thread(wait_for, lambda: es_count(ns) == n, timeout=120, what="documents")
    await asyncio.to_thread(all_see, [a, b], n, 2, 60)
    # Each worker counted only its own partitions, yet both answer for all of them.
    local = [local_count(w) for w in (a, b)]
    assert sum(local) == n and all(local), local
    parts = [w.get("/hate/?scope=local")[1]["partitions"] for w in (a, b)]
    assert sorted(parts[0] + parts[1]) == [0, 1, 2, 3] and parts[0] and parts[1]
    stats = a.get("/stats/")[1]
    assert stats["pipelines"]["tweets"]["indexed"] == n and len(stats["workers"]) == 2
    print(f"\nFIGURE two workers: partitions {parts[0]} and {parts[1]}; both views show {n}")

    # B is killed mid-stream: A takes its partitions over.
    second = make_tweets(1_500, seed=42)
    producing = asyncio.create_task(
        produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, second, rate=500)
    )
    await asyncio.sleep(1)
    b.kill()
    killed = time.monotonic()
    await producing
    n += len(second)
    await asyncio.to_thread(
        wait_for, lambda: sees_all(a, n, 1), timeout=180, what="the survivor to count all"
    )
    recovered = time.monotonic() - killed
    assert es_count(ns) == n
    print(
        f"FIGURE after SIGKILL of one of two workers: all {n} counted by the survivor "
        f"{recovered:.1f}s after the kill"
    )

    # C joins mid-stream: the partitions are shared again, totals unchanged in meaning.
    third = make_tweets(1_500, seed=43)
    producing = asyncio.create_task(
        produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, third, rate=500)
    )
    c = spare(worker_factory, ns, "c").start(wait_healthy=False)
    await producing
    n += len(third)
    joined = time.monotonic()
    await asyncio.to_thread(all_see, [a, c], n, 2, 180)
    assert es_count(ns) == n
    got_a, got_c = counted(a)[0], counted(c)[0]
    print(
        f"FIGURE a third worker joined mid-stream: totals {got_a} (a) and {got_c} (c) of {n}, "
        f"settled {time.monotonic() - joined:.1f}s after the last message"
    )
    assert got_a == got_c == n
