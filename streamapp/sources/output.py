"""Where sources put records: the input topics, through an idempotent Kafka producer."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from streamapp.aiokafka_compat import keep_known_topics
from streamapp.models import NewsArticle, Tweet
from streamapp.settings import Settings
from streamapp.sources.base import RecordOutput, SourceError

__all__ = ["KafkaOutput", "RecordOutput", "SourceError", "ThreadBridge", "record_json"]

log = logging.getLogger(__name__)


def record_json(record: Tweet | NewsArticle) -> bytes:
    """Plain JSON of a record, without Faust's metadata (what the agents decode)."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        raise TypeError(f"not JSON serializable: {type(value).__name__}")

    return json.dumps(record.asdict(), default=default, ensure_ascii=False).encode()


class KafkaOutput:
    """A `RawOutput`: records (or JSON objects) keyed by id to the tweets or news topic;
    counts what it sent."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer | None = None) -> None:
        self.settings = settings
        self.producer = producer or AIOKafkaProducer(
            bootstrap_servers=settings.broker_urls,
            acks="all",
            enable_idempotence=True,
            linger_ms=10,
        )
        # Tweets and news go to two topics, the second maybe unknown at its first send.
        keep_known_topics(self.producer.client)
        self.sent = 0
        self._pending: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        await self.producer.start()

    async def send(self, record: Tweet | NewsArticle) -> None:
        topic = (
            self.settings.news_topic
            if isinstance(record, NewsArticle)
            else self.settings.tweets_topic
        )
        await self._send(topic, record.message_id, record_json(record))

    async def send_json(self, kind: str, key: str, obj: dict[str, Any]) -> None:
        topic = self.settings.news_topic if kind == "news" else self.settings.tweets_topic
        await self._send(topic, key, json.dumps(obj).encode())

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        fut = await self.producer.send(topic, value, key=key.encode())
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        self.sent += 1

    async def flush(self) -> None:
        """Wait until the broker has acknowledged everything sent so far."""
        if self._pending:
            await asyncio.gather(*list(self._pending))

    async def stop(self) -> None:
        try:
            await self.flush()
        finally:
            await self.producer.stop()


class ThreadBridge:
    """Hands items from a blocking client's thread to the event loop, with a bounded queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = 1000) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)

    def put_from_thread(
        self, item: Any, *, give_up: Callable[[], bool] = lambda: False, poll: float = 1.0
    ) -> bool:
        """Block the calling thread until the item is queued (backpressure): True once it is,
        False if `give_up()` turned true first (the pending put is then withdrawn).

        One put per item, however long it waits: re-submitting after a timeout would leave
        the first put pending and queue the item twice once the loop catches up.
        """
        fut = asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop)
        while True:
            try:
                fut.result(poll)
                return True
            except TimeoutError:
                if give_up():
                    fut.cancel()
                    return False

    async def drain(self, handle: Callable[[Any], Awaitable[None]], stop: object) -> None:
        """Pass queued items to `handle` until the `stop` sentinel arrives."""
        while True:
            item = await self.queue.get()
            if item is stop:
                return
            await handle(item)
