"""One batch of raw messages -> decoded records -> classified -> Elasticsearch -> tables.

A batch is "done" (and its offsets may be acked) only when each message is indexed or
dead-lettered and the table updates are issued. Any failure retries the whole batch with
backoff: indexing is idempotent by id and table updates by offset watermark, so a retry
can never duplicate, and never moving past a failed batch means nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from elastic_transport import TransportError
from elasticsearch import ApiError
from faust.exceptions import PartitionsMismatch, ProducerSendError
from faust.types import EventT

from streamapp.classifiers.routing import Router
from streamapp.counting import Count, Position, batch_counts, last_per_id
from streamapp.decoding import DecodeFailure, decode
from streamapp.errors import DependencyError
from streamapp.language import LanguageDetector, normalise_code
from streamapp.metrics import Metrics
from streamapp.models import (
    DeadLetter,
    InputRecord,
    NewsArticle,
    Tweet,
    document,
)
from streamapp.settings import Settings
from streamapp.sinks.base import DeadLetterSink, DocumentSink
from streamapp.sinks.deadletter import dead_letter_for
from streamapp.terms import TermMatcher

log = logging.getLogger(__name__)


class BatchCounter(Protocol):
    """Where a batch's counts go (`tables.Tables` in the worker)."""

    def apply(
        self,
        sentiment: Sequence[Count],
        hate: Sequence[Count],
        events_by_partition: Mapping[tuple[str, int], EventT],
    ) -> list[Any]:
        """Apply the counts (idempotently, by offset watermark); return the writes that make
        them durable."""
        ...

    async def confirm(self, writes: list[Any]) -> None:
        """Make `writes` durable, removing each from the list once it is; raise if some are
        left (the caller retries with the same list)."""
        ...

    async def after_failure(self, exc: BaseException) -> None:
        """A batch failed with `exc`, a dependency's failure: put right what the counters can
        before the batch is tried again (raising is logged, not fatal)."""
        ...


@dataclass
class Stats:
    batches: int = 0
    received: int = 0
    indexed: int = 0
    dead_lettered: int = 0
    repeats: int = 0  # ids indexed before from another Kafka record: not counted again
    retries: int = 0
    last_batch_at: float | None = None
    last_error: str | None = None
    # The batch being processed now: since when (wall clock), and the Kafka timestamp of its
    # oldest message. None between batches.
    batch_started_at: float | None = None
    batch_oldest_timestamp: float | None = None
    by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "received": self.received,
            "indexed": self.indexed,
            "dead_lettered": self.dead_lettered,
            "repeats": self.repeats,
            "dead_letter_reasons": dict(self.by_reason),
            "retries": self.retries,
            "last_batch_at": self.last_batch_at,
            "last_error": self.last_error,
            "batch_started_at": self.batch_started_at,
        }


