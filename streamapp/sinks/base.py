"""What the pipeline needs of its sinks: small contracts, as obsei's `base_sink`.

The pipeline writes each batch to a `DocumentSink` (Elasticsearch in production) and the
messages it cannot process to a `DeadLetterSink` (a Kafka topic). Either may be replaced —
another search engine, a file for tests — without touching the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamapp.models import DeadLetter

#: (topic, partition, offset) a stored document was indexed from; Nones when not recorded.
StoredPosition = tuple[str | None, int | None, int | None]


@dataclass(frozen=True)
class Rejection:
    """A document the sink refused for good (it goes to the dead-letter topic)."""

    doc_id: str
    status: int
    error_type: str
    reason: str


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the documents refused for good, and where each document that the
    write replaced had been indexed from (repeat detection reads it; absent ids were new)."""

    rejected: list[Rejection] = field(default_factory=list)
    previous: dict[str, StoredPosition] = field(default_factory=dict)


class DocumentSink(Protocol):
    """Idempotent by id: writing a document again replaces it.

    Delivery contract: `write` returns only when each document is stored or permanently
    rejected; while the store is unavailable it retries (backpressure), never drops.

    The write reports what it replaced rather than the caller reading first: a read of every
    id before every batch cost Elasticsearch 10-20% of its CPU (paired benchmark runs) and the
    batch a round trip, for ids that are almost all new.
    """

    async def setup(self) -> None:
        """Wait for the store and create what it needs (indices, mappings)."""
        ...

    async def write(self, alias: str, docs: Sequence[tuple[str, dict[str, Any]]]) -> WriteResult:
        """Store `(id, document)` pairs, replacing any stored document of the same id."""
        ...

    async def healthy(self) -> bool: ...

    async def close(self) -> None: ...


class DeadLetterSink(Protocol):
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Return once every letter is durably stored (the source offsets are committed
        after this)."""
        ...
