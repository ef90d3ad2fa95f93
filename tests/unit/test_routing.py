"""Backend selection, language restriction and fallback (no network, no Kafka)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from streamapp.classifiers.base import Classifier, Langs, PartialFailure
from streamapp.classifiers.routing import UNCLASSIFIED, BackendUnavailable, Router
from streamapp.models import Analysis
from streamapp.pipeline import is_dependency_failure


def analysis(by: str, text: str) -> Analysis:
    return Analysis(
        sentiment_label="positive" if "good" in text else "negative",
        sentiment_score=0.5 if "good" in text else -0.5,
        hate=False,
        hate_score=0.0,
        hate_categories=[],
        classifier=by,
        classifier_version="1",
    )


class Backend(Classifier):
    """A scripted backend: supports `langs`; a remote one fails texts containing "fail", or
    everything when `down`."""

    def __init__(self, name: str, langs: set[str] | None = None, down: bool = False) -> None:
        self.name = name
        self.version = "1"
        self.langs = langs
        self.down = down
        self.calls: list[list[str]] = []

    def supports_language(self, lang: str | None) -> bool:
        return self.langs is None or lang in self.langs

    async def classify(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        self.calls.append(list(texts))
        if self.down:
            raise ConnectionError("service unreachable")
        results: list[Analysis | None] = [
            None if "fail" in t and self.name != "offline" else analysis(self.name, t)
            for t in texts
        ]
        reasons = {i: "HTTP 503 after 5 attempts" for i, r in enumerate(results) if r is None}
        if reasons:
            raise PartialFailure(results, reasons)
        return [r for r in results if r is not None]


async def test_supported_texts_go_to_the_backend_others_fall_back_with_a_reason() -> None:
    remote, offline = Backend("remote", langs={"en", "de"}), Backend("offline")
    router = Router(remote, offline)
    out = await router.classify(["good en", "bad pt", "good none"], ["en", "pt", None])
    assert [a.classifier for a in out] == ["remote", "offline", "offline"]
    assert out[0].fallback_reason is None
    assert out[1].fallback_reason == "remote: language pt unsupported"
    assert out[2].fallback_reason == "remote: language unknown unsupported"
    assert remote.calls == [["good en"]] and offline.calls == [["bad pt", "good none"]]
    assert router.counts == {"remote": 1, "fallback": 2}


async def test_texts_failing_after_retries_are_classified_offline_and_marked() -> None:
    remote, offline = Backend("remote"), Backend("offline")
    out = await Router(remote, offline).classify(["good", "fail me", "bad"], ["en"] * 3)
    assert [a.classifier for a in out] == ["remote", "offline", "remote"]
    assert out[1].fallback_reason == "remote: HTTP 503 after 5 attempts"
    assert out[1].sentiment_label == "negative"


async def test_backend_down_falls_back_for_the_whole_batch() -> None:
    out = await Router(Backend("remote", down=True), Backend("offline")).classify(
        ["good", "bad"], ["en", "en"]
    )
    assert [a.classifier for a in out] == ["offline", "offline"]
    assert all("ConnectionError: service unreachable" in (a.fallback_reason or "") for a in out)


@pytest.mark.parametrize("down", [True, False])
async def test_wait_mode_raises_so_the_pipeline_retries_the_batch(down: bool) -> None:
    offline = Backend("offline")
    router = Router(Backend("remote", down=down), offline, mode="wait")
    with pytest.raises(BackendUnavailable) as err:
        await router.classify(["good", "fail"], ["en", "en"])
    assert isinstance(err.value.__cause__, ConnectionError | PartialFailure)
    # A dependency failure: the pipeline retries the batch rather than blaming a message.
    assert is_dependency_failure(err.value)
    assert offline.calls == []  # nothing classified behind the user's back


async def test_languages_outside_the_setting_are_indexed_unclassified() -> None:
    remote, offline = Backend("remote"), Backend("offline")
    router = Router(remote, offline, languages=frozenset({"en"}))
    out = await router.classify(["good", "gut", "?"], ["en", "de", None])
    assert out[0].classifier == "remote"
    for a in out[1:]:
        assert a.sentiment_label == UNCLASSIFIED
        assert a.sentiment_score is None and a.hate_score is None and not a.hate
        assert "not in STREAMAPP_LANGUAGES" in (a.fallback_reason or "")
    assert remote.calls == [["good"]] and offline.calls == []


async def test_offline_primary_needs_no_fallback() -> None:
    offline = Backend("offline")
    router = Router(offline, offline)
    assert router.fallback is None
    out = await router.classify(["good"], [None])
    assert out[0].classifier == "offline" and out[0].fallback_reason is None
