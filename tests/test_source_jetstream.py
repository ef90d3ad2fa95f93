"""The Bluesky Jetstream source against a local server speaking Jetstream's wire format, over a
real websocket, into the real Kafka topics of the test's namespace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import ListOutput, Namespace, consume_all
from servers.jetstream_server import (
    BASE_TIME_US,
    POST,
    JetstreamServer,
    Raw,
    account_event,
    delete_event,
    identity_event,
    like_event,
    post_event,
)

from devstack.config import PROJECT_ROOT
from streamapp.decoding import decode
from streamapp.models import Tweet
from streamapp.settings import Settings
from streamapp.sources.jetstream import (
    STATE_FILE,
    JetstreamSettings,
    JetstreamSource,
    time_us_datetime,
)
from streamapp.sources.output import KafkaOutput, SourceError
from streamapp.topics import ensure_topics

ALICE = "did:plc:alice4y6zlvqbsvdkfwmzbxk"
BOB = "did:plc:bob7a2ciqy3ubkv4hoc6gd3m"
SECOND = 1_000_000


def t(i: int) -> int:
    return BASE_TIME_US + i * SECOND


def uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST}/{rkey}"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own Jetstream settings must not leak into the tests.
    for var in list(os.environ):
        if var.startswith("STREAMAPP_JETSTREAM_"):
            monkeypatch.delenv(var)


def js_settings(server: JetstreamServer, state_dir: Path, **overrides: Any) -> JetstreamSettings:
    values: dict[str, Any] = {
        "url": server.url,
        "state_dir": state_dir,
        "rewind_seconds": 2.0,
        "reconnect_initial_delay": 0.05,
        "reconnect_max_delay": 0.2,
    }
    values.update(overrides)
    return JetstreamSettings(**values)


async def run_source(source: JetstreamSource, out: Any, max_events: int) -> None:
    await asyncio.wait_for(source.run(out, max_events=max_events), timeout=15)


async def read_topic(
    ns: Namespace, app_settings: Settings, expected: int
) -> dict[str, list[Tweet]]:
    """The tweets topic as {key: [decoded records]}, checking each against its key."""
    messages = await consume_all(ns.cfg.kafka_bootstrap, ns.tweets_topic, expected, within=15)
    by_key: dict[str, list[Tweet]] = defaultdict(list)
    raw_by_key: dict[str, set[bytes]] = defaultdict(set)
    for m in messages:
        record = decode(m.value, Tweet, max_bytes=app_settings.max_message_bytes)
        assert isinstance(record, Tweet), record
        assert record.id == m.key.decode() and record.source == "bluesky"
        by_key[record.id].append(record)
        raw_by_key[record.id].add(m.value)
    # A post seen twice (the resume rewind) must be the very same record, not a variant.
    assert all(len(values) == 1 for values in raw_by_key.values()), raw_by_key
    return dict(by_key)


def saved_cursor(state_dir: Path) -> int:
    return int(json.loads((state_dir / STATE_FILE).read_text())["cursor"])


async def test_posts_become_records_and_everything_else_is_skipped(
    kafka_out: KafkaOutput, namespace: Namespace, app_settings: Settings, tmp_path: Path
) -> None:
    update = post_event(t(10), BOB, "3lpost2", "edited")
    update["commit"]["operation"] = "update"
    no_rkey = post_event(t(8), BOB, "3lbad", "x")
    del no_rkey["commit"]["rkey"]
    events: list[dict[str, Any] | Raw] = [
        identity_event(t(0), ALICE, "alice.bsky.social"),
        post_event(t(1), ALICE, "3lpost1", "Loving the new climate report", langs=["en", "de"]),
        account_event(t(2), BOB),
        post_event(t(3), BOB, "3lpost2", "Ein schöner Tag 🌞", langs=["de"], created_at=None),
        delete_event(t(4), ALICE, "3lpost1"),
        Raw(t(5), '{"did": "did:plc:cut", "time_us": 17643'),  # half a frame
        like_event(t(6), BOB, "3llike1", uri(ALICE, "3lpost1")),  # filtered out by the server
        post_event(t(7), ALICE, "3lpost3", "no language, odd date", created_at="yesterday"),
        no_rkey,
        post_event(t(9), BOB, "3lpost4", "  "),  # image-only post: no text to classify
        update,
        post_event(t(11), ALICE, "3lpost5", "future clock", created_at="2099-01-01T00:00:00Z"),
    ]
    state_dir = tmp_path / "state"
    async with JetstreamServer(events) as server:
        source = JetstreamSource(js_settings(server, state_dir))
        await run_source(source, kafka_out, max_events=11)

    assert server.cursors == [None], "no saved cursor: start live"
    conn = server.connections[0]
    assert conn.wanted_collections == [POST] and conn.max_message_bytes == 1_000_000
    assert t(6) not in conn.sent, "the server only sends wanted collections"
    counters = source.counters()
    assert counters.pop("saves") >= 1
    assert counters.pop("cursor") == source.cursor
    assert counters == {
        "received": 11,
        "sent": 4,
        "skipped": 5,  # identity, account, delete, empty text, update
        "filtered": 0,
        "malformed": 2,  # half a frame, a create without rkey or record
        "connects": 1,
        "reconnects": 0,
    }

    on_topic = await read_topic(namespace, app_settings, expected=4)
    assert set(on_topic) == {
        uri(ALICE, "3lpost1"),
        uri(BOB, "3lpost2"),
        uri(ALICE, "3lpost3"),
        uri(ALICE, "3lpost5"),
    }
    first = on_topic[uri(ALICE, "3lpost1")][0]
    assert first.text == "Loving the new climate report" and first.lang == "en"
    assert first.author_id == ALICE and first.author_username is None and first.rule_tags == []
    assert first.created_at == datetime(2025, 11, 28, 8, 50, tzinfo=UTC)
    second = on_topic[uri(BOB, "3lpost2")][0]
    assert second.text == "Ein schöner Tag 🌞" and second.lang == "de"
    # No createdAt, an unparseable one, or one from the future: when Jetstream saw the post.
    assert second.created_at == time_us_datetime(t(3))
    third = on_topic[uri(ALICE, "3lpost3")][0]
    assert third.lang is None and third.created_at == time_us_datetime(t(7))
    assert on_topic[uri(ALICE, "3lpost5")][0].created_at == time_us_datetime(t(11))
    assert saved_cursor(state_dir) == t(11), "the last event, acknowledged at shutdown"


async def test_dropped_connections_resume_from_the_acknowledged_cursor_minus_rewind(
    kafka_out: KafkaOutput, namespace: Namespace, app_settings: Settings, tmp_path: Path
) -> None:
    events: list[dict[str, Any] | Raw] = [
        post_event(t(i), ALICE if i % 2 else BOB, f"3lr{i:03d}", f"post number {i}", langs=["en"])
        for i in range(12)
    ]
    events.insert(6, identity_event(t(5) + 500_000, BOB, "bob.example.com"))
    # First connection cut after t0..t4, the second after four more frames.
    async with JetstreamServer(events, drops=[5, 4]) as server:
        source = JetstreamSource(js_settings(server, tmp_path / "state", rewind_seconds=2.0))
        # t0..t4, then t3..t5.5 (rewound to t2), then t4..t11 (rewound to t3.5).
        await run_source(source, kafka_out, max_events=5 + 4 + 9)

    assert server.cursors == [None, t(4) - 2 * SECOND, t(5) + 500_000 - 2 * SECOND]
    assert server.connections[1].sent[:2] == [t(3), t(4)], "the rewound events come again"
    assert all(c.dropped for c in server.connections[:2]) and not server.connections[2].dropped
    assert source.reconnects == 2 and source.connects == 3 and source.malformed == 0
    assert source.sent == 16 and source.skipped == 2

    on_topic = await read_topic(namespace, app_settings, expected=16)
    assert set(on_topic) == {uri(ALICE if i % 2 else BOB, f"3lr{i:03d}") for i in range(12)}
    duplicated = {key for key, records in on_topic.items() if len(records) > 1}
    assert duplicated == {uri(ALICE if i % 2 else BOB, f"3lr{i:03d}") for i in (3, 4, 5)}
    assert len(on_topic[uri(BOB, "3lr004")]) == 3, "t4 came in all three connections"
    assert saved_cursor(tmp_path / "state") == t(11)


async def test_a_restart_resumes_from_the_saved_cursor(
    kafka_out: KafkaOutput, namespace: Namespace, app_settings: Settings, tmp_path: Path
) -> None:
    events: list[dict[str, Any] | Raw] = [
        post_event(t(i), ALICE, f"3ls{i:03d}", f"restart post {i}") for i in range(10)
    ]
    state_dir = tmp_path / "state"
    async with JetstreamServer(events) as server:
        first = JetstreamSource(js_settings(server, state_dir, rewind_seconds=1.5))
        await run_source(first, kafka_out, max_events=4)
        assert saved_cursor(state_dir) == t(3)

        restarted = JetstreamSource(js_settings(server, state_dir, rewind_seconds=1.5))
        assert restarted.cursor == t(3)
        # Replays t2 and t3 (time_us > t3 - 1.5 s), then t4..t9.
        await run_source(restarted, kafka_out, max_events=8)

    assert server.cursors == [None, t(3) - 1_500_000]
    assert server.connections[1].sent == [t(i) for i in range(2, 10)]
    on_topic = await read_topic(namespace, app_settings, expected=12)
    assert set(on_topic) == {uri(ALICE, f"3ls{i:03d}") for i in range(10)}
    assert {k for k, v in on_topic.items() if len(v) == 2} == {
        uri(ALICE, "3ls002"),
        uri(ALICE, "3ls003"),
    }
    assert saved_cursor(state_dir) == t(9)


async def test_keyword_filter_from_the_environment(
    kafka_out: KafkaOutput,
    namespace: Namespace,
    app_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMAPP_JETSTREAM_KEYWORDS", " Climate, #vote ,climate,,c++")
    monkeypatch.setenv("STREAMAPP_JETSTREAM_STATE_DIR", str(tmp_path / "state"))
    texts = {
        "3lk1": "CLIMATE week starts today",
        "3lk2": "go #vote now, the climate matters",
        "3lk3": "#climatechange is one word",  # whole words only
        "3lk4": "she said hi",
        "3lk5": "learning C++ this winter",
    }
    events: list[dict[str, Any] | Raw] = [
        post_event(t(i), BOB, rkey, text) for i, (rkey, text) in enumerate(texts.items())
    ]
    async with JetstreamServer(events) as server:
        monkeypatch.setenv("STREAMAPP_JETSTREAM_URL", server.url)
        settings = JetstreamSettings()
        assert settings.keywords == ["Climate", "#vote", "c++"]
        source = JetstreamSource(settings)
        await run_source(source, kafka_out, max_events=5)

    assert source.sent == 3 and source.filtered == 2
    on_topic = await read_topic(namespace, app_settings, expected=3)
    tags = {key.rsplit("/", 1)[1]: records[0].rule_tags for key, records in on_topic.items()}
    assert tags == {"3lk1": ["Climate"], "3lk2": ["Climate", "#vote"], "3lk5": ["c++"]}


def test_without_keywords_the_tracked_terms_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMAPP_JETSTREAM_KEYWORDS", raising=False)
    monkeypatch.setenv("STREAMAPP_TERMS", "Climate,net zero")
    assert JetstreamSettings().keywords == ["Climate", "net zero"]
    monkeypatch.setenv("STREAMAPP_JETSTREAM_KEYWORDS", "vote")  # its own keywords win
    assert JetstreamSettings().keywords == ["vote"]
    monkeypatch.delenv("STREAMAPP_TERMS")
    monkeypatch.delenv("STREAMAPP_JETSTREAM_KEYWORDS")
    assert JetstreamSettings().keywords == []  # every post


async def test_refused_subscription_is_a_clear_error_and_bad_settings_are_rejected(
    tmp_path: Path,
) -> None:
    async with JetstreamServer([]) as server:
        source = JetstreamSource(
            JetstreamSettings(url=f"{server.base}/wrong-path", state_dir=tmp_path)
        )
        with pytest.raises(SourceError, match=r"HTTP 404.*STREAMAPP_JETSTREAM_URL"):
            await asyncio.wait_for(source.run(ListOutput()), timeout=10)
    assert server.rejected and server.rejected[0][1] == 404
    with pytest.raises(ValueError, match="ws:// or wss://"):
        JetstreamSettings(url="https://jetstream2.us-east.bsky.network/subscribe")


async def test_unreachable_server_is_retried_with_capped_backoff(tmp_path: Path) -> None:
    async with JetstreamServer([post_event(t(0), ALICE, "3lu1", "finally")]) as server:
        url = server.url
    # The server is gone: connection refused, again and again, until it comes back.
    settings = JetstreamSettings(
        url=url, state_dir=tmp_path, reconnect_initial_delay=0.05, reconnect_max_delay=0.1
    )
    source = JetstreamSource(settings)
    out = ListOutput()
    task = asyncio.create_task(source.run(out, max_events=1))
    await asyncio.sleep(0.6)
    assert not task.done() and source.reconnects >= 4 and source.connects == 0
    source.stop()
    await asyncio.wait_for(task, timeout=5)
    assert out.records == [] and not (tmp_path / STATE_FILE).exists()


async def test_cli_stops_on_sigterm_after_saving_the_cursor(
    namespace: Namespace, app_settings: Settings, tmp_path: Path
) -> None:
    events: list[dict[str, Any] | Raw] = [
        post_event(t(i), BOB, f"3lc{i}", f"cli post {i}") for i in range(5)
    ]
    state_dir = tmp_path / "state"
    await ensure_topics(app_settings)  # so the test's consumer finds the topic from the start
    async with JetstreamServer(events) as server:
        env = {
            **os.environ,
            **namespace.env,
            "STREAMAPP_JETSTREAM_URL": server.url,
            "STREAMAPP_JETSTREAM_STATE_DIR": str(state_dir),
            # Only the shutdown may save: proves SIGTERM flushes and saves.
            "STREAMAPP_JETSTREAM_SAVE_EVERY_SECONDS": "3600",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamapp.sources.jetstream",
            env=env,
            cwd=PROJECT_ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            on_topic = await read_topic(namespace, app_settings, expected=5)
            assert len(on_topic) == 5
            assert not (state_dir / STATE_FILE).exists()
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert saved_cursor(state_dir) == t(4)
    assert f"jetstream source stopped: {{'cursor': {t(4)},".encode() in stderr


async def test_end_to_end_rewound_duplicates_are_indexed_and_counted_once(
    kafka_out: KafkaOutput, namespace: Namespace, tmp_path: Path, worker_factory
) -> None:
    """Local Jetstream -> source (two dropped connections, so rewound posts come again) ->
    Kafka -> Faust agent -> Elasticsearch and the tables: each post once in both."""
    from helpers import es_count, total, view_totals, wait_for

    worker = await asyncio.to_thread(worker_factory().start)
    events: list[dict[str, Any] | Raw] = [
        post_event(t(i), ALICE if i % 2 else BOB, f"3le{i:03d}", f"lovely day {i}", langs=["en"])
        for i in range(12)
    ]
    async with JetstreamServer(events, drops=[5, 4]) as server:
        source = JetstreamSource(js_settings(server, tmp_path / "state", rewind_seconds=2.0))
        # t0..t4; rewound to t2: t3..t6; rewound to t4: t5..t11.
        await run_source(source, kafka_out, max_events=5 + 4 + 7)
        await kafka_out.flush()
    assert source.sent > 12  # the rewind re-sent some posts

    def settled() -> bool:
        return es_count(namespace) == 12 and total(view_totals(worker, "sentiment")) == 12

    await asyncio.to_thread(wait_for, settled, timeout=60, what="12 documents, 12 counted")
    stats = worker.get("/stats/")[1]["pipelines"]["tweets"]
    assert stats["received"] == source.sent
    # Repeats in one batch collapse before indexing; across batches they are `repeats`.
    assert total(view_totals(worker, "hate"), "messages") == 12
