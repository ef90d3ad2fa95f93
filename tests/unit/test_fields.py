"""One declaration of the document fields: records -> documents -> mappings -> dashboard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Optional

import pytest

from streamapp.dashboard import RECENT_FIELDS
from streamapp.models import (
    POSITION_FIELDS,
    Analysis,
    ClassifiedTweet,
    NewsArticle,
    Tweet,
    classify_record,
    to_document,
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
    doc = to_document(classify_record(record, ANALYSIS, NOW))
    assert set(doc) | set(POSITION_FIELDS) == set(properties)


def test_the_dashboard_asks_only_for_mapped_fields() -> None:
    mapped = set(TWEET_PROPERTIES) | set(NEWS_PROPERTIES)
    assert set(RECENT_FIELDS) <= mapped, set(RECENT_FIELDS) - mapped


def test_a_record_field_without_a_mapping_type_fails_loudly() -> None:
    class Extended(ClassifiedTweet, serializer="json"):
        mood: Optional[str] = None  # noqa: UP045

    with pytest.raises(TypeError, match="mood"):
        properties_for(Extended)
