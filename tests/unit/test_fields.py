"""One declaration of the document fields: records -> documents -> mappings -> dashboard."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Optional

import pytest

from streamapp.dashboard import RECENT_FIELDS
from streamapp.models import (
    ANALYSIS_FIELDS,
    POSITION_FIELDS,
    Analysis,
    ClassifiedArticle,
    ClassifiedTweet,
    NewsArticle,
    Tweet,
    document,
)
from streamapp.sinks.mappings import NEWS_PROPERTIES, TWEET_PROPERTIES, properties_for

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ANALYSIS = Analysis(
    sentiment_label="neutral",
    sentiment_score=0.0,
    hate=False,
    hate_score=0.1,
    hate_categories=[],
    classifier="offline",
    classifier_version="test",
)


@pytest.mark.parametrize(
    ("record", "properties"),
    [
        (Tweet(id="1", text="hi", created_at=NOW), TWEET_PROPERTIES),
        (NewsArticle(url="https://example.org/a", title="A", published_at=NOW), NEWS_PROPERTIES),
    ],
)
def test_every_document_field_is_in_the_strict_mapping_and_nothing_else(
    record: Any, properties: dict[str, Any]
) -> None:
    doc = document(record, ANALYSIS, NOW)
    assert set(doc) | set(POSITION_FIELDS) == set(properties)


@pytest.mark.parametrize(
    ("record", "model"),
    [
        (
            Tweet(id="1", text="hi", created_at=datetime(2026, 11, 30, 8), rule_tags=["x"]),
            ClassifiedTweet,
        ),
        (
            NewsArticle(url="https://example.org/a", title="A", published_at=NOW, author="B"),
            ClassifiedArticle,
        ),
    ],
)
def test_a_document_is_the_classified_records_data_in_json_types(record: Any, model: Any) -> None:
    analysis = Analysis(
        sentiment_label="negative",
        sentiment_score=-0.5,
        hate=True,
        hate_score=0.9,
        hate_categories=["offensive"],
        classifier="offline",
        classifier_version="test",
        fallback_reason="timeout",
    )
    doc = document(record, analysis, NOW, lang="de", lang_detected=True, terms=["a b"])
    classified = model(
        **{
            **record.asdict(),
            **analysis.asdict(),
            "processed_at": NOW,
            "lang": "de",
            "lang_detected": True,
            "terms": ["a b"],
        }
    )
    expected = {
        k: (v.replace(tzinfo=v.tzinfo or UTC).isoformat() if isinstance(v, datetime) else v)
        for k, v in classified.asdict().items()
    }
    assert doc == expected
    # JSON types only: what Elasticsearch and the dashboard read back.
    assert json.loads(json.dumps(doc)) == doc
    timestamp = "created_at" if model is ClassifiedTweet else "published_at"
    assert datetime.fromisoformat(doc[timestamp]).tzinfo is not None
    # The record's own language when the pipeline gives none; lists never null.
    plain = document(record, ANALYSIS, NOW)
    assert plain["lang"] == record.lang
    assert plain["hate_targets"] == [] and plain["terms"] == []


def test_the_dashboard_asks_only_for_mapped_fields() -> None:
    mapped = set(TWEET_PROPERTIES) | set(NEWS_PROPERTIES)
    assert set(RECENT_FIELDS) <= mapped, set(RECENT_FIELDS) - mapped


def test_a_record_field_without_a_mapping_type_fails_loudly() -> None:
    class Extended(ClassifiedTweet, serializer="json"):
        mood: Optional[str] = None  # noqa: UP045

    with pytest.raises(TypeError, match="mood"):
        properties_for(Extended)


def test_analysis_asdict_names_every_field_in_order() -> None:
    assert list(ANALYSIS.asdict()) == list(ANALYSIS_FIELDS)
    assert ANALYSIS.asdict() == {name: getattr(ANALYSIS, name) for name in ANALYSIS_FIELDS}
