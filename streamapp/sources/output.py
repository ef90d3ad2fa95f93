"""Where sources put records: the input topics, through an idempotent Kafka producer."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from streamapp.models import NewsArticle, Tweet
from streamapp.settings import Settings, load_settings
from streamapp.topics import ensure_topics

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source cannot go on (bad credentials, bad settings); the message says what to fix."""


def record_json(record: Tweet | NewsArticle) -> bytes:
    """Plain JSON of a record, without Faust's metadata (what the agents decode)."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        raise TypeError(f"not JSON serializable: {type(value).__name__}")

    return json.dumps(record.asdict(), default=default, ensure_ascii=False).encode()


class RecordOutput(Protocol):
    async def send(self, record: Tweet | NewsArticle) -> None: ...


class KafkaOutput:
    """Sends records keyed by their id to the tweets or news topic; counts what it sent."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer | None = None) -> None:
        self.settings = settings
        self.producer = producer or AIOKafkaProducer(
            bootstrap_servers=settings.broker_urls,
            acks="all",
            enable_idempotence=True,
            linger_ms=10,
        )
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
        fut = await self.producer.send(topic, record_json(record), key=record.message_id.encode())
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

    def put_from_thread(self, item: Any, timeout: float | None = None) -> None:
        """Block the calling thread until the item is queued (backpressure)."""
        asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop).result(timeout)

    async def drain(self, handle: Callable[[Any], Awaitable[None]], stop: object) -> None:
        """Pass queued items to `handle` until the `stop` sentinel arrives."""
        while True:
            item = await self.queue.get()
            if item is stop:
                return
            await handle(item)


async def run_until_signalled(
    run: Callable[[KafkaOutput], Awaitable[None]], stop: Callable[[], None]
) -> None:
    """A source's command: topics ensured, `run(output)` until it returns or SIGINT/SIGTERM
    calls `stop`, then every record sent is flushed before the producer closes."""
    settings = load_settings()
    await ensure_topics(settings)
    out = KafkaOutput(settings)
    await out.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await run(out)
    finally:
        await out.stop()
