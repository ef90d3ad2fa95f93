"""The classifier seam: batches of texts in, one Analysis per text out."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from streamapp.models import Analysis

SENTIMENT_LABELS = ("negative", "neutral", "positive")


class Classifier(abc.ABC):
    """Async and batch-oriented: remote backends send one request per batch (or bounded
    concurrent requests), local models vectorise; both keep the event loop free."""

    name: str
    version: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load models or open connections."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    @abc.abstractmethod
    async def classify(self, texts: Sequence[str]) -> list[Analysis]:
        """Return exactly one Analysis per input text, in order."""


class ThreadedClassifier(Classifier):
    """A CPU-bound model run in one worker thread, so a batch never blocks the event loop
    (Kafka heartbeats and web views keep running while it computes)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)

    @abc.abstractmethod
    def classify_sync(self, texts: Sequence[str]) -> list[Analysis]: ...

    async def classify(self, texts: Sequence[str]) -> list[Analysis]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self.classify_sync, list(texts))
        if len(results) != len(texts):
            raise RuntimeError(f"{self.name} returned {len(results)} results for {len(texts)}")
        return results

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def sentiment_label(score: float, neutral_band: float = 0.05) -> str:
    if score >= neutral_band:
        return "positive"
    if score <= -neutral_band:
        return "negative"
    return "neutral"
