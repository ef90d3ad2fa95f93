"""Faust agents: one per input topic, batch in, ack after the batch is safely processed.

`noack_take` rather than `take`: `take` acks the batch in a `finally`, i.e. even when the
agent is cancelled mid-batch (shutdown or rebalance while Elasticsearch is down), and the
final commit would then skip messages that were never indexed. Here a batch is acked only
after `Pipeline.process` has returned.

Concurrency stays 1 per agent: with more, Faust can commit past a message still in flight.
"""

from __future__ import annotations

import asyncio
import logging

from faust import StreamT

from streamapp.app import app, settings
from streamapp.classifiers import Classifier, create_classifier
from streamapp.deadletter import DeadLetterQueue
from streamapp.models import NewsArticle, Tweet
from streamapp.offsets import OffsetSequencer
from streamapp.pipeline import Pipeline
from streamapp.sinks.elasticsearch import ElasticsearchSink
from streamapp.topics import declare_topics

log = logging.getLogger(__name__)

topics = declare_topics(app, settings)


class Runtime:
    """Shared by both agents: one Elasticsearch client, one classifier, one DLQ producer."""

    def __init__(self) -> None:
        self.sink = ElasticsearchSink(settings)
        self.dead_letters = DeadLetterQueue(topics.dead_letter)
        self.classifier: Classifier | None = None
        self.pipelines: dict[str, Pipeline] = {}
        self._lock = asyncio.Lock()
        self.ready = False

    async def start(self) -> None:
        async with self._lock:
            if self.ready:
                return
            self.classifier = create_classifier(settings.classifier)
            await self.classifier.start()
            # Waits (with backoff) for Elasticsearch: meanwhile the agents do not consume.
            await self.sink.setup()
            common = {
                "settings": settings,
                "sink": self.sink,
                "classifier": self.classifier,
                "dead_letters": self.dead_letters,
            }
            self.pipelines = {
                "tweets": Pipeline(model=Tweet, index_alias=settings.tweets_index, **common),
                "news": Pipeline(model=NewsArticle, index_alias=settings.news_index, **common),
            }
            self.ready = True
            log.info(
                "streamapp ready: classifier %s %s", self.classifier.name, self.classifier.version
            )

    async def pipeline(self, name: str) -> Pipeline:
        await self.start()
        return self.pipelines[name]

    async def close(self) -> None:
        if self.classifier is not None:
            await self.classifier.close()
        await self.sink.close()


runtime = Runtime()
app.register_closer(runtime.close)
sequencer = OffsetSequencer(app)


@app.timer(interval=1.0)
async def repair_offset_gaps() -> None:
    await sequencer.repair()


async def _run(stream: StreamT, name: str) -> None:
    pipeline = await runtime.pipeline(name)
    async for events in stream.noack_take(settings.batch_size, within=settings.batch_timeout):
        admitted = sequencer.admit(events)
        if admitted.process:
            await pipeline.process(admitted.process)
        for event in (*admitted.process, *admitted.duplicates):
            await stream.ack(event)


@app.agent(topics.tweets_raw, name="streamapp.classify_tweets")
async def classify_tweets(stream: StreamT) -> None:
    await _run(stream, "tweets")


@app.agent(topics.news_raw, name="streamapp.classify_news")
async def classify_news(stream: StreamT) -> None:
    await _run(stream, "news")
