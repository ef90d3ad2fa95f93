"""The dead-letter topic (a `sinks.base.DeadLetterSink`): bad messages with their reason and
original bytes, never lost."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from faust.types import EventT, TopicT

from streamapp.models import DeadLetter

log = logging.getLogger(__name__)


def dead_letter_for(event: EventT, *, reason: str, error: str, stage: str) -> DeadLetter:
    msg = event.message
    raw = msg.value if isinstance(msg.value, bytes) else (msg.value or b"")
    key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else msg.key
    return DeadLetter(
        reason=reason,
        error=error[:4000],
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=key,
        value_b64=base64.b64encode(raw).decode("ascii"),
        size=len(raw),
        failed_at=datetime.now(UTC).isoformat(),
        stage=stage,
    )


class DeadLetterQueue:
    def __init__(self, topic: TopicT) -> None:
        self.topic = topic
        self.counts: Counter[str] = Counter()

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Send and wait for the broker's acknowledgement of every letter, so the source
        offsets are committed only once the letters are safe."""
        if not letters:
            return
        futures = []
        for letter in letters:
            futures.append(
                await self.topic.send(
                    key=f"{letter.topic}/{letter.partition}/{letter.offset}".encode(),
                    value=letter,
                )
            )
        await asyncio.gather(*futures)
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
