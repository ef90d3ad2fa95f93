"""One batch through the pipeline with in-memory parts: what is indexed, dead-lettered and
counted, including the retry paths. The same pipeline runs on the real Kafka and
Elasticsearch in tests/test_pipeline_integration.py."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from streamapp.classifiers.base import Classifier, Langs
from streamapp.classifiers.routing import Router
from streamapp.counting import Count, MemoryCountStore, apply_counts, summarise
from streamapp.models import Analysis, DeadLetter, Tweet
from streamapp.pipeline import Pipeline
from streamapp.settings import load_settings
from streamapp.sinks.base import Rejection, StoredPosition


class KeywordClassifier(Classifier):
    name = "keyword"
    version = "1"

    async def classify(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        return [
            Analysis(
                sentiment_label="negative" if "hate" in t else "neutral",
                sentiment_score=0.0,
                hate="hate" in t,
                hate_score=1.0 if "hate" in t else 0.0,
                hate_categories=["hate_speech"] if "hate" in t else [],
                classifier=self.name,
                classifier_version=self.version,
            )
            for t in texts
        ]


class MemorySink:
    """A DocumentSink in a dict; refuses the ids in `refuse`."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.refuse = refuse or set()

    async def setup(self) -> None: ...

    async def positions(self, alias: str, ids: Sequence[str]) -> dict[str, StoredPosition]:
        return {
            i: (d["kafka_topic"], d["kafka_partition"], d["kafka_offset"])
            for i, d in self.docs.items()
            if i in ids
        }

    async def write(
        self, alias: str, docs: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Rejection]:
        rejected = []
        for doc_id, doc in docs:
            if doc_id in self.refuse:
                rejected.append(Rejection(doc_id, 400, "mapper_parsing_exception", "refused"))
            else:
                self.docs[doc_id] = doc
        return rejected

    async def healthy(self) -> bool:
        return True

    async def close(self) -> None: ...


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


class MemoryTables:
    """A BatchCounter over two in-memory stores; `fail_confirms` makes confirmations fail."""

    def __init__(self) -> None:
        self.sentiment = MemoryCountStore()
        self.hate = MemoryCountStore()
        self.fail_confirms = 0
        self.confirmed = 0

    def apply(
        self,
        sentiment: Sequence[Count],
        hate: Sequence[Count],
        events_by_partition: Mapping[tuple[str, int], Any],
    ) -> list[int]:
        def ranges(ts: float) -> list[tuple[float, float]]:
            return [(ts - ts % 60, ts - ts % 60 + 60)]

        return [
            apply_counts(self.sentiment, sentiment, ranges),
            apply_counts(self.hate, hate, ranges),
        ]

    async def confirm(self, writes: Sequence[Any]) -> None:
        if self.fail_confirms:
            self.fail_confirms -= 1
            raise RuntimeError("changelog write failed")
        self.confirmed += 1

    def totals(self, store: MemoryCountStore) -> dict[str, int]:
        out: dict[str, int] = {}
        for by_source in summarise(store.items()).values():
            for labels in by_source.values():
                for label, n in labels.items():
                    out[label] = out.get(label, 0) + n
        return out


def event(offset: int, value: Any, partition: int = 0) -> Any:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return SimpleNamespace(
        message=SimpleNamespace(
            topic="tweets",
            partition=partition,
            offset=offset,
            timestamp=1_000.0,
            key=b"k",
            value=raw,
        )
    )


def tweet(i: int | str, text: str = "hello") -> dict[str, Any]:
    return {"id": str(i), "text": text, "created_at": "2026-12-01T10:00:00Z"}


@pytest.fixture
def parts() -> SimpleNamespace:
    sink, letters, tables = MemorySink(), MemoryDeadLetters(), MemoryTables()
    settings = load_settings(retry_initial=0.01, retry_max=0.01, detect_language=False)
    pipeline = Pipeline(
        model=Tweet,
        index_alias="tweets",
        settings=settings,
        sink=sink,
        router=Router(KeywordClassifier(), None),
        dead_letters=letters,
        tables=tables,
    )
    return SimpleNamespace(pipeline=pipeline, sink=sink, letters=letters, tables=tables)


async def test_a_batch_is_indexed_counted_and_bad_input_dead_lettered(parts: Any) -> None:
    batch = [
        event(0, tweet(1)),
        event(1, tweet(2, "I hate this")),
        event(2, b"{not json"),
        event(3, {"id": "3"}),  # no text
    ]
    await parts.pipeline.process(batch)
    assert sorted(parts.sink.docs) == ["1", "2"]
    assert [(d.reason, d.offset) for d in parts.letters.letters] == [
        ("invalid_json", 2),
        ("schema_violation", 3),
    ]
    assert parts.tables.totals(parts.tables.sentiment) == {"neutral": 1, "negative": 1}
    assert parts.tables.totals(parts.tables.hate) == {
        "messages": 2,
        "hateful": 1,
        "hate_speech": 1,
    }


async def test_an_id_twice_in_a_batch_is_indexed_and_counted_once(parts: Any) -> None:
    await parts.pipeline.process([event(0, tweet(1, "first")), event(1, tweet(1, "second"))])
    assert parts.sink.docs["1"]["text"] == "second" and parts.sink.docs["1"]["kafka_offset"] == 1
    assert parts.tables.totals(parts.tables.hate) == {"messages": 1}


async def test_a_message_sent_again_as_another_record_is_not_counted_again(parts: Any) -> None:
    await parts.pipeline.process([event(0, tweet(1))])
    await parts.pipeline.process([event(1, tweet(1))])  # the producer retried
    assert parts.tables.totals(parts.tables.hate) == {"messages": 1}
    assert parts.pipeline.stats.repeats == 1


async def test_a_redelivered_batch_is_not_counted_again(parts: Any) -> None:
    batch = [event(i, tweet(i)) for i in range(5)]
    await parts.pipeline.process(batch)
    await parts.pipeline.process(batch)  # after a crash before the commit
    assert parts.tables.totals(parts.tables.hate) == {"messages": 5}


async def test_refused_documents_go_to_dead_letters_and_are_not_counted(parts: Any) -> None:
    parts.sink.refuse = {"2"}
    await parts.pipeline.process([event(i, tweet(i)) for i in range(4)])
    assert sorted(parts.sink.docs) == ["0", "1", "3"]
    assert [(d.reason, d.offset, d.stage) for d in parts.letters.letters] == [
        ("rejected_by_elasticsearch", 2, "index")
    ]
    assert parts.tables.totals(parts.tables.hate) == {"messages": 3}


async def test_a_failed_changelog_confirmation_retries_the_batch_without_double_counts(
    parts: Any,
) -> None:
    parts.tables.fail_confirms = 2
    await parts.pipeline.process([event(i, tweet(i)) for i in range(3)])
    assert parts.pipeline.stats.retries == 2 and parts.tables.confirmed == 1
    assert parts.tables.totals(parts.tables.hate) == {"messages": 3}
    assert parts.pipeline.stats.indexed == 3 and parts.pipeline.stats.batches == 1
