"""What the pipeline needs of its sinks: small contracts, as obsei's `base_sink`.

The pipeline writes each batch to a `DocumentSink` (Elasticsearch in production) and the
messages it cannot process to a `DeadLetterSink` (a Kafka topic). Either may be replaced —
another search engine, a file for tests — without touching the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


class DocumentSink(Protocol):
    """Idempotent by id: writing a document again replaces it.

    Delivery contract: `write` returns only when each document is stored or permanently
    rejected; while the store is unavailable it retries (backpressure), never drops.
    """

    async def setup(self) -> None:
        """Wait for the store and create what it needs (indices, mappings)."""
        ...

    async def positions(self, alias: str, ids: Sequence[str]) -> dict[str, StoredPosition]:
        """Where each already-stored id was indexed from (absent ids are new)."""
        ...

    async def write(
        self, alias: str, docs: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Rejection]: ...

    async def healthy(self) -> bool: ...

    async def close(self) -> None: ...


class DeadLetterSink(Protocol):
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Return once every letter is durably stored (the source offsets are committed
        after this)."""
        ...
