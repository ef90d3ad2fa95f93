"""Typed records on the topics and the classified documents written to Elasticsearch.

Records decode from plain JSON (no Faust `__faust` metadata needed); see `decoding.py` for the
strict checks applied to input before a record is built.
"""

from __future__ import annotations

import hashlib
import typing
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, List, Optional  # noqa: UP035 - Faust reads these annotations

import faust

from streamapp.faust_compat import record_fields


def article_id(url: str) -> str:
    """Stable id for a news article: the same URL always maps to the same document."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:32]


class Tweet(faust.Record, serializer="json", isodates=True):
    """A social post (Twitter/X, Bluesky, replayed files). `source` names the platform."""

    id: str
    text: str
    created_at: datetime
    author_id: Optional[str] = None  # noqa: UP045
    author_username: Optional[str] = None  # noqa: UP045
    lang: Optional[str] = None  # noqa: UP045
    # Tags of the filtered-stream rules that matched (X API `matching_rules[].tag`).
    rule_tags: Optional[List[str]] = None  # noqa: UP006, UP045
    source: str = "twitter"

    def __post_init__(self) -> None:
        # Faust shares a mutable default between instances, so the empty list is made here.
        if self.rule_tags is None:
            self.rule_tags = []

    @property
    def message_id(self) -> str:
        return self.id

    @property
    def timestamp(self) -> datetime:
        return self.created_at

    def classification_text(self) -> str:
        return self.text


class NewsArticle(faust.Record, serializer="json", isodates=True):
    """A news article (NewsAPI shape, flattened). `source_id`/`source_name` name the outlet;
    `source` names the platform it came from, as on Tweet."""

    url: str
    title: str
    published_at: datetime
    id: Optional[str] = None  # noqa: UP045
    description: Optional[str] = None  # noqa: UP045
    author: Optional[str] = None  # noqa: UP045
    content: Optional[str] = None  # noqa: UP045
    source_id: Optional[str] = None  # noqa: UP045
    source_name: Optional[str] = None  # noqa: UP045
    lang: Optional[str] = None  # noqa: UP045
    source: str = "newsapi"

    def __post_init__(self) -> None:
        if not self.id:
            self.id = article_id(self.url)

    @property
    def message_id(self) -> str:
        assert self.id is not None
        return self.id

    @property
    def timestamp(self) -> datetime:
        return self.published_at

    def classification_text(self) -> str:
        # NewsAPI truncates `content` (~200 chars + "[+N chars]"); title and description carry
        # most of the tone, so all three are classified together.
        parts = [self.title, self.description or "", _strip_truncation(self.content or "")]
        return "\n".join(p for p in parts if p)


def newsapi_fields(article: dict[str, Any], *, lang: str | None = None) -> dict[str, Any]:
    """Flatten a NewsAPI article into NewsArticle's field names (values untouched)."""
    src = article.get("source")
    src = src if isinstance(src, dict) else {}
    return {
        "url": article.get("url"),
        "title": article.get("title") or "",
        "published_at": article.get("publishedAt"),
        "description": article.get("description"),
        "author": article.get("author"),
        "content": article.get("content"),
        "source_id": src.get("id"),
        "source_name": src.get("name"),
        "lang": lang,
    }


def _strip_truncation(content: str) -> str:
    marker = content.rfind("[+")
    if marker != -1 and content.endswith("chars]"):
        return content[:marker].rstrip(" .…")
    return content


@dataclass(slots=True)
class Analysis:
    """What a classifier says about one text.

    A dataclass, not a Faust record: it never travels on a topic by itself, and one is made
    for every message (a Faust record took ~8 us to build, this ~1 us).
    """

    sentiment_label: str  # negative | neutral | positive | unclassified
    sentiment_score: float | None  # -1 (negative) .. 1 (positive); None if unclassified
    hate: bool
    hate_score: float | None  # probability-like, 0..1; None if unclassified
    hate_categories: list[str]
    classifier: str
    classifier_version: str
    # Who or what the hate is aimed at, when the backend says (Expert.ai extractions).
    hate_targets: list[str] | None = None
    # Set when the configured backend did not classify this text and the fallback did.
    fallback_reason: str | None = None

    def __post_init__(self) -> None:
        if self.hate_targets is None:
            self.hate_targets = []

    def asdict(self) -> dict[str, Any]:
        """The fields by name (the lists themselves, not copies); `ANALYSIS_FIELDS` in order
        (tested), spelled out because this runs for every message."""
        return {
            "sentiment_label": self.sentiment_label,
            "sentiment_score": self.sentiment_score,
            "hate": self.hate,
            "hate_score": self.hate_score,
            "hate_categories": self.hate_categories,
            "classifier": self.classifier,
            "classifier_version": self.classifier_version,
            "hate_targets": self.hate_targets,
            "fallback_reason": self.fallback_reason,
        }


