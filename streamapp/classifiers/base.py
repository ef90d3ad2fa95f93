"""The classifier seam: batches of texts in, one Analysis per text out."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from streamapp.models import Analysis

SENTIMENT_LABELS = ("negative", "neutral", "positive")

Langs = Sequence[str | None] | None


class PartialFailure(Exception):
    """Some texts of a batch could not be classified (after the backend's own retries).

    `results[i]` is the Analysis of text i, or None when it failed; `reasons[i]` says why.
    The caller decides what happens to the failed ones (fallback model, or wait and retry).
    """

    def __init__(self, results: list[Analysis | None], reasons: dict[int, str]) -> None:
        super().__init__(f"{len(reasons)} of {len(results)} texts failed: {_first(reasons)}")
        self.results = results
        self.reasons = reasons


def _first(reasons: dict[int, str]) -> str:
    return next(iter(reasons.values()), "")


class Classifier(abc.ABC):
    """Async and batch-oriented: remote backends send one request per batch (or bounded
    concurrent requests), local models vectorise; both keep the event loop free.

    `langs[i]` is the ISO 639-1 language of `texts[i]` when known (None otherwise).
    A backend that cannot classify some texts raises PartialFailure; one that cannot reach
    its service at all raises any other exception (the whole batch then counts as failed).
    """

    name: str
    version: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load models or open connections."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    def supports_language(self, lang: str | None) -> bool:
        """False routes the text to the fallback model instead (recorded in the document)."""
        return True

    @abc.abstractmethod
    async def classify(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        """Return exactly one Analysis per input text, in order."""


class ThreadedClassifier(Classifier):
    """A CPU-bound model run in one worker thread, so a batch never blocks the event loop
    (Kafka heartbeats and web views keep running while it computes)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)

    @abc.abstractmethod
    def classify_sync(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]: ...

    async def classify(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(
            self._executor, self.classify_sync, list(texts), None if langs is None else list(langs)
        )
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
