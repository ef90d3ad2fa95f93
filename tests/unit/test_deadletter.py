"""Dead letters always fit: a truncated copy with the original size when the whole one cannot
be sent, and never a letter that makes the publish fail for good."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from streamapp.sinks.deadletter import MAX_KEY_CHARS, DeadLetterQueue, dead_letter_for, fit


def event(value: bytes, key: bytes = b"k") -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(topic="tweets", partition=2, offset=9, key=key, value=value)
    )


def test_a_letter_larger_than_the_limit_keeps_the_start_of_the_value_and_its_size() -> None:
    raw = bytes(range(256)) * 8_000  # 2 MB
    letter = fit(
        dead_letter_for(event(raw), reason="oversized", error="e", stage="decode"), 100_000
    )
    assert letter.truncated and letter.size == len(raw)
    kept = base64.b64decode(letter.value_b64)
    assert 0 < len(kept) < 100_000 and raw.startswith(kept)
    assert len(json.dumps(letter.asdict())) < 100_000


def test_a_small_letter_is_whole() -> None:
    letter = fit(
        dead_letter_for(event(b"{bad"), reason="invalid_json", error="e", stage="x"), 10**5
    )
    assert not letter.truncated and base64.b64decode(letter.value_b64) == b"{bad"


def test_huge_keys_and_unencodable_errors_are_cut_to_something_sendable() -> None:
    letter = dead_letter_for(
        event(b"v", key=b"x" * 100_000), reason="r", error="bad \ud800 text", stage="s"
    )
    assert letter.truncated and len(letter.key or "") == MAX_KEY_CHARS
    letter.error.encode("utf-8")  # no lone surrogate left


class FakeTopic:
    """Refuses values over `limit` bytes the way Faust's producer does (at send time)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: list[Any] = []

    async def send(self, *, key: bytes, value: Any) -> Any:
        size = len(json.dumps(value.asdict()))
        if size > self.limit:
            raise ProducerSendError("Error while sending") from MessageSizeTooLargeError()
        self.sent.append(value)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def test_a_letter_the_producer_still_refuses_is_sent_without_the_value() -> None:
    # The topic's limit is below the configured maximum (a misconfiguration the worker
    # cannot see in advance): the letter goes anyway, with reason, size and position.
    topic = FakeTopic(limit=50_000)
    queue = DeadLetterQueue(topic, max_bytes=500_000)  # type: ignore[arg-type]
    raw = b"x" * 300_000
    await queue.publish([dead_letter_for(event(raw), reason="oversized", error="e", stage="d")])
    [letter] = topic.sent
    assert letter.value_b64 == "" and letter.truncated and letter.size == len(raw)
    assert (letter.topic, letter.partition, letter.offset) == ("tweets", 2, 9)
    assert queue.counts == {"oversized": 1}
