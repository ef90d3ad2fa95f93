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
from streamapp.classifiers.routing import Router
from streamapp.deadletter import DeadLetterQueue
from streamapp.language import LanguageDetector
from streamapp.models import NewsArticle, Tweet
from streamapp.offsets import OffsetSequencer
from streamapp.pipeline import Pipeline
from streamapp.sinks.elasticsearch import ElasticsearchSink
from streamapp.topics import declare_topics

log = logging.getLogger(__name__)

topics = declare_topics(app, settings)


class Runtime:
    """Shared by both agents: one Elasticsearch client, one instance of each classifier
    backend in use, one DLQ producer."""

    def __init__(self) -> None:
        self.sink = ElasticsearchSink(settings)
        self.dead_letters = DeadLetterQueue(topics.dead_letter)
        self.classifiers: dict[str, Classifier] = {}
        self.routers: dict[str, Router] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self._lock = asyncio.Lock()
        self.ready = False

    async def start(self) -> None:
        async with self._lock:
            if self.ready:
                return
            # The offline model is always loaded: it is the fallback of the remote backends.
            for name in {"offline", settings.backend_for("tweets"), settings.backend_for("news")}:
                # Loading reads model files: keep it off the loop (heartbeats, web views).
                clf = await asyncio.to_thread(create_classifier, name)
                await clf.start()
                self.classifiers[name] = clf
            detector = (
                await asyncio.to_thread(LanguageDetector) if settings.detect_language else None
            )
            # Waits (with backoff) for Elasticsearch: meanwhile the agents do not consume.
            await self.sink.setup()
            for kind, model, alias in (
                ("tweets", Tweet, settings.tweets_index),
                ("news", NewsArticle, settings.news_index),
            ):
                router = Router(
                    self.classifiers[settings.backend_for(kind)],
                    self.classifiers["offline"],
                    mode=settings.classifier_fallback,
                    languages=settings.language_set,
                )
                self.routers[kind] = router
                self.pipelines[kind] = Pipeline(
                    model=model,
                    index_alias=alias,
                    settings=settings,
                    sink=self.sink,
                    router=router,
                    dead_letters=self.dead_letters,
                    detector=detector,
                )
                log.info("%s: classifier %s %s", kind, router.primary.name, router.primary.version)
            self.ready = True

    async def pipeline(self, name: str) -> Pipeline:
        await self.start()
        return self.pipelines[name]

    async def close(self) -> None:
        for clf in self.classifiers.values():
            await clf.close()
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
