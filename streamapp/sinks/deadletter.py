"""The dead-letter topic (a `sinks.base.DeadLetterSink`): bad messages with their reason and
original bytes, never lost."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faust.exceptions import ProducerSendError
from faust.types import EventT, TopicT

from streamapp.models import DeadLetter

log = logging.getLogger(__name__)


#: Room kept for everything but the value in a dead letter (error <= 4,000 chars, key,
#: metadata, JSON quoting).
_OVERHEAD = 8 * 1024
MAX_KEY_CHARS = 1024


def dead_letter_for(event: EventT, *, reason: str, error: str, stage: str) -> DeadLetter:
    msg = event.message
    raw = msg.value if isinstance(msg.value, bytes) else (msg.value or b"")
    key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else msg.key
    truncated = key is not None and len(key) > MAX_KEY_CHARS
    return DeadLetter(
        reason=reason,
        # Errors quote input: a lone surrogate in it must not make the letter unsendable.
        error=error[:4000].encode("utf-8", "replace").decode("utf-8"),
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=key[:MAX_KEY_CHARS] if key is not None else None,
        value_b64=base64.b64encode(raw).decode("ascii"),
        size=len(raw),
        failed_at=datetime.now(UTC).isoformat(),
        stage=stage,
        truncated=truncated,
    )


def fit(letter: DeadLetter, max_bytes: int) -> DeadLetter:
    """Cut the copy of the value so the letter stays under `max_bytes` (whole base64 quads,
    so what is kept still decodes to the first bytes of the original)."""
    room = max(0, max_bytes - _OVERHEAD) // 4 * 4
    if len(letter.value_b64) > room:
        letter.value_b64 = letter.value_b64[:room]
        letter.truncated = True
    return letter


def _too_large(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, ProducerSendError) else exc
    return isinstance(cause, MessageSizeTooLargeError | RecordTooLargeError)


class DeadLetterQueue:
    """A `sinks.base.DeadLetterSink` on a Kafka topic."""

    def __init__(self, topic: TopicT, max_bytes: int = 900_000) -> None:
        self.topic = topic
        self.max_bytes = max_bytes
        self.counts: Counter[str] = Counter()

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Send and wait for the broker's acknowledgement of every letter, so the source
        offsets are committed only once the letters are safe. A letter still too large for
        the producer or the topic is sent again without the copy of the value (its reason,
        error, size and source position are what matter)."""
        if not letters:
            return
        sent = []
        for letter in letters:
            fit(letter, self.max_bytes)
            try:
                fut = await self.topic.send(key=self._key(letter), value=letter)
            except Exception as exc:
                if not _too_large(exc):
                    raise
                fut = await self._send_without_value(letter, exc)
            sent.append((letter, fut))
        results = await asyncio.gather(*(fut for _, fut in sent), return_exceptions=True)
        for (letter, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                if not _too_large(result) or not letter.value_b64:
                    raise result
                await (await self._send_without_value(letter, result))
        for letter in letters:
            self.counts[letter.reason] += 1
            # One line per bad message, without its content (it may be personal data).
            log.warning(
                "dead-lettered %s[%d]@%d: %s: %s",
                letter.topic,
                letter.partition,
                letter.offset,
                letter.reason,
                letter.error[:300],
            )

    @staticmethod
    def _key(letter: DeadLetter) -> bytes:
        return f"{letter.topic}/{letter.partition}/{letter.offset}".encode()

    async def _send_without_value(self, letter: DeadLetter, exc: BaseException) -> Any:
        log.warning(
            "dead letter for %s too large (%r); sending it without the value",
            self._key(letter),
            exc,
        )
        letter.value_b64 = ""
        letter.truncated = True
        return await self.topic.send(key=self._key(letter), value=letter)