ANALYSIS_FIELDS = tuple(f.name for f in fields(Analysis))


class ClassifiedTweet(Tweet, serializer="json", isodates=True):
    sentiment_label: str
    sentiment_score: Optional[float]  # noqa: UP045
    hate: bool
    hate_score: Optional[float]  # noqa: UP045
    hate_categories: List[str]  # noqa: UP006
    classifier: str
    classifier_version: str
    processed_at: datetime
    hate_targets: Optional[List[str]] = None  # noqa: UP006, UP045
    fallback_reason: Optional[str] = None  # noqa: UP045
    lang_detected: bool = False
    # The tracked terms (STREAMAPP_TERMS) it matched: see streamapp/terms.py.
    terms: Optional[List[str]] = None  # noqa: UP006, UP045

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hate_targets is None:
            self.hate_targets = []
        if self.terms is None:
            self.terms = []


class ClassifiedArticle(NewsArticle, serializer="json", isodates=True):
    sentiment_label: str
    sentiment_score: Optional[float]  # noqa: UP045
    hate: bool
    hate_score: Optional[float]  # noqa: UP045
    hate_categories: List[str]  # noqa: UP006
    classifier: str
    classifier_version: str
    processed_at: datetime
    hate_targets: Optional[List[str]] = None  # noqa: UP006, UP045
    fallback_reason: Optional[str] = None  # noqa: UP045
    lang_detected: bool = False
    # The tracked terms (STREAMAPP_TERMS) it matched: see streamapp/terms.py.
    terms: Optional[List[str]] = None  # noqa: UP006, UP045

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hate_targets is None:
            self.hate_targets = []
        if self.terms is None:
            self.terms = []


InputRecord = Tweet | NewsArticle
ClassifiedRecord = ClassifiedTweet | ClassifiedArticle


def document(
    record: InputRecord,
    analysis: Analysis,
    now: datetime,
    *,
    lang: str | None = None,
    lang_detected: bool = False,
    terms: list[str] | None = None,
) -> dict[str, Any]:
    """The Elasticsearch `_source` of `record` classified as `analysis` at `now`: the fields
    of its `ClassifiedTweet` / `ClassifiedArticle`, JSON types only, dates in ISO 8601 UTC.

    Built as a dict, not through the classified record: building one (and reading it back)
    per message was ~6% of a loaded worker's CPU. Tests check that it is that record's data.
    """
    doc: dict[str, Any] = {
        **record.asdict(),
        **analysis.asdict(),
        "processed_at": _iso_utc(now),  # one batch shares its `now`: formatted once
        "lang": lang if lang is not None else record.lang,
        "lang_detected": lang_detected,
        "terms": terms or [],
    }
    for key in _date_fields(type(record)):
        value = doc[key]
        if isinstance(value, datetime):
            doc[key] = _as_utc(value).isoformat()
    return doc


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@lru_cache(maxsize=16)
def _iso_utc(value: datetime) -> str:
    return _as_utc(value).isoformat()


_DATE_FIELDS: dict[type, tuple[str, ...]] = {}


def _date_fields(model: type) -> tuple[str, ...]:
    """The fields of a record declared as dates (worked out once per record class)."""
    names = _DATE_FIELDS.get(model)
    if names is None:
        names = _DATE_FIELDS[model] = tuple(
            name
            for name, annotation in record_fields(model).items()
            if annotation is datetime or datetime in typing.get_args(annotation)
        )
    return names


#: Where a document was read from, added to it by the pipeline (see sinks/mappings.py).
POSITION_FIELDS = ("kafka_topic", "kafka_partition", "kafka_offset")


def document_fields(model: type[ClassifiedRecord]) -> list[str]:
    """Every field of the documents made from `model`: the one declaration the index
    mappings are derived from and the dashboard and Kibana objects are checked against."""
    return [*record_fields(model), *POSITION_FIELDS]


class DeadLetter(faust.Record, serializer="json"):
    """A message that could not be processed, with why, and its original bytes (base64)."""

    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    key: Optional[str]  # noqa: UP045
    value_b64: str
    size: int
    failed_at: str
    stage: str  # decode | index | process
    # True when `value_b64` (or `key`) holds only the start of the original: a dead letter
    # must fit the producer's request size; `size` is always the original's.
    truncated: bool = False
