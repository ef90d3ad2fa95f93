"""The fault suite: crashes, bursts and poison input on the real Kafka and Elasticsearch.

Every scenario ends with the same checks: every good message searchable (nothing lost), the
tables' totals equal to the distinct messages (nothing counted twice) and split exactly as
the documents are (nothing miscounted), every bad message in the dead-letter topic, and the
worker still taking new messages (nothing stuck). A table of the figures is printed at the
end (`pytest -s`) and written to test-artifacts/faults.json.

`make test` runs a short version; `make chaos` the full one (STREAMAPP_FAULTS_SCALE=full:
larger N, the 40,000-message burst repeated five times).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from helpers import (
    ARTIFACTS,
    Namespace,
    Worker,
    consume_all,
    es_breakdown,
    es_count,
    make_tweets,
    produce,
    total,
    view_totals,
    wait_for,
)

from devstack.elasticsearch import ElasticsearchService
from devstack.kafka import KafkaService
from streamapp.settings import load_settings
from streamapp.topics import ensure_topics

pytestmark = pytest.mark.integration

FULL = os.environ.get("STREAMAPP_FAULTS_SCALE") == "full"
SCALE = {
    "crash_n": 20_000 if FULL else 3_000,
    "crash_rate": 1_000 if FULL else 500,
    "burst_n": 40_000 if FULL else 10_000,
    "burst_runs": 5 if FULL else 1,
}


@dataclass
class Row:
    scenario: str
    n: int  # good messages sent
    lost: int = 0
    duplicated: int = 0  # counted more often than there are distinct messages
    miscounted: int = 0  # labels whose table count differs from the documents'
    dead_lettered: int = 0
    expected_dead: int = 0
    recover_s: float | None = None  # fault over (restart) -> first new document searchable
    total_s: float = 0.0
    stuck: bool = False
    notes: list[str] = field(default_factory=list)


ROWS: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table() -> Iterator[None]:
    yield
    if not ROWS:
        return
    header = (
        f"{'scenario':<34} {'N':>7} {'lost':>5} {'dup':>4} {'miscnt':>6} "
        f"{'dead':>5} {'recover':>8} {'total':>7} stuck"
    )
    lines = [header, "-" * len(header)]
    for r in ROWS:
        dead = f"{r.dead_lettered}/{r.expected_dead}"
        rec = "-" if r.recover_s is None else f"{r.recover_s:.1f}s"
        lines.append(
            f"{r.scenario:<34} {r.n:>7} {r.lost:>5} {r.duplicated:>4} {r.miscounted:>6} "
            f"{dead:>5} {rec:>8} {r.total_s:>6.1f}s {'YES' if r.stuck else 'no'}"
        )
    print("\nFAULT SUITE (" + ("full" if FULL else "short") + ")\n" + "\n".join(lines))
    (ARTIFACTS / "faults.json").write_text(json.dumps([asdict(r) for r in ROWS], indent=2))


# -- checks shared by every scenario --------------------------------------------------------


def dead_letters(ns: Namespace, expected: int) -> list[dict[str, Any]]:
    records = asyncio.run(
        consume_all(ns.cfg.kafka_bootstrap, ns.dead_letter_topic, expected, within=60)
    )
    return [json.loads(r.value) for r in records]


def settle(row: Row, ns: Namespace, worker: Worker, *, timeout: float = 300) -> None:
    """Wait for the N good messages, then fill in lost / duplicated / miscounted / stuck."""
    try:
        wait_for(lambda: es_count(ns) >= row.n, timeout=timeout, what=f"{row.n} documents")
    except AssertionError as exc:
        row.stuck = True
        row.notes.append(str(exc)[:200])
    docs = es_count(ns)
    row.lost = max(0, row.n - docs)

    def counted() -> int:
        return total(view_totals(worker, "hate"), "messages")

    with contextlib.suppress(AssertionError):
        wait_for(lambda: counted() >= docs, timeout=60, what="tables to catch up")
    time.sleep(2)  # anything redelivered late would show up as extra counts
    row.duplicated = max(0, counted() - docs)
    es_sentiment, es_hate = es_breakdown(ns)
    for mine, theirs in (
        (view_totals(worker, "sentiment"), es_sentiment),
        (view_totals(worker, "hate"), es_hate),
    ):
        for src in set(mine) | set(theirs):
            for label in set(mine.get(src, {})) | set(theirs.get(src, {})):
                if mine.get(src, {}).get(label, 0) != theirs.get(src, {}).get(label, 0):
                    row.miscounted += 1
    # Still moving: one more message goes through.
    probe = make_tweets(1, seed=random.randrange(10**9), prefix="probe")
    asyncio.run(produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, probe))
    try:
        wait_for(lambda: es_count(ns) >= docs + 1, timeout=60, what="a probe message")
    except AssertionError:
        row.stuck = True
        row.notes.append("a new message was not processed")


def first_new_document(ns: Namespace, since: float, before: int, timeout: float = 180) -> float:
    wait_for(lambda: es_count(ns) > before, timeout=timeout, what="a new document", interval=0.2)
    return time.monotonic() - since


def record(row: Row) -> None:
    ROWS.append(row)
    assert (row.lost, row.duplicated, row.miscounted, row.stuck) == (0, 0, 0, False), row
    assert row.dead_lettered == row.expected_dead, row


# -- crashes ----------------------------------------------------------------------------------


async def test_worker_sigkill_mid_stream(namespace: Namespace, worker_factory) -> None:
    ns = namespace
    row = Row("SIGKILL worker mid-stream", SCALE["crash_n"])
    started = time.monotonic()
    first = worker_factory().start()
    tweets = make_tweets(row.n, seed=11)
    producing = asyncio.create_task(
        produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, tweets, rate=SCALE["crash_rate"])
    )
    await asyncio.to_thread(
        wait_for, lambda: es_count(ns) >= row.n // 4, timeout=180, what="a quarter indexed"
    )
    first.kill()
    before = es_count(ns)
    restarted = time.monotonic()
    second = worker_factory().start(wait_healthy=False)
    row.recover_s = await asyncio.to_thread(first_new_document, ns, restarted, before)
    await producing
    await asyncio.to_thread(settle, row, ns, second)
    row.total_s = time.monotonic() - started
    record(row)


@pytest.mark.parametrize("service", ["kafka", "elasticsearch"])
async def test_dependency_sigkill_mid_stream(
    namespace: Namespace, worker_factory, service: str
) -> None:
    ns = namespace
    row = Row(f"SIGKILL {service} mid-stream", SCALE["crash_n"])
    started = time.monotonic()
    worker = worker_factory().start()
    tweets = make_tweets(row.n, seed=12)
    # Produced in full first: the producer is not under test, the worker's recovery is.
    await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, tweets)
    await asyncio.to_thread(
        wait_for, lambda: es_count(ns) >= row.n // 5, timeout=180, what="a fifth indexed"
    )
    svc = KafkaService(ns.cfg) if service == "kafka" else ElasticsearchService(ns.cfg)
    svc.kill()
    await asyncio.sleep(8)  # long enough for every retry path to be taken
    status, body = worker.get("/health/")
    if (status, body.get(f"{service}_reachable")) != (503, False):
        row.notes.append(f"health during the outage: {status} {body.get('problems')}")
        row.stuck = True
    before = es_count(ns)
    await asyncio.to_thread(svc.start)
    restarted = time.monotonic()
    if before < row.n:
        row.recover_s = await asyncio.to_thread(first_new_document, ns, restarted, before)
    await asyncio.to_thread(settle, row, ns, worker)
    row.total_s = time.monotonic() - started
    record(row)


async def test_sigterm_during_an_outage_stops_promptly_and_loses_nothing(
    namespace: Namespace, worker_factory
) -> None:
    ns = namespace
    row = Row("SIGTERM while Elasticsearch is down", 500)
    started = time.monotonic()
    worker = worker_factory().start()
    es = ElasticsearchService(ns.cfg)
    es.stop()
    try:
        tweets = make_tweets(row.n, seed=13)
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, tweets[:200])

        def retrying() -> bool:
            body = worker.get("/health/")[1]
            agent = body.get("agents", {}).get("tweets", {})
            return agent.get("batch_in_progress_seconds") is not None

        await asyncio.to_thread(wait_for, retrying, timeout=60, what="a batch in progress")
        # The rest arrives while that batch (cut short by its timeout) retries: Faust gives
        # it to the stream, which buffers it for the next batch, and nothing will ack it.
        # Faust used to wait for those acks until its own 60 s shutdown timeout.
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, tweets[200:])
        await asyncio.sleep(3)
        stopping = time.monotonic()
        await asyncio.to_thread(worker.stop)
        stop_s = time.monotonic() - stopping
        row.notes.append(f"SIGTERM -> exit in {stop_s:.1f}s")
        print(f"\nFIGURE SIGTERM with a batch retrying against a dead Elasticsearch: {stop_s:.1f}s")
        # Faust's own stop takes a few seconds; before, it waited out the whole outage.
        assert stop_s < 30, worker.log_tail()
    finally:
        es.start()
    restarted = time.monotonic()
    second = worker_factory().start(wait_healthy=False)
    row.recover_s = await asyncio.to_thread(first_new_document, ns, restarted, 0)
    await asyncio.to_thread(settle, row, ns, second)
    row.total_s = time.monotonic() - started
    record(row)


# -- bursts -----------------------------------------------------------------------------------


async def test_burst_into_a_fresh_worker(namespace: Namespace, worker_factory) -> None:
    """The backlog is there before the worker starts: its first batches meet a full
    producer buffer, the case that once hung a worker for good (1 run in 15)."""
    ns = namespace
    clean = 0
    for run in range(SCALE["burst_runs"]):
        suffix = f"-r{run}"
        env = {
            key: ns.env[key] + suffix
            for key in (
                "STREAMAPP_APP_ID",
                "STREAMAPP_TWEETS_TOPIC",
                "STREAMAPP_NEWS_TOPIC",
                "STREAMAPP_DEAD_LETTER_TOPIC",
                "STREAMAPP_TWEETS_INDEX",
                "STREAMAPP_NEWS_INDEX",
            )
        }
        env["STREAMAPP_DATA_DIR"] = ns.env["STREAMAPP_DATA_DIR"] + suffix
        run_ns = Namespace(tag=ns.tag, cfg=ns.cfg, env={**ns.env, **env}, workdir=ns.workdir)
        row = Row(f"burst of {SCALE['burst_n']} (run {run + 1})", SCALE["burst_n"])
        await ensure_topics(
            load_settings(
                **{k.removeprefix("STREAMAPP_").lower(): v for k, v in run_ns.env.items()}
            )
        )
        started = time.monotonic()
        await produce(
            ns.cfg.kafka_bootstrap, run_ns.tweets_topic, make_tweets(row.n, seed=20 + run)
        )
        worker = worker_factory(**env).start(wait_healthy=False)
        row.recover_s = await asyncio.to_thread(first_new_document, run_ns, started, 0)
        await asyncio.to_thread(settle, row, run_ns, worker, timeout=600)
        row.total_s = time.monotonic() - started
        print(f"\nFIGURE burst run {run + 1}: {row.n} in {row.total_s:.1f}s")
        clean += not row.stuck
        await asyncio.to_thread(worker.stop)
        record(row)
    print(f"FIGURE bursts clean: {clean} of {SCALE['burst_runs']}")


# -- poison input ------------------------------------------------------------------------------

NOW = "2026-12-01T10:00:00Z"


def tweet(i: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"fuzz-{i}", "text": f"message {i}", "created_at": NOW, **fields}


def fuzz_cases() -> list[tuple[str, bytes | None, str | None]]:
    """(what, value, expected dead-letter reason or None for a good message)."""
    cases: list[tuple[str, bytes | None, str | None]] = []

    def js(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    n = 0

    def add(what: str, value: bytes | None, reason: str | None) -> None:
        nonlocal n
        n += 1
        cases.append((what, value, reason))

    add("not JSON", b"{this is not json", "invalid_json")
    add("a JSON array", b"[1, 2, 3]", "invalid_json")
    add("deeply nested", b"[" * 100_000, "invalid_json")
    add("deeply nested field", b'{"id": "x", "text": ' + b"[" * 100_000, "invalid_json")
    add(
        "invalid UTF-8",
        b'{"id": "\xff\xfe", "text": "x", "created_at": "' + NOW.encode() + b'"}',
        "invalid_json",
    )
    add("tombstone (null value)", None, "invalid_json")
    for name in ("id", "text", "created_at", "author_username", "lang", "source"):
        value = tweet(1000 + n)
        value[name] = "bad \ud800 surrogate"
        add(f"lone surrogate in {name}", json.dumps(value).encode(), "schema_violation")
    value = tweet(2000)
    value["rule_tags"] = ["ok", "\udfff"]
    add("lone surrogate in rule_tags", js(value), "schema_violation")
    for name in ("id", "text", "created_at"):
        value = tweet(3000 + n)
        value[name] = None
        add(f"null {name}", js(value), "schema_violation")
    add("id is a number", js(tweet(4000) | {"id": 12345}), "schema_violation")
    add("text is a list", js(tweet(4001) | {"text": ["a"]}), "schema_violation")
    add("created_at is a number", js(tweet(4002) | {"created_at": 1700000000}), "schema_violation")
    add("rule_tags is a string", js(tweet(4003) | {"rule_tags": "news"}), "schema_violation")
    add("empty id", js(tweet(4004) | {"id": "  "}), "schema_violation")
    add("bad date", js(tweet(4005) | {"created_at": "yesterday"}), "schema_violation")
    add("huge id (64 KB)", js(tweet(4006) | {"id": "i" * 65_536}), "rejected_by_elasticsearch")
    # Over STREAMAPP_MAX_MESSAGE_BYTES (256 KB): dead-lettered with a truncated copy.
    add("300 KB text", js(tweet(4007) | {"text": "x" * 300_000}), "oversized")
    # Near the broker's limit once compressed, 2 MB uncompressed: the dead letter must fit.
    add("2 MB value (compressed)", js(tweet(4008) | {"text": "y" * 2_000_000}), "oversized")
    # Good ones, however odd.
    add("empty text", js(tweet(5000) | {"text": ""}), None)
    planes = "".join(
        chr(c) for c in (0x41, 0xE9, 0x4E2D, 0x1F600, 0x20000, 0x30000, 0xE0041, 0xF0000, 0x10FFFD)
    )
    add("every Unicode plane", js(tweet(5001) | {"text": planes}), None)
    add("extra unknown fields", js(tweet(5002) | {"extra": {"nested": [1, 2]}}), None)
    add(
        "emoji surrogate pair escaped",
        b'{"id": "fuzz-5003", "text": "\\ud83d\\ude00", "created_at": "' + NOW.encode() + b'"}',
        None,
    )
    return cases


async def test_fuzz_of_malformed_inputs(namespace: Namespace, worker_factory) -> None:
    ns = namespace
    cases = fuzz_cases()
    good = make_tweets(200, seed=30)
    n_good = len(good) + sum(1 for _, _, reason in cases if reason is None)
    expected_dead = sum(1 for _, _, reason in cases if reason is not None)
    row = Row("fuzz of malformed inputs", n_good, expected_dead=expected_dead)
    started = time.monotonic()
    worker = worker_factory().start()
    producer = AIOKafkaProducer(
        bootstrap_servers=ns.cfg.kafka_bootstrap,
        acks="all",
        compression_type="gzip",
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        # One partition for all, bad ones between good ones: a poison message that stopped
        # its partition would hold back every good message after it.
        sends: list[tuple[bytes, bytes | None]] = []
        for i, (_, value, _) in enumerate(cases):
            key, good_value = good[i % len(good)]
            sends += [(key.encode(), good_value), (b"fuzz-%d" % i, value)]
        sends += [(key.encode(), value) for key, value in good[len(cases) :]]
        futures = [
            await producer.send(ns.tweets_topic, value, key=key, partition=0)
            for key, value in sends
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    await asyncio.to_thread(settle, row, ns, worker)
    letters = await asyncio.to_thread(dead_letters, ns, expected_dead)
    row.dead_lettered = len(letters)
    got = sorted(letter["reason"] for letter in letters)
    want = sorted(reason for _, _, reason in cases if reason is not None)
    if got != want:
        row.notes.append(f"reasons {got} != {want}")
    row.total_s = time.monotonic() - started
    record(row)
    assert got == want
    big = [letter for letter in letters if letter["size"] > 1_000_000]
    assert big and all(letter["truncated"] for letter in big), "the 2 MB letter, truncated"
