"""The NewsAPI source against a local server speaking NewsAPI's wire format, through the real
newsapi-python client, into the real Kafka topics of the test's namespace."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import ListOutput, Namespace, consume_all
from pydantic import ValidationError
from servers.newsapi_server import (
    NewsApiServer,
    make_article,
    query_matches,
    removed_article,
)

from streamapp.decoding import decode
from streamapp.models import NewsArticle, article_id
from streamapp.settings import Settings
from streamapp.sources.newsapi import (
    STATE_FILE,
    NewsApiSettings,
    NewsApiSource,
    SeenIds,
    main,
)
from streamapp.sources.output import KafkaOutput, SourceError

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own NewsAPI settings must not leak into the tests.
    import os

    for var in list(os.environ):
        if var.startswith("STREAMAPP_NEWSAPI_") or var in ("NEWSAPI_KEY", "STREAMAPP_TERMS"):
            monkeypatch.delenv(var)


@pytest.fixture
def server() -> Iterator[NewsApiServer]:
    with NewsApiServer(api_key=KEY) as srv:
        yield srv


def news_settings(server: NewsApiServer, state_dir: Path, **overrides: Any) -> NewsApiSettings:
    values: dict[str, Any] = {
        "api_key": KEY,
        "base_url": server.url,
        "state_dir": state_dir,
        "query": "climate",
        "page_size": 10,
        "max_pages": 5,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "interval": 0.1,
    }
    values.update(overrides)
    return NewsApiSettings(**values)


def articles(n: int, start: int = 0, newest: datetime | None = None) -> list[dict[str, Any]]:
    """Every third article has null author/description/content/image, as NewsAPI's often do."""
    newest = newest or datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    return [
        make_article(i, published=newest - timedelta(minutes=i - start), nulls=i % 3 == 0)
        for i in range(start, start + n)
    ]


async def read_topic(ns: Namespace, expected: int, max_bytes: int) -> dict[str, NewsArticle]:
    """The news topic as {key: decoded article}; fails on duplicate keys or bad records."""
    messages = await consume_all(ns.cfg.kafka_bootstrap, ns.news_topic, expected, within=20)
    keys = [m.key.decode() for m in messages]
    assert len(keys) == len(set(keys)), "an article was sent twice"
    out: dict[str, NewsArticle] = {}
    for m in messages:
        record = decode(m.value, NewsArticle, max_bytes=max_bytes)
        assert isinstance(record, NewsArticle), record
        assert record.id == m.key.decode() == article_id(record.url)
        out[record.id] = record
    return out


async def test_pages_reach_the_topic_once_each_and_restarts_send_no_duplicates(
    server: NewsApiServer,
    kafka_out: KafkaOutput,
    namespace: Namespace,
    app_settings: Settings,
    tmp_path: Path,
) -> None:
    first = articles(25)
    server.articles = [*first, removed_article()]  # 26 results: pages of 10, 10 and 6
    settings = news_settings(server, tmp_path / "state", language="en")
    source = NewsApiSource(settings)
    try:
        await source.run(kafka_out, once=True)
    finally:
        source.close()

    assert server.pages() == [1, 2, 3]
    for req in server.requests:
        # newsapi-python sends the key in the Authorization header, never in the URL.
        assert req.auth == "authorization" and "apiKey" not in req.params
        assert req.params["q"] == "climate" and req.params["pageSize"] == "10"
        assert req.params["sortBy"] == "publishedAt" and req.params["language"] == "en"
    assert source.counters()["sent"] == 25
    assert source.skipped == 1  # the "[Removed]" placeholder
    assert source.duplicates == 0 and source.polled == 1

    on_topic = await read_topic(namespace, 25, app_settings.max_message_bytes)
    by_url = {a["url"]: a for a in first}
    assert set(on_topic) == {article_id(url) for url in by_url}
    for record in on_topic.values():
        raw = by_url[record.url]
        assert record.title == raw["title"] and record.source == "newsapi"
        assert record.source_id == "bbc-news" and record.source_name == "BBC News"
        assert record.lang == "en"
        # Nulls stay nulls (not "None"), and the rest comes through unchanged.
        assert record.author == raw["author"]
        assert record.description == raw["description"]
        assert record.content == raw["content"]
    assert sum(r.author is None for r in on_topic.values()) == 9

    state = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    assert set(state["seen"]) == set(on_topic)

    # Second poll: three newer articles; page 1 has them, page 2 is all known, so it stops.
    newer = articles(3, start=100, newest=datetime(2026, 11, 28, 13, 0, tzinfo=UTC))
    server.articles.extend(newer)
    source = NewsApiSource(settings)  # a restart: same state dir, fresh process state
    try:
        await source.run(kafka_out, once=True)
        assert server.pages()[3:] == [1, 2]
        assert source.sent == 3 and source.duplicates == 17

        # The same instance again, reading every page: all known, nothing sent.
        source.settings = news_settings(
            server, tmp_path / "state", language="en", stop_at_known_page=False
        )
        await source.run(kafka_out, once=True)
        assert server.pages()[5:] == [1, 2, 3]
        assert source.sent == 3 and source.duplicates == 17 + 28 and source.polled == 2
    finally:
        source.close()

    on_topic = await read_topic(namespace, 28, app_settings.max_message_bytes)
    assert set(on_topic) == {article_id(a["url"]) for a in first + newer}