class Pipeline:
    """Processes batches of one input topic (tweets or news)."""

    def __init__(
        self,
        *,
        model: type[Tweet] | type[NewsArticle],
        index_alias: str,
        settings: Settings,
        sink: DocumentSink,
        router: Router,
        dead_letters: DeadLetterSink,
        tables: BatchCounter,
        detector: LanguageDetector | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.model = model
        self.index_alias = index_alias
        self.settings = settings
        self.sink = sink
        self.router = router
        self.detector = detector
        self.dead_letters = dead_letters
        self.tables = tables
        self.metrics = metrics
        self.terms = TermMatcher(settings.terms)
        self.stats = Stats()
        # Table writes of the current batch not yet confirmed: a retry of the batch applies
        # nothing new (the watermarks have it), so it must finish confirming these.
        self._unconfirmed: list[Any] = []

    async def process(self, events: Sequence[EventT]) -> None:
        """Process a batch until every message is indexed or dead-lettered (see `_process`);
        meanwhile `stats` says since when, for `/health/`."""
        self.stats.batch_started_at = time.time()
        self.stats.batch_oldest_timestamp = min(e.message.timestamp for e in events)
        started = time.perf_counter()
        try:
            await self._process(events)
        finally:
            self.stats.batch_started_at = self.stats.batch_oldest_timestamp = None
        if self.metrics is not None:
            topic = events[0].message.topic
            self.metrics.batch_seconds.labels(topic).observe(time.perf_counter() - started)

    async def _process(self, events: Sequence[EventT]) -> None:
        """Process a batch until every message is indexed or dead-lettered.

        A dependency failing as a whole (`is_dependency_failure`) retries the batch with
        backoff for as long as it takes: backpressure, never loss. Any other error is blamed
        on the input: the batch is split in halves, processed in offset order, until the
        message that fails is alone; after `poison_attempts` tries it goes to the dead-letter
        topic with the error, and the partition moves on.
        """
        delay = self.settings.retry_initial
        failures = 0
        poison: BaseException | None = None
        while True:
            try:
                if poison is None:
                    await self._process_once(events)
                else:
                    await self._dead_letter_poison(events[0], poison)
                self.stats.last_error = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.retries += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                dependency = is_dependency_failure(exc)
                if poison is None and not dependency:
                    if len(events) > 1:
                        log.warning(
                            "batch of %d from %s failed on its input (%s: %s); splitting it",
                            len(events),
                            events[0].message.topic,
                            type(exc).__name__,
                            str(exc)[:200],
                        )
                        half = len(events) // 2
                        # In order: the tables' watermarks skip offsets below what was counted.
                        await self._process(events[:half])
                        await self._process(events[half:])
                        return
                    failures += 1
                    if failures >= self.settings.poison_attempts:
                        poison = exc
                        continue
                log.warning(
                    "batch of %d from %s failed (%s: %s); retrying in %.1fs",
                    len(events),
                    events[0].message.topic,
                    type(exc).__name__,
                    str(exc)[:300],
                    delay,
                    exc_info=not dependency,
                )
                if dependency:
                    await self._backoff(exc, delay)
                else:
                    await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max)

    async def _backoff(self, exc: BaseException, delay: float) -> None:
        """Wait `delay` before retrying after a dependency's failure; meanwhile the tables
        put right what they can (`BatchCounter.after_failure`), but never for longer."""
        repair = asyncio.ensure_future(self._after_failure(exc))
        try:
            await asyncio.sleep(delay)
        finally:
            repair.cancel()

    async def _after_failure(self, exc: BaseException) -> None:
        try:
            await self.tables.after_failure(exc)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the retry goes on; the next failure asks again
            log.warning("tables: %s after a failed batch (%s)", type(err).__name__, err)

    async def _dead_letter_poison(self, event: EventT, exc: BaseException) -> None:
        letter = dead_letter_for(
            event,
            reason="processing_failed",
            error=f"{type(exc).__name__}: {exc}",
            stage="process",
        )
        await self.dead_letters.publish([letter])
        self.stats.batches += 1
        self.stats.received += 1
        self.stats.dead_lettered += 1
        self.stats.by_reason[letter.reason] += 1
        self.stats.last_batch_at = time.time()

    async def _process_once(self, events: Sequence[EventT]) -> None:
        letters: list[DeadLetter] = []
        decoded: list[tuple[InputRecord, EventT]] = []
        for event in events:
            result = decode(
                event.message.value, self.model, max_bytes=self.settings.max_message_bytes
            )
            if isinstance(result, DecodeFailure):
                letters.append(
                    dead_letter_for(event, reason=result.reason, error=result.error, stage="decode")
                )
            else:
                decoded.append((result, event))
        # Last occurrence wins when one id appears twice in a batch, as it would in ES.
        items = last_per_id(decoded, lambda item: item[0].message_id)
        texts = [r.classification_text() for r, _ in items]
        langs, detected = await self._languages([r for r, _ in items], texts)
        started = time.perf_counter()
        analyses = await self.router.classify(texts, langs)
        if self.metrics is not None and events:
            topic = events[0].message.topic
            self.metrics.classify_seconds.labels(topic).observe(time.perf_counter() - started)
        now = datetime.now(UTC)
        docs = [
            document(r, a, now, lang=lang, lang_detected=det, terms=self._terms(r, text))
            for (r, _), text, a, lang, det in zip(
                items, texts, analyses, langs, detected, strict=True
            )
        ]
        for doc, (_, event) in zip(docs, items, strict=True):
            doc.update(position(event))
        written = await self.sink.write(self.index_alias, [(d["id"], d) for d in docs])

        rejected_ids = {rej.doc_id: rej for rej in written.rejected}
        for record, event in items:
            rej = rejected_ids.get(record.message_id)
            if rej is not None:
                letters.append(
                    dead_letter_for(
                        event,
                        reason="rejected_by_elasticsearch",
                        error=f"HTTP {rej.status} {rej.error_type}: {rej.reason}",
                        stage="index",
                    )
                )
        await self.dead_letters.publish(letters)

        indexed = [
            (doc, event)
            for doc, (record, event) in zip(docs, items, strict=True)
            if record.message_id not in rejected_ids
        ]
        batch = batch_counts(
            [(doc, message_position(e), e.message.timestamp) for doc, e in indexed],
            written.previous,
        )
        events_by_partition = {(e.message.topic, e.message.partition): e for _, e in indexed}
        self._unconfirmed += self.tables.apply(batch.sentiment, batch.hate, events_by_partition)
        # Before the caller acks: the offsets committed later must never be ahead of the
        # table state the broker holds (see streamapp.tables).
        await self.tables.confirm(self._unconfirmed)

        self.stats.batches += 1
        self.stats.received += len(events)
        self.stats.indexed += len(indexed)
        self.stats.repeats += batch.repeats
        self.stats.dead_lettered += len(letters)
        for letter in letters:
            self.stats.by_reason[letter.reason] += 1
        self.stats.last_batch_at = time.time()

    def _terms(self, record: InputRecord, text: str) -> list[str]:
        tags = record.rule_tags if isinstance(record, Tweet) else None
        return self.terms.match(text, tags or ())

    async def _languages(
        self, records: Sequence[InputRecord], texts: Sequence[str]
    ) -> tuple[list[str | None], list[bool]]:
        """The source's language when it gives one, else detected (off the event loop)."""
        langs = [normalise_code(r.lang) for r in records]
        missing = [i for i, lang in enumerate(langs) if lang is None]
        detected = [False] * len(langs)
        if missing and self.detector is not None:
            found = await asyncio.to_thread(self.detector.detect_batch, [texts[i] for i in missing])
            for i, lang in zip(missing, found, strict=True):
                if lang is not None:
                    langs[i] = lang
                    detected[i] = True
        return langs, detected


def is_dependency_failure(exc: BaseException) -> bool:
    """True when `exc` says a dependency as a whole is failing (see `streamapp.errors`)."""
    if isinstance(exc, MessageSizeTooLargeError):
        return False  # one message too large: its own fault
    return isinstance(
        exc,
        DependencyError
        | KafkaError
        | ProducerSendError
        # A table write whose changelog topic does not (yet) show the source topic's
        # partitions: Kafka's metadata, missing for a moment after a broker restart ("0
        # partitions"), or a misconfigured topic. Never a message's fault: blamed on the
        # messages, whole batches were dead-lettered as poison.
        | PartitionsMismatch
        | ApiError
        | TransportError
        | ConnectionError
        | TimeoutError,
    )


def message_position(event: EventT) -> Position:
    msg = event.message
    return Position(msg.topic, msg.partition, msg.offset)


def position(event: EventT) -> dict[str, object]:
    """The document fields that record where it was read from."""
    msg = event.message
    return {"kafka_topic": msg.topic, "kafka_partition": msg.partition, "kafka_offset": msg.offset}
