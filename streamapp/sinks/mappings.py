"""Explicit Elasticsearch mappings for the classified documents.

`dynamic: strict` makes a field the code does not declare here a loud, per-document
rejection (dead-lettered with the reason) instead of silently guessed types that later
break Kibana visualisations.
"""

from __future__ import annotations

from typing import Any

from streamapp.models import (
    POSITION_FIELDS,
    ClassifiedArticle,
    ClassifiedTweet,
    document_fields,
)

__all__ = ["NEWS_PROPERTIES", "POSITION_FIELDS", "TWEET_PROPERTIES", "index_template"]

MAPPING_VERSION = 1

_KEYWORD = {"type": "keyword", "ignore_above": 1024}

#: The Elasticsearch type of every document field, by name. The fields themselves are not
#: listed here: they come from the classified records (`models.document_fields`), so a field
#: added to a record without a type here fails at import, not per document in production.
FIELD_TYPES: dict[str, Any] = {
    # -- analysis, shared by every kind of document
    "id": {"type": "keyword"},
    "source": {"type": "keyword"},
    "lang": {"type": "keyword"},
    "sentiment_label": {"type": "keyword"},
    "sentiment_score": {"type": "float"},
    "hate": {"type": "boolean"},
    "hate_score": {"type": "float"},
    "hate_categories": {"type": "keyword"},
    "hate_targets": _KEYWORD,
    "fallback_reason": _KEYWORD,
    "lang_detected": {"type": "boolean"},
    "terms": {"type": "keyword"},
    "classifier": {"type": "keyword"},
    "classifier_version": {"type": "keyword"},
    "processed_at": {"type": "date"},
    # Where the message was read from: tells a redelivery (same position) from a duplicate
    # message (same id, another position), and traces a document back to Kafka.
    "kafka_topic": {"type": "keyword"},
    "kafka_partition": {"type": "integer"},
    "kafka_offset": {"type": "long"},
    # -- posts
    "text": {"type": "text"},
    "created_at": {"type": "date"},
    "author_id": {"type": "keyword"},
    "author_username": _KEYWORD,
    "rule_tags": {"type": "keyword"},
    # -- news articles
    "url": {"type": "keyword", "ignore_above": 4096},
    "title": {"type": "text"},
    "description": {"type": "text"},
    "content": {"type": "text"},
    "author": {"type": "text", "fields": {"keyword": _KEYWORD}},
    "published_at": {"type": "date"},
    "source_id": {"type": "keyword"},
    "source_name": _KEYWORD,
}


def properties_for(model: type[Any]) -> dict[str, Any]:
    """The mapping properties of a classified record's documents: one per field."""
    fields = document_fields(model)
    untyped = [f for f in fields if f not in FIELD_TYPES]
    if untyped:
        raise TypeError(f"{model.__name__} fields without an Elasticsearch type: {untyped}")
    return {name: FIELD_TYPES[name] for name in fields}


TWEET_PROPERTIES: dict[str, Any] = properties_for(ClassifiedTweet)
NEWS_PROPERTIES: dict[str, Any] = properties_for(ClassifiedArticle)


def index_template(alias: str, properties: dict[str, Any], shards: int, replicas: int) -> dict:
    """Composable template for `<alias>-v*`; `_meta` records the mapping version."""
    return {
        "index_patterns": [f"{alias}-v*"],
        "priority": 200,
        "_meta": {"managed_by": "streamapp", "mapping_version": MAPPING_VERSION},
        "template": {
            "settings": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "refresh_interval": "1s",
            },
            "mappings": {
                "dynamic": "strict",
                "_meta": {"mapping_version": MAPPING_VERSION},
                "properties": properties,
            },
        },
    }


def concrete_index(alias: str) -> str:
    """Writes go to the alias; the concrete index carries the mapping version so a future
    mapping change can create `-v2`, reindex and move the alias without downtime."""
    return f"{alias}-v{MAPPING_VERSION}"
