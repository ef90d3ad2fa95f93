"""Raw Kafka values -> typed records, or a dead-letter reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from streamapp.decoding import DecodeFailure, decode
from streamapp.models import NewsArticle, Tweet

TWEET = {
    "id": "1790000000000000001",
    "text": "what a lovely morning",
    "created_at": "2026-11-28T10:00:00Z",
    "author_id": "42",
    "author_username": "alice",
    "lang": "en",
    "rule_tags": ["weather"],
    "source": "twitter",
}


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_plain_json_without_faust_metadata_decodes_to_a_tweet() -> None:
    tweet = decode(raw(TWEET), Tweet, max_bytes=10_000)
    assert isinstance(tweet, Tweet)
    assert tweet.id == TWEET["id"] and tweet.author_username == "alice"
    assert tweet.created_at == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert tweet.rule_tags == ["weather"]


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        # Bluesky's createdAt carries milliseconds; Faust's own parser made .789 789 us.
        ("2026-11-28T10:00:00.789Z", datetime(2026, 11, 28, 10, 0, 0, 789_000, tzinfo=UTC)),
        ("2026-11-28T12:00:00.5+02:00", datetime(2026, 11, 28, 10, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-11-28T10:00:00.123456789Z", datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_fractions_of_a_second_are_read_as_fractions(created_at: str, expected: datetime) -> None:
    tweet = decode(raw({**TWEET, "created_at": created_at}), Tweet, max_bytes=10_000)
    assert isinstance(tweet, Tweet)
    assert tweet.created_at == expected


def test_optional_fields_may_be_absent_or_null() -> None:
    minimal = {"id": "7", "text": "hi", "created_at": "2026-11-28T10:00:00+00:00", "lang": None}
    tweet = decode(raw(minimal), Tweet, max_bytes=10_000)
    assert isinstance(tweet, Tweet)
    assert tweet.lang is None and tweet.rule_tags == [] and tweet.source == "twitter"
    other = decode(raw(minimal), Tweet, max_bytes=10_000)
    assert isinstance(other, Tweet)
    assert other.rule_tags is not tweet.rule_tags, "no shared mutable default"


def test_newsapi_article_with_nulls_decodes_with_a_stable_id_from_the_url() -> None:
    article = {
        "source": {"id": None, "name": "Example Times"},
        "author": None,
        "title": "Council approves the new park",
        "description": None,
        "url": "https://example.org/news/park",
        "urlToImage": None,
        "publishedAt": "2026-11-28T09:30:00Z",
        "content": None,
    }
    first = decode(raw(article), NewsArticle, max_bytes=10_000)
    second = decode(raw(article), NewsArticle, max_bytes=10_000)
    assert isinstance(first, NewsArticle) and isinstance(second, NewsArticle)
    assert first.message_id == second.message_id and len(first.message_id) == 32
    assert first.description is None and first.author is None and first.content is None
    assert first.source_name == "Example Times"


@pytest.mark.parametrize(
    ("value", "reason", "mentions"),
    [
        (b"{not json", "invalid_json", "JSON"),
        (b"\xff\xfe", "invalid_json", "UTF-8"),
        (b"[1, 2]", "invalid_json", "object"),
        (None, "invalid_json", "tombstone"),
        (raw({**TWEET, "text": None}), "schema_violation", "text"),
        (raw({k: v for k, v in TWEET.items() if k != "id"}), "schema_violation", "id"),
        (raw({**TWEET, "rule_tags": "x"}), "schema_violation", "rule_tags"),
        (raw({**TWEET, "created_at": "yesterday"}), "schema_violation", "created_at"),
        (raw({**TWEET, "source": "Not A Source!"}), "schema_violation", "source"),
        (raw({**TWEET, "text": "x" * 500}), "oversized", "limit"),
    ],
)
def test_bad_input_gets_a_reason_and_a_message(
    value: bytes | None, reason: str, mentions: str
) -> None:
    result = decode(value, Tweet, max_bytes=400)
    assert isinstance(result, DecodeFailure)
    assert result.reason == reason
    assert mentions in result.error
