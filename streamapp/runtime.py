"""The worker's shared resources as one `mode.Service`, started and stopped with the app.

Both agents share one Elasticsearch sink, one instance of each classifier backend in use and
one dead-letter producer. Loading the models and waiting for Elasticsearch can take long
(or, while Elasticsearch is down, forever): it runs as a background task of the service, so
the worker's web server answers `/health/` ("starting") meanwhile and the agents wait for
`pipeline()` instead of consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import AppT
from mode import Service

from streamapp.classifiers import Classifier, create_classifier
from streamapp.classifiers.routing import Router
from streamapp.faust_compat import end_startup_spinner_logging
from streamapp.language import LanguageDetector
from streamapp.metrics import Metrics
from streamapp.models import NewsArticle, Tweet
from streamapp.pipeline import Pipeline
from streamapp.settings import Settings
from streamapp.sinks.base import DocumentSink
from streamapp.sinks.deadletter import DeadLetterQueue
from streamapp.tables import Tables

log = logging.getLogger(__name__)

KINDS = ("tweets", "news")


class Runtime(Service):
    def __init__(
        self,
        settings: Settings,
        *,
        sink: DocumentSink,
        dead_letters: DeadLetterQueue,
        tables: Tables,
        metrics: Metrics | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.sink = sink
        self.dead_letters = dead_letters
        self.tables = tables
        self.classifiers: dict[str, Classifier] = {}
        self.routers: dict[str, Router] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self._ready = asyncio.Event()
        self.ready_at: float | None = None
        self._abandon = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @Service.task
    async def _set_up(self) -> None:
        s = self.settings
        # The offline model is always loaded: it is the fallback of the remote backends.
        for name in {"offline", *(s.backend_for(kind) for kind in KINDS)}:
            # Loading reads model files: keep it off the loop (heartbeats, web views).
            clf = await asyncio.to_thread(create_classifier, name)
            await clf.start()
            self.classifiers[name] = clf
        detector = await asyncio.to_thread(LanguageDetector) if s.detect_language else None
        # Waits (with backoff) for Elasticsearch: meanwhile the agents do not consume.
        await self.sink.setup()
        for kind, model, alias in (
            ("tweets", Tweet, s.tweets_index),
            ("news", NewsArticle, s.news_index),
        ):
            router = Router(
                self.classifiers[s.backend_for(kind)],
                self.classifiers["offline"],
                mode=s.classifier_fallback,
                languages=s.language_set,
            )
            self.routers[kind] = router
            self.pipelines[kind] = Pipeline(
                model=model,
                index_alias=alias,
                settings=s,
                sink=self.sink,
                router=router,
                dead_letters=self.dead_letters,
                tables=self.tables,
                detector=detector,
                metrics=self.metrics,
            )
            log.info("%s: classifier %s %s", kind, router.primary.name, router.primary.version)
        end_startup_spinner_logging()
        self.ready_at = time.time()
        self._ready.set()

    async def pipeline(self, kind: str) -> Pipeline:
        """The pipeline of `tweets` or `news`, once everything it needs is up."""
        await self._ready.wait()
        return self.pipelines[kind]

    def abandon(self) -> None:
        """The worker is stopping: batches in progress stop where they are (unacked, so
        never committed; they are delivered again after the restart)."""
        self._abandon.set()

    async def unless_abandoned(self, work: Awaitable[None]) -> bool:
        """Run `work`; False if the worker began to stop first (`work` is then cancelled).

        Without this, a batch retrying against a dependency that is down would hold the
        shutdown for as long as the outage lasts: Faust waits for every delivered message to
        be acked before it stops.
        """
        if self._abandon.is_set():
            return False
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._abandon.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            task.result()  # its exception, if any
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False

    async def on_stop(self) -> None:
        for clf in self.classifiers.values():
            try:
                await clf.close()
            except Exception:
                log.exception("error while closing classifier %s", clf.name)
        await self.sink.close()


def on_leader_every(
    app: AppT, interval: float, name: str, check: Callable[[], Awaitable[object]], what: str
) -> None:
    """Run `check` every `interval` seconds on the leader worker. A failing check is logged,
    never raised: an exception would stop the timer, and the next tick tries again."""

    @app.timer(interval=interval, on_leader=True, name=name)
    async def tick() -> None:
        try:
            await check()
        except Exception as exc:
            log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)