async def test_rate_limited_backs_off_then_succeeds(
    server: NewsApiServer,
    kafka_out: KafkaOutput,
    namespace: Namespace,
    app_settings: Settings,
    tmp_path: Path,
) -> None:
    server.articles = articles(5)
    server.fail_next("rateLimited")
    source = NewsApiSource(news_settings(server, tmp_path / "state", backoff_initial=0.3))
    started = time.monotonic()
    try:
        await source.run(kafka_out, once=True)
    finally:
        source.close()
    assert time.monotonic() - started >= 0.3  # it waited before asking again
    assert server.pages() == [1, 1]
    assert source.retries == 1 and source.sent == 5
    on_topic = await read_topic(namespace, 5, app_settings.max_message_bytes)
    assert set(on_topic) == {article_id(a["url"]) for a in server.articles}


async def test_lasting_errors_give_up_the_poll_not_the_source(
    server: NewsApiServer, tmp_path: Path
) -> None:
    server.articles = articles(5)
    server.fail_next("rateLimited", times=2)
    server.fail_next("unexpectedError")  # HTTP 500
    settings = news_settings(server, tmp_path / "state", max_retries=2, backoff_initial=0.05)
    source = NewsApiSource(settings)
    out = ListOutput()
    started = time.monotonic()
    await source.poll(out)  # what the long-running source does at each interval
    # Doubling backoff: 0.05 + 0.1 between the three attempts.
    assert time.monotonic() - started >= 0.15
    assert server.pages() == [1, 1, 1] and out.records == [] and source.polled == 1
    assert source.failure is not None and "after 2 retries" in source.failure

    await source.run(out, once=True)  # the next poll works
    source.close()
    assert len(out.records) == 5


async def test_invalid_key_stops_with_a_message_naming_newsapi_key(
    server: NewsApiServer, tmp_path: Path
) -> None:
    server.articles = articles(5)
    source = NewsApiSource(news_settings(server, tmp_path / "state", api_key="wrong-key-42"))
    with pytest.raises(SourceError) as err:
        await source.run(ListOutput(), once=True)
    source.close()
    message = str(err.value)
    assert "NEWSAPI_KEY" in message and "apiKeyInvalid" in message
    assert "wrong-key-42" not in message
    assert len(server.requests) == 1  # no retrying a key that cannot work


async def test_key_disabled_mid_poll_keeps_what_was_sent(
    server: NewsApiServer, tmp_path: Path
) -> None:
    server.articles = articles(25)
    server.fail_next("apiKeyDisabled", after=1)
    source = NewsApiSource(news_settings(server, tmp_path / "state"))
    out = ListOutput()
    with pytest.raises(SourceError, match="NEWSAPI_KEY"):
        await source.run(out, once=True)
    source.close()
    assert len(out.records) == 10
    # Page 1 was sent, so a restart must not send it again.
    state = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    assert set(state["seen"]) == {r.id for r in out.records}


