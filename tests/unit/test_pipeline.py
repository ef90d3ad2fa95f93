"""One batch through the pipeline with in-memory parts: what is indexed, dead-lettered and
counted, including the retry paths. The same pipeline runs on the real Kafka and
Elasticsearch in tests/test_pipeline_integration.py."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from faust.exceptions import PartitionsMismatch

from streamapp.classifiers.base import Classifier, Langs
from streamapp.classifiers.routing import Router
from streamapp.counting import Count, MemoryCountStore, apply_counts, summarise
from streamapp.errors import DependencyError
from streamapp.models import Analysis, DeadLetter, Tweet
from streamapp.pipeline import Pipeline
from streamapp.settings import load_settings
from streamapp.sinks.base import Rejection, WriteResult
from streamapp.tables import ChangelogNotConfirmed


class KeywordClassifier(Classifier):
    name = "keyword"
    version = "1"

    async def classify(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        if any("boom" in t for t in texts):
            raise ValueError("the model cannot handle this text")
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
        self.outages = 0  # writes that fail as if Elasticsearch were down

    async def setup(self) -> None: ...

    async def write(self, alias: str, docs: Sequence[tuple[str, dict[str, Any]]]) -> WriteResult:
        if self.outages:
            self.outages -= 1
            raise DependencyError("elasticsearch unavailable")
        result = WriteResult()
        for doc_id, doc in docs:
            if doc_id in self.refuse:
                result.rejected.append(
                    Rejection(doc_id, 400, "mapper_parsing_exception", "refused")
                )
                continue
            stored = self.docs.get(doc_id)
            if stored is not None:
                result.previous[doc_id] = (
                    stored["kafka_topic"],
                    stored["kafka_partition"],
                    stored["kafka_offset"],
                )
            self.docs[doc_id] = doc
        return result

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
        self.mismatches = 0  # table writes that fail as Faust's do while metadata is missing
        # Every write fails so until the metadata is refreshed (Faust's stale snapshot).
        self.stale_metadata = False
        self.refreshes = 0
        self.refresh_failures = 0
        self.confirmed = 0
        self.pending_at_confirm: list[int] = []

    def apply(
        self,
        sentiment: Sequence[Count],
        hate: Sequence[Count],
        events_by_partition: Mapping[tuple[str, int], Any],
    ) -> list[tuple[str, int]]:
        def ranges(ts: float) -> list[tuple[float, float]]:
            return [(ts - ts % 60, ts - ts % 60 + 60)]

        if self.mismatches or self.stale_metadata:
            self.mismatches = max(self.mismatches - 1, 0)
            raise PartitionsMismatch(
                "The source topic 'tweets' for table 'hate-counts-hopping' has 4 partitions, "
                "but the changelog topic 'x-hate-counts-hopping-changelog' has 0 partitions."
            )

        applied = [
            ("sentiment", apply_counts(self.sentiment, sentiment, ranges)),
            ("hate", apply_counts(self.hate, hate, ranges)),
        ]
        return [(table, n) for table, n in applied if n]

    async def after_failure(self, exc: BaseException) -> None:
        if not isinstance(exc, PartitionsMismatch):
            return
        self.refreshes += 1
        if self.refresh_failures:
            self.refresh_failures -= 1
            raise KafkaConnectionError("metadata request failed")
        self.stale_metadata = False

    async def confirm(self, writes: list[Any]) -> None:
        self.pending_at_confirm.append(len(writes))
        if self.fail_confirms:
            self.fail_confirms -= 1
            raise ChangelogNotConfirmed("changelog write failed")
        writes.clear()
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
    # The retries applied nothing new but still confirmed the first attempt's writes.
    assert parts.tables.pending_at_confirm == [2, 2, 2]
    assert parts.tables.totals(parts.tables.hate) == {"messages": 3}
    assert parts.pipeline.stats.indexed == 3 and parts.pipeline.stats.batches == 1


async def test_a_message_that_fails_on_its_own_is_dead_lettered_and_the_rest_go_on(
    parts: Any,
) -> None:
    batch = [event(i, tweet(i, "boom" if i == 5 else "fine")) for i in range(8)]
    await parts.pipeline.process(batch)
    assert sorted(parts.sink.docs) == [str(i) for i in range(8) if i != 5]
    [letter] = parts.letters.letters
    assert (letter.reason, letter.offset, letter.stage) == ("processing_failed", 5, "process")
    assert "ValueError: the model cannot handle this text" in letter.error
    assert parts.tables.totals(parts.tables.hate) == {"messages": 7}
    # Messages after the poisoned one are counted too: halves are processed in order.
    assert parts.pipeline.stats.dead_lettered == 1 and parts.pipeline.stats.received == 8


async def test_a_dependency_failure_retries_and_blames_no_message(parts: Any) -> None:
    parts.sink.outages = 3
    await parts.pipeline.process([event(i, tweet(i)) for i in range(4)])
    assert parts.letters.letters == [] and len(parts.sink.docs) == 4
    assert parts.pipeline.stats.retries == 3 and parts.pipeline.stats.batches == 1


async def test_a_changelog_without_partitions_in_the_metadata_is_retried_not_dead_lettered(
    parts: Any,
) -> None:
    """Seen after a Kafka restart: Faust's check of a table's changelog against its source
    topic finds no partitions for a moment. The batch waits; no message is blamed."""
    parts.tables.mismatches = 12  # more tries than a message gets before it is poison
    await parts.pipeline.process([event(i, tweet(i)) for i in range(4)])
    assert parts.letters.letters == [] and parts.pipeline.stats.retries == 12
    assert parts.tables.totals(parts.tables.hate) == {"messages": 4}
    assert parts.tables.refreshes == 12  # each retry asked for the metadata first


async def test_a_mismatch_from_stale_metadata_refreshes_it_before_the_retry(parts: Any) -> None:
    """Faust checks a changelog against a metadata snapshot renewed every 5 minutes: without
    a refresh every retry of the batch would fail the same way until then. A refresh that
    fails itself does not stop the retries."""
    parts.tables.stale_metadata = True
    parts.tables.refresh_failures = 1
    await parts.pipeline.process([event(i, tweet(i)) for i in range(4)])
    assert parts.tables.refreshes == 2 and parts.pipeline.stats.retries == 2
    assert parts.letters.letters == [] and len(parts.sink.docs) == 4
    assert parts.tables.totals(parts.tables.hate) == {"messages": 4}


@pytest.mark.parametrize(
    ("value", "reason", "mentions"),
    [
        (b"[" * 200_000, "invalid_json", "nested too deeply"),
        (
            b'{"id": "\\ud800", "text": "x", "created_at": "2026-12-01T10:00:00Z"}',
            "schema_violation",
            "lone surrogate",
        ),
        (
            b'{"id": "1", "text": "a\\udfff", "created_at": "2026-12-01T10:00:00Z"}',
            "schema_violation",
            "lone surrogate",
        ),
    ],
)
async def test_poison_inputs_are_dead_lettered_with_the_reason(
    parts: Any, value: bytes, reason: str, mentions: str
) -> None:
    await parts.pipeline.process([event(0, value), event(1, tweet("ok"))])
    [letter] = parts.letters.letters
    assert letter.reason == reason and mentions in letter.error
    assert list(parts.sink.docs) == ["ok"]
