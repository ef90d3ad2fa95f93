"""`/recent/` as a search, its queries run against the real Elasticsearch and mapping."""

from __future__ import annotations

from typing import Any

import pytest

from streamapp.dashboard import parse_recent_query, recent_search
from streamapp.settings import Settings
from streamapp.sinks.elasticsearch import ElasticsearchSink


def doc(i: int, text: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"d{i}",
        "source": "twitter",
        "text": text,
        "lang": "en",
        "sentiment_label": "neutral",
        "hate": False,
        "hate_score": 0.1,
        "rule_tags": [],
        # One minute apart, newest last.
        "processed_at": f"2026-12-01T10:{i:02d}:00+00:00",
        **fields,
    }


DOCS = [
    doc(0, "the election results are in"),
    doc(1, "Election night was awful", sentiment_label="negative", rule_tags=["election"]),
    doc(2, "les élections", lang="fr", source="bluesky", rule_tags=["election"]),
    doc(3, "vermin, all of them", hate=True, hate_score=0.9, rule_tags=["migration"]),
    doc(4, "a quiet day at the beach", sentiment_label="positive"),
    doc(5, "election fraud claims again", sentiment_label="negative", rule_tags=["election"]),
    # Matched by the worker's tracked terms (no rule at the source, a NewsAPI-like document).
    doc(6, "the Election is near", source="newsapi", terms=["election"]),
]


@pytest.mark.integration
async def test_search_by_text_term_language_sentiment_time_and_page(
    app_settings: Settings, es_sink: ElasticsearchSink
) -> None:
    settings, client = app_settings, es_sink.client
    aliases = [settings.tweets_index, settings.news_index]
    assert (await es_sink.write(settings.tweets_index, [(d["id"], d) for d in DOCS])).rejected == []
    await client.indices.refresh(index=settings.tweets_index)

    async def ids(**query: str) -> list[str]:
        body = recent_search(parse_recent_query(query), aliases)
        resp = await client.search(**body)
        assert resp["timed_out"] is False
        return [hit["_source"]["id"] for hit in resp["hits"]["hits"]]

    assert await ids() == ["d6", "d5", "d4", "d3", "d2", "d1", "d0"]  # newest first
    # Words, case-insensitively, all of them (not "élections": another word).
    assert await ids(q="Election") == ["d6", "d5", "d1", "d0"]
    assert await ids(q="election night") == ["d1"]
    assert await ids(q='"unbalanced quote') == []  # user syntax never fails
    # A rule's tag or a tracked term the worker matched.
    assert await ids(term="election") == ["d6", "d5", "d2", "d1"]
    assert await ids(term="election", lang="fr") == ["d2"]
    assert await ids(q="election", sentiment="negative") == ["d5", "d1"]
    assert await ids(hate="true") == ["d3"]
    assert await ids(source="bluesky") == ["d2"]
    # [from, to): 10:01 included, 10:04 not.
    assert await ids(**{"from": "2026-12-01T10:01:00Z", "to": "2026-12-01T10:04:00Z"}) == [
        "d3",
        "d2",
        "d1",
    ]
    assert await ids(limit="2") == ["d6", "d5"]
    assert await ids(limit="2", page="2") == ["d4", "d3"]
    assert await ids(limit="2", page="5") == []
    body = recent_search(parse_recent_query({"q": "election"}), aliases)
    total = (await client.search(**body))["hits"]["total"]
    assert total == {"value": 4, "relation": "eq"}
