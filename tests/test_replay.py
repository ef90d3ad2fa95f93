"""File replay (JSONL and CSV) into the real Kafka: bad lines reported by number, never silent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import ListOutput, Namespace, consume_all

from streamapp.decoding import decode
from streamapp.models import NewsArticle, Tweet, article_id
from streamapp.settings import load_settings
from streamapp.sources.replay import ReplaySource, replay


@pytest.fixture
def settings(namespace: Namespace, monkeypatch: pytest.MonkeyPatch):
    for key, value in namespace.env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


async def test_jsonl_and_csv_replay_with_bad_lines(
    namespace: Namespace, settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tweets = tmp_path / "export.jsonl"
    tweets.write_text(
        "\n".join(
            [
                json.dumps({"id": "t1", "text": "hello", "created_at": "2026-11-28T10:00:00Z"}),
                "{broken",
                json.dumps(["not", "an", "object"]),
                "",
                json.dumps({"text": "no id", "created_at": "2026-11-28T10:00:00Z"}),
                json.dumps({"id": "n1", "text": 42, "created_at": "2026-11-28T10:00:00Z"}),
                json.dumps({"id": "n2", "created_at": "2026-11-28T10:00:00Z"}),
                json.dumps(
                    {
                        "id": "t2",
                        "text": "bye",
                        "created_at": "2026-11-28T10:01:00Z",
                        "rule_tags": ["x"],
                        "source": "replay",
                    }
                ),
            ]
        )
        + "\n"
    )
    csv_file = tmp_path / "more_tweets.csv"
    csv_file.write_text(
        "id,text,created_at,author_username,rule_tags,lang\n"
        't3,"a, quoted text",2026-11-28T10:02:00Z,carol,a;b,en\n'
        "t4,short,2026-11-28T10:03:00Z,,,\n"
        "t5,too,many,cells,here,x,y\n"
    )
    news = tmp_path / "news.jsonl"
    news.write_text(
        json.dumps(
            {
                "source": {"id": None, "name": "Paper"},
                "author": None,
                "title": "T",
                "description": None,
                "url": "https://example.org/a",
                "urlToImage": None,
                "publishedAt": "2026-11-28T09:00:00Z",
                "content": None,
            }
        )
        + "\n"
    )

    result = await replay([tweets, csv_file, news], settings, progress=True)
    assert (result.sent, result.skipped) == (5, 6)
    err = capsys.readouterr().err
    for where in (f"{tweets}:2:", f"{tweets}:3:", f"{tweets}:5:", f"{csv_file}:4:"):
        assert where in err, where
    # Checked with the worker's own decoder: what it would dead-letter is not "sent".
    assert f"{tweets}:6: skipped, schema_violation: Tweet.text must be a string" in err
    assert f"{tweets}:7: skipped, schema_violation: Tweet.text is required" in err
    assert "sent 5 messages" in err and "skipped 6 bad lines" in err
    # Every report is a line of its own, never run into the progress bar.
    for line in err.split("\n"):
        assert line.count("skipped") <= 1, line
        if "skipped," in line:
            assert line.split("\r")[-1].startswith(str(tmp_path)), repr(line)

    records = await consume_all(namespace.cfg.kafka_bootstrap, namespace.tweets_topic, 4)
    decoded = {r.key.decode(): decode(r.value, Tweet, max_bytes=10_000) for r in records}
    assert set(decoded) == {"t1", "t2", "t3", "t4"}
    t3 = decoded["t3"]
    assert isinstance(t3, Tweet)
    assert (
        t3.text == "a, quoted text" and t3.rule_tags == ["a", "b"] and t3.author_username == "carol"
    )
    t4 = decoded["t4"]
    assert isinstance(t4, Tweet) and t4.lang is None and t4.author_username is None

    articles = await consume_all(namespace.cfg.kafka_bootstrap, namespace.news_topic, 1)
    assert [r.key.decode() for r in articles] == [article_id("https://example.org/a")]
    assert isinstance(decode(articles[0].value, NewsArticle, max_bytes=10_000), NewsArticle)


async def test_loop_sends_new_messages_each_pass_until_stopped(tmp_path: Path) -> None:
    tweets = tmp_path / "tweets.jsonl"
    tweets.write_text(
        "\n".join(
            json.dumps({"id": f"t{i}", "text": "hi", "created_at": "2020-01-01T00:00:00Z"})
            for i in (1, 2)
        )
        + "\n"
    )
    news = tmp_path / "news.jsonl"
    news.write_text(
        json.dumps(
            {"url": "https://example.org/a", "title": "T", "publishedAt": "2020-01-01T00:00:00Z"}
        )
        + "\n"
    )
    source = ReplaySource([tweets, news], rate=2_000, restamp=True, loop=True, progress=False)

    class StopAfterNine(ListOutput):
        async def send_json(self, kind: str, key: str, obj: dict[str, Any]) -> None:
            await super().send_json(kind, key, obj)
            if len(self.raw) == 9:
                source.stop()  # as SIGTERM would

    out = StopAfterNine()
    await asyncio.wait_for(source.run(out), timeout=10)
    assert len(out.raw) == 9
    keys = [key for _, key, _ in out.raw[:9]]
    assert (
        keys[:2] == ["t1", "t2"] and keys[3:5] == ["t1~2", "t2~2"] and keys[6:8] == ["t1~3", "t2~3"]
    )
    # Articles are identified by URL: each pass gets a URL (so an id) of its own.
    news_keys = {keys[2], keys[5], keys[8]}
    assert len(news_keys) == 3 and keys[2] == article_id("https://example.org/a")
    assert all(obj.get("created_at", obj.get("publishedAt", "")) > "2026" for _, _, obj in out.raw)
    assert out.flushes == 1
