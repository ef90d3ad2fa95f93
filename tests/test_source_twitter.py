"""Twitter/X source through the real tweepy client, a local X API server and the real Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ListOutput, Namespace, consume_all, wait_for
from servers.twitter_server import OPERATIONAL_DISCONNECT, TwitterServer, tweet_message

from streamapp.decoding import decode
from streamapp.models import Tweet
from streamapp.settings import load_settings
from streamapp.sources.output import KafkaOutput, SourceError
from streamapp.sources.twitter import TwitterSettings, TwitterSource
from streamapp.topics import ensure_topics

TOKEN = "test-bearer-token"


@pytest.fixture
def env(namespace: Namespace, monkeypatch: pytest.MonkeyPatch) -> Namespace:
    for key, value in namespace.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", TOKEN)
    return namespace


def settings_for(
    server: TwitterServer, rules: list[dict[str, str]], delete_stale: bool = False
) -> TwitterSettings:
    return TwitterSettings(
        base_url=server.url,
        rules=rules,
        delete_stale_rules=delete_stale,
    )


def rule_set(server: TwitterServer) -> set[tuple[str, str | None]]:
    return {(r["value"], r.get("tag")) for r in server.rules.values()}


async def test_other_rules_of_the_account_are_kept_by_default(env: Namespace) -> None:
    with TwitterServer(TOKEN) as server:
        theirs = server.add_rule("used by another tool", "other")
        source = TwitterSource(settings_for(server, [{"value": "climate", "tag": "climate"}]))
        assert source.sync_rules(source._client()) == (1, 0)
        assert theirs in server.rules
        assert rule_set(server) == {("climate", "climate"), ("used by another tool", "other")}


def test_no_rules_is_refused_before_anything_is_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", TOKEN)
    monkeypatch.delenv("STREAMAPP_TWITTER_RULES", raising=False)
    monkeypatch.delenv("STREAMAPP_TERMS", raising=False)
    with pytest.raises(SourceError, match=r"STREAMAPP_TERMS .*or STREAMAPP_TWITTER_RULES"):
        TwitterSource(TwitterSettings())


async def test_without_rules_the_tracked_terms_become_one_tagged_rule_each(
    env: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMAPP_TWITTER_RULES", raising=False)
    monkeypatch.setenv("STREAMAPP_TERMS", "climate, net zero")
    with TwitterServer(TOKEN) as server:
        monkeypatch.setenv("STREAMAPP_TWITTER_BASE_URL", server.url)
        source = TwitterSource(TwitterSettings())
        assert source.sync_rules(source._client()) == (2, 0)
        # A phrase is quoted, so X matches it exactly; the tag is the term as tracked.
        assert rule_set(server) == {("climate", "climate"), ('"net zero"', "net zero")}
    # Rules of their own win over the terms.
    monkeypatch.setenv("STREAMAPP_TWITTER_RULES", '[{"value": "x", "tag": "y"}]')
    assert [r.tag for r in TwitterSettings().rules] == ["y"]


async def test_no_network_is_retried_with_one_line_each_and_stops_cleanly(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", TOKEN)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = TwitterSource(
        TwitterSettings(
            base_url=f"http://127.0.0.1:{port}",
            rules=[{"value": "x", "tag": "x"}],
            retry_initial=0.05,
            retry_max=0.1,
        )
    )
    task = asyncio.create_task(source.run(ListOutput()))
    await asyncio.to_thread(
        wait_for, lambda: source.stream_errors >= 3, timeout=30, what="three retries"
    )
    source.stop()
    await asyncio.wait_for(task, timeout=10)  # returns, no exception
    retries = [r for r in caplog.records if "cannot reach the X API" in r.getMessage()]
    assert len(retries) >= 3 and all(r.exc_info is None for r in retries)


def test_rules_that_are_not_json_are_one_line_naming_the_setting(tmp_path: Path) -> None:
    env = {**os.environ, "TWITTER_BEARER_TOKEN": TOKEN, "STREAMAPP_TWITTER_RULES": "not json"}
    done = subprocess.run(
        [sys.executable, "-m", "streamapp.sources", "twitter"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr, done.stderr
    assert "STREAMAPP_TWITTER_RULES" in done.stderr and TOKEN not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr


async def test_rules_are_synced_add_missing_delete_stale(env: Namespace) -> None:
    with TwitterServer(TOKEN) as server:
        # No rules at all: the API then omits `data`.
        source = TwitterSource(
            settings_for(server, [{"value": "climate", "tag": "climate"}], delete_stale=True)
        )
        assert source.sync_rules(source._client()) == (1, 0)
        assert rule_set(server) == {("climate", "climate")}

        stale = server.add_rule("old topic", "old")
        source = TwitterSource(
            settings_for(
                server,
                [{"value": "climate", "tag": "climate"}, {"value": "election", "tag": "politics"}],
                delete_stale=True,
            )
        )
        assert source.sync_rules(source._client()) == (1, 1)
        assert rule_set(server) == {("climate", "climate"), ("election", "politics")}
        assert stale not in server.rules
        # In sync already: nothing to do.
        assert source.sync_rules(source._client()) == (0, 0)


async def test_stream_to_topic_survives_disconnects_without_half_records(env: Namespace) -> None:
    ns = env
    with TwitterServer(TOKEN) as server:
        # The author is NOT the first user of includes (a quoted/mentioned user comes first).
        first = tweet_message("101", "love this", "2", [("1", "someone"), ("2", "alice")], ["a"])
        second = tweet_message("102", "hmm", "1", [("1", "bob")], ["a", "b"])
        third = tweet_message("103", "after the drop", "3", [("3", "carol")], [])
        half = json.dumps(tweet_message("199", "cut", "9", [("9", "x")], ["a"])).encode()[:40]
        server.connections.extend(
            [
                [
                    ("tweet", first),
                    ("keepalive",),
                    ("tweet", second),
                    ("tweet", OPERATIONAL_DISCONNECT),
                    ("close",),
                ],
                [("raw", half), ("drop",)],
                [("keepalive",), ("tweet", third)],
            ]
        )
        settings = load_settings()
        await ensure_topics(settings)
        out = KafkaOutput(settings)
        await out.start()
        source = TwitterSource(settings_for(server, [{"value": "love", "tag": "a"}]))
        task = asyncio.create_task(source.run(out))
        try:
            await asyncio.to_thread(
                wait_for, lambda: source.sent >= 3, timeout=30, what="three tweets sent"
            )
            await out.flush()
        finally:
            source.stop()
            await asyncio.wait_for(task, timeout=30)
            await out.stop()

        records = await consume_all(ns.cfg.kafka_bootstrap, ns.tweets_topic, expected=3)
        by_key = {r.key.decode(): decode(r.value, Tweet, max_bytes=10_000) for r in records}
        assert set(by_key) == {"101", "102", "103"}, "no half record, nothing lost"
        tweets = {k: v for k, v in by_key.items() if isinstance(v, Tweet)}
        assert tweets["101"].author_username == "alice"
        assert tweets["102"].author_username == "bob"
        assert tweets["101"].rule_tags == ["a"] and tweets["102"].rule_tags == ["a", "b"]
        assert tweets["103"].source == "twitter" and tweets["103"].lang == "en"
        assert server.stream_requests >= 3, "reconnected after the disconnect and the drop"
        assert source.stream_errors == 1
        # The stream asked for what the records need.
        _, _, params = next(r for r in server.requests if r[1] == "/2/tweets/search/stream")
        assert "author_id" in params["expansions"][0]
        assert "username" in params["user.fields"][0]
        assert {"created_at", "lang", "author_id"} <= set(params["tweet.fields"][0].split(","))


async def test_unauthorized_stops_with_a_message_naming_the_setting(
    env: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TwitterServer("the-real-token") as server:
        source = TwitterSource(settings_for(server, [{"value": "x", "tag": "x"}]))
        with pytest.raises(SourceError, match="TWITTER_BEARER_TOKEN"):
            await source.run(KafkaOutput(load_settings()))  # refused before anything is sent

        # Rules accepted but the stream refused (e.g. no filtered-stream access): also fatal.
        server.connections.append([("status", 403)])
        server.token = TOKEN
        source = TwitterSource(settings_for(server, [{"value": "x", "tag": "x"}]))
        out = KafkaOutput(load_settings())
        await out.start()
        try:
            with pytest.raises(SourceError, match="HTTP 403"):
                await asyncio.wait_for(source.run(out), timeout=30)
        finally:
            await out.stop()


def test_missing_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWITTER_BEARER_TOKEN", raising=False)
    with pytest.raises(SourceError, match="TWITTER_BEARER_TOKEN"):
        TwitterSource(TwitterSettings())


async def test_end_to_end_source_topic_agent_elasticsearch(env: Namespace, worker_factory) -> None:
    """Local X API -> tweepy source -> Kafka -> Faust agent -> documents in Elasticsearch."""
    ns = env
    worker = worker_factory().start()
    n = 40
    with TwitterServer(TOKEN) as server:
        server.connections.append(
            [
                (
                    "tweet",
                    tweet_message(
                        str(5000 + i),
                        f"tweet number {i}, lovely",
                        str(i),
                        [(str(i), f"user{i}")],
                        ["demo"],
                    ),
                )
                for i in range(n)
            ]
        )
        settings = load_settings()
        out = KafkaOutput(settings)
        await out.start()
        source = TwitterSource(settings_for(server, [{"value": "lovely", "tag": "demo"}]))
        task = asyncio.create_task(source.run(out))
        try:
            await asyncio.to_thread(wait_for, lambda: source.sent >= n, timeout=30, what="sent")
            await out.flush()
        finally:
            source.stop()
            await asyncio.wait_for(task, timeout=30)
            await out.stop()

    es = ns.es()
    try:

        def indexed() -> bool:
            es.indices.refresh(index=ns.env["STREAMAPP_TWEETS_INDEX"])
            return es.count(index=ns.env["STREAMAPP_TWEETS_INDEX"])["count"] == n

        await asyncio.to_thread(wait_for, indexed, timeout=60, what=f"{n} documents")
        doc = es.get(index=ns.env["STREAMAPP_TWEETS_INDEX"], id="5007")["_source"]
    finally:
        es.close()
    assert doc["author_username"] == "user7" and doc["rule_tags"] == ["demo"]
    assert doc["source"] == "twitter" and doc["sentiment_label"] in {"positive", "neutral"}
    assert "hate" in doc and worker.alive()