def test_missing_key_names_newsapi_key(
    server: NewsApiServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SourceError, match="set NEWSAPI_KEY"):
        NewsApiSource(news_settings(server, tmp_path, api_key=None))
    # The CLI: same message on stderr, exit code 2, before touching Kafka.
    monkeypatch.setenv("STREAMAPP_NEWSAPI_QUERY", "climate")
    monkeypatch.setenv("STREAMAPP_NEWSAPI_STATE_DIR", str(tmp_path))
    assert main(["--once"]) == 2
    assert "set NEWSAPI_KEY" in capsys.readouterr().err
    # A bad setting: exit code 2 and the variable to fix.
    monkeypatch.setenv("NEWSAPI_KEY", KEY)
    monkeypatch.setenv("STREAMAPP_NEWSAPI_PAGE_SIZE", "500")
    assert main(["--once"]) == 2
    err = capsys.readouterr().err
    assert "STREAMAPP_NEWSAPI_PAGE_SIZE" in err and KEY not in err


async def test_maximum_results_reached_ends_paging_without_error(tmp_path: Path) -> None:
    # A developer key: 20 results per query here (100 on the real API).
    with NewsApiServer(articles(50), api_key=KEY, max_results=20) as server:
        settings = news_settings(server, tmp_path / "state", stop_at_known_page=False)
        source = NewsApiSource(settings)
        out = ListOutput()
        await source.run(out, once=True)
        assert server.pages() == [1, 2, 3]  # page 3 answered 426
        assert len(out.records) == 20 and source.polled == 1

        # Learnt: the next poll does not spend a request on the 426 again.
        await source.run(out, once=True)
        source.close()
        assert server.pages()[3:] == [1, 2]
        assert len(out.records) == 20 and source.polled == 2


async def test_daily_request_budget_survives_a_restart(
    server: NewsApiServer, tmp_path: Path
) -> None:
    server.articles = articles(30)
    settings = news_settings(server, tmp_path / "state", daily_request_limit=2)
    source = NewsApiSource(settings)
    out = ListOutput()
    # A one-off poll that could not finish says so (`--once` exits non-zero).
    with pytest.raises(SourceError, match="daily request budget"):
        await source.run(out, once=True)
    source.close()
    assert server.pages() == [1, 2] and len(out.records) == 20

    again = NewsApiSource(settings)
    with pytest.raises(SourceError, match="daily request budget"):
        await again.run(out, once=True)
    again.close()
    assert len(server.requests) == 2  # no budget left for today, even after a restart
    assert again.budget.next_free() > 86_000


async def test_top_headlines(server: NewsApiServer, tmp_path: Path) -> None:
    server.articles = articles(4)
    settings = news_settings(
        server, tmp_path / "state", endpoint="top-headlines", query=None, country="us"
    )
    source = NewsApiSource(settings)
    out = ListOutput()
    await source.run(out, once=True)
    source.close()
    (req,) = server.requests
    assert req.path == "/v2/top-headlines" and req.params["country"] == "us"
    # newsapi-python defaults top-headlines to English; an unset language must stay unset.
    assert "language" not in req.params
    assert len(out.records) == 4 and all(r.lang is None for r in out.records)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEWSAPI_KEY", KEY)
    monkeypatch.setenv("STREAMAPP_NEWSAPI_QUERY", "election")
    monkeypatch.setenv("STREAMAPP_NEWSAPI_DOMAINS", "bbc.co.uk, reuters.com")
    monkeypatch.setenv("STREAMAPP_NEWSAPI_STATE_DIR", str(tmp_path))
    s = NewsApiSettings()
    assert s.api_key is not None and s.api_key.get_secret_value() == KEY
    assert KEY not in repr(s)
    assert s.domains == "bbc.co.uk,reuters.com" and s.state_dir == tmp_path
    # Defaults fit the free plan: 100 results, 96 requests a day.
    assert s.page_size == 100 and s.max_pages == 1 and s.interval == 900

    monkeypatch.delenv("STREAMAPP_NEWSAPI_QUERY")
    monkeypatch.delenv("STREAMAPP_NEWSAPI_DOMAINS")
    with pytest.raises(ValidationError, match="STREAMAPP_NEWSAPI_QUERY"):
        NewsApiSettings()
    monkeypatch.setenv("STREAMAPP_NEWSAPI_QUERY", "election")
    monkeypatch.setenv("STREAMAPP_NEWSAPI_PAGE_SIZE", "101")
    with pytest.raises(ValidationError, match="page_size"):
        NewsApiSettings()


