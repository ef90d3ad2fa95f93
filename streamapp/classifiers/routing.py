"""Which backend classifies which message, and what happens when it cannot.

Per input topic, one `Router` wraps the configured backend:

- languages outside `STREAMAPP_LANGUAGES` (when set) are not classified at all: the message
  is still indexed and counted, labelled `unclassified`, with no scores;
- texts the backend does not support (e.g. Expert.ai outside de/en/es/fr/it) go to the
  offline model, and the document records why (`fallback_reason`);
- texts the backend fails on after its own retries go to the offline model the same way,
  or, with `STREAMAPP_CLASSIFIER_FALLBACK=wait`, the error propagates so the pipeline
  retries the whole batch with backoff and consumes nothing meanwhile. Nothing is dropped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from streamapp.classifiers.base import Classifier, PartialFailure
from streamapp.errors import DependencyError
from streamapp.models import Analysis

log = logging.getLogger(__name__)

UNCLASSIFIED = "unclassified"


class BackendUnavailable(DependencyError):
    """The configured backend failed and `STREAMAPP_CLASSIFIER_FALLBACK=wait`: retry the
    batch, consuming nothing meanwhile."""


FallbackMode = Literal["offline", "wait"]


def unclassified(lang: str | None) -> Analysis:
    return Analysis(
        sentiment_label=UNCLASSIFIED,
        sentiment_score=None,
        hate=False,
        hate_score=None,
        hate_categories=[],
        classifier="none",
        classifier_version="",
        fallback_reason=f"language {lang or 'unknown'} not in STREAMAPP_LANGUAGES",
    )


class Router:
    def __init__(
        self,
        primary: Classifier,
        fallback: Classifier | None,
        *,
        mode: FallbackMode = "offline",
        languages: frozenset[str] | None = None,
    ) -> None:
        if fallback is primary:
            fallback = None
        self.primary = primary
        self.fallback = fallback
        self.mode = mode
        self.languages = languages
        self.counts: Counter[str] = Counter()

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.primary.name,
            "version": self.primary.version,
            "fallback": self.fallback.name if self.fallback else None,
            "fallback_mode": self.mode,
            "languages": sorted(self.languages) if self.languages else "all",
            "counts": dict(self.counts),
        }

    async def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Analysis]:
        results: list[Analysis | None] = [None] * len(texts)
        to_primary: list[int] = []
        to_fallback: dict[int, str] = {}
        for i, lang in enumerate(langs):
            if self.languages is not None and lang not in self.languages:
                results[i] = unclassified(lang)
                self.counts["unclassified"] += 1
            elif self.fallback is not None and not self.primary.supports_language(lang):
                to_fallback[i] = f"{self.primary.name}: language {lang or 'unknown'} unsupported"
            else:
                to_primary.append(i)

        if to_primary:
            sub_texts = [texts[i] for i in to_primary]
            sub_langs = [langs[i] for i in to_primary]
            try:
                for i, a in zip(
                    to_primary, await self.primary.classify(sub_texts, sub_langs), strict=True
                ):
                    results[i] = a
            except PartialFailure as exc:
                if self.fallback is None:
                    raise
                if self.mode == "wait":
                    raise BackendUnavailable(f"{self.primary.name}: {exc}") from exc
                for j, partial in enumerate(exc.results):
                    if partial is None:
                        to_fallback[to_primary[j]] = f"{self.primary.name}: {exc.reasons[j]}"
                    else:
                        results[to_primary[j]] = partial
            except Exception as exc:
                if self.fallback is None:
                    raise  # the offline model failing on its own input: the message's fault
                if self.mode == "wait":
                    raise BackendUnavailable(f"{self.primary.name}: {exc!r}") from exc
                log.warning(
                    "%s failed for %d texts (%s); classifying them offline",
                    self.primary.name,
                    len(to_primary),
                    exc,
                )
                reason = f"{self.primary.name}: {type(exc).__name__}: {exc}"[:300]
                to_fallback.update(dict.fromkeys(to_primary, reason))

        if to_fallback:
            assert self.fallback is not None
            order = sorted(to_fallback)
            analyses = await self.fallback.classify(
                [texts[i] for i in order], [langs[i] for i in order]
            )
            for i, a in zip(order, analyses, strict=True):
                a.fallback_reason = to_fallback[i][:300]
                results[i] = a
                self.counts["fallback"] += 1
        self.counts[self.primary.name] += len(set(to_primary) - set(to_fallback))
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]