async def test_without_a_query_the_tracked_terms_are_asked_for(
    server: NewsApiServer, kafka_out: KafkaOutput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMAPP_TERMS", "climate,net zero")
    # These say "climate"; the last says neither term, so NewsAPI does not return it.
    server.articles = [*articles(3), make_article(99, topic="markets")]
    source = NewsApiSource(news_settings(server, tmp_path / "state", query=None))
    try:
        await source.run(kafka_out, once=True)
    finally:
        source.close()
    assert [r.params["q"] for r in server.requests] == ['"climate" OR "net zero"']
    assert source.sent == 3
    # Too many terms for NewsAPI's 500-character `q`: refused at start, naming what to set.
    monkeypatch.setenv("STREAMAPP_TERMS", ",".join(f"term number {i}" for i in range(40)))
    with pytest.raises(ValidationError, match="STREAMAPP_NEWSAPI_QUERY"):
        news_settings(server, tmp_path / "state", query=None)


def test_the_local_server_reads_newsapis_query_syntax() -> None:
    text = "Net zero by 2050: the climate plan, and markets"
    assert query_matches('"net zero"', text) and not query_matches('"zero net"', text)
    assert query_matches("climate AND markets", text) and query_matches("climate markets", text)
    assert query_matches("bitcoin OR climate", text) and not query_matches("bitcoin OR ai", text)
    assert not query_matches("climate -markets", text)
    assert not query_matches("climate NOT markets", text)
    assert query_matches("+climate +plan", text) and not query_matches("clim", text)


def test_seen_ids_are_bounded_and_keep_the_recently_seen() -> None:
    seen = SeenIds(3, ["a", "b", "c"])
    seen.touch("a")  # still in the results: must outlive "b"
    seen.add("d")
    assert len(seen) == 3 and "b" not in seen and {"a", "c", "d"} <= set(seen.ids())


def test_cli_once_sends_to_the_news_topic(
    server: NewsApiServer,
    namespace: Namespace,
    app_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server.articles = articles(6)
    for name, value in {
        **namespace.env,
        "NEWSAPI_KEY": KEY,
        "STREAMAPP_NEWSAPI_BASE_URL": server.url,
        "STREAMAPP_NEWSAPI_QUERY": "climate",
        "STREAMAPP_NEWSAPI_STATE_DIR": str(tmp_path / "cli-state"),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["--once"]) == 0
    on_topic = asyncio.run(read_topic(namespace, 6, app_settings.max_message_bytes))
    assert set(on_topic) == {article_id(a["url"]) for a in server.articles}
    assert server.requests[0].params["pageSize"] == "100"


def test_cli_once_fails_after_bounded_retries(
    server: NewsApiServer,
    namespace: Namespace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.fail_next("unexpectedError", times=10)
    for name, value in {
        **namespace.env,
        "NEWSAPI_KEY": KEY,
        "STREAMAPP_NEWSAPI_BASE_URL": server.url,
        "STREAMAPP_NEWSAPI_QUERY": "climate",
        "STREAMAPP_NEWSAPI_STATE_DIR": str(tmp_path / "cli-state"),
        "STREAMAPP_NEWSAPI_MAX_RETRIES": "2",
        "STREAMAPP_NEWSAPI_BACKOFF_INITIAL": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["--once"]) == 2
    err = capsys.readouterr().err
    assert "newsapi source stopped: the poll failed: page 1 still failing after 2 retries" in err
    assert "next poll" not in err
    assert len(server.requests) == 3
