"""The Expert.ai backend against a local server speaking the NL API's wire format (token endpoint
included). No Kafka or Elasticsearch involved: this is the HTTP client's behaviour."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from helpers import free_port
from servers.expertai_server import ExpertAiServer

from streamapp.classifiers.base import PartialFailure
from streamapp.classifiers.expertai import (
    MAX_TEXT_BYTES,
    ExpertAiAuthError,
    ExpertAiClassifier,
    ExpertAiConfigError,
    ExpertAiSettings,
    ExpertAiUnavailable,
    hate_categories,
    jwt_expiry,
    truncate_utf8,
)
from streamapp.models import Analysis

Factory = Callable[..., Awaitable[ExpertAiClassifier]]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own Expert.ai account and settings must not leak into the tests.
    for var in list(os.environ):
        if var.startswith("STREAMAPP_EXPERTAI_") or var in ("EAI_USERNAME", "EAI_PASSWORD"):
            monkeypatch.delenv(var)


@pytest.fixture
async def server() -> AsyncIterator[ExpertAiServer]:
    async with ExpertAiServer() as srv:
        yield srv


def settings_for(server: ExpertAiServer, **overrides: Any) -> ExpertAiSettings:
    values: dict[str, Any] = {
        "username": server.username,
        "password": server.password,
        "token_url": server.token_url,
        "api_url": server.api_url,
        "timeout": 5.0,
        "max_attempts": 3,
        "retry_initial": 0.001,
        "retry_max": 0.01,
    }
    values.update(overrides)
    return ExpertAiSettings(**values)


@pytest.fixture
async def make_classifier(server: ExpertAiServer) -> AsyncIterator[Factory]:
    started: list[ExpertAiClassifier] = []

    async def make(**overrides: Any) -> ExpertAiClassifier:
        clf = ExpertAiClassifier(settings_for(server, **overrides))
        await clf.start()
        started.append(clf)
        return clf

    yield make
    for clf in started:
        await clf.close()


def record_sleeps(clf: ExpertAiClassifier) -> list[float]:
    """Replace the backoff sleep by one that records the delay and returns at once."""
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    clf._sleep = sleep
    return delays


def texts_of(server: ExpertAiServer, kind: str = "") -> list[str]:
    return [r.body["document"]["text"] for r in server.api_requests(kind)]


async def test_token_fetched_once_and_cached_across_batches(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    # A slow token endpoint: without the lock, the 4 concurrent first requests would each ask.
    server.token_delay = 0.05
    clf = await make_classifier(concurrency=4)
    batch = ["good day", "bad day", "great", "nothing to say", "love it", "awful"]
    first = await clf.classify(batch, ["en"] * len(batch))
    second = await clf.classify(batch[:3], ["en"] * 3)
    assert len(first) == 6 and len(second) == 3
    tokens = server.token_requests()
    assert len(tokens) == 1
    assert tokens[0].body == {"username": server.username, "password": server.password}
    issued = next(iter(server.tokens))
    api = server.api_requests()
    assert len(api) == 2 * 9
    assert {r.headers["Authorization"] for r in api} == {f"Bearer {issued}"}
    assert all(set(r.body) == {"document"} and set(r.body["document"]) == {"text"} for r in api)
    assert sorted(texts_of(server, "/sentiment")) == sorted(batch + batch[:3])
    assert sorted(texts_of(server, "/hate-speech/en")) == sorted(batch + batch[:3])
    assert clf.stats == {"requests": 18, "retries": 0, "token_renewals": 1, "failures": 0}


async def test_token_renewed_within_the_margin_before_exp(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    server.token_ttl = 3600
    clf = await make_classifier(token_margin=60)
    await clf.classify(["good"], ["en"])
    exp = jwt_expiry(next(iter(server.tokens)))
    assert exp is not None
    # 90 s before exp: outside the margin, the cached token is still used.
    clf._clock = lambda: exp - 90
    await clf.classify(["good"], ["en"])
    assert len(server.token_requests()) == 1
    # 30 s before exp: inside the margin, renewed before the request is sent.
    server.token_ttl = 7200
    clf._clock = lambda: exp - 30
    await clf.classify(["good"], ["en"])
    assert len(server.token_requests()) == 2
    await clf.classify(["good"], ["en"])
    assert len(server.token_requests()) == 2
    newest = max(server.tokens, key=lambda t: server.tokens[t])
    assert server.api_requests()[-1].headers["Authorization"] == f"Bearer {newest}"
    assert clf.stats["token_renewals"] == 2


async def test_401_renews_the_token_once_and_retries(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier()
    await clf.classify(["good"], ["en"])
    server.revoke_tokens()
    [result] = await clf.classify(["love it"], ["en"])
    assert result.sentiment_label == "positive"
    # Both requests of the text got 401 with the same stale token: one renewal, not two.
    assert len(server.token_requests()) == 2
    sent = [r for r in server.api_requests() if r.body["document"]["text"] == "love it"]
    assert len(sent) == 4
    assert clf.stats["retries"] == 2 and clf.stats["token_renewals"] == 2

    # A freshly issued token refused as well is an account problem: the batch fails.
    server.revoke_tokens()
    server.fail_next(401, 10)
    with pytest.raises(ExpertAiAuthError, match="freshly issued token"):
        await clf.classify(["good"], ["en"])


async def test_sentiment_overall_maps_to_score_and_label(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier()
    texts = ["overall=40", "overall=-80", "overall=2", "overall=150", "good great day", "worst"]
    results = await clf.classify(texts, ["en"] * len(texts))
    got = [(r.sentiment_label, r.sentiment_score) for r in results]
    assert got == [
        ("positive", 0.4),
        ("negative", -0.8),
        ("neutral", 0.02),
        ("positive", 1.0),  # clamped
        ("positive", 0.5),  # two positive words, 25 each
        ("negative", -0.25),
    ]
    for r in results:
        assert (r.hate, r.hate_score, r.hate_categories, r.hate_targets) == (False, 0.0, [], [])
        assert (r.classifier, r.classifier_version) == ("expertai", "nlapi-v2")
        assert r.fallback_reason is None


async def test_hate_keeps_every_category_with_its_hierarchy_and_targets(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier()
    texts = [
        "@alice you racist idiot, I will kill @bob and @alice",
        "what a sexist snob",
        "a lovely day",
    ]
    first, second, third = await clf.classify(texts, ["en", "fr", "de"])
    assert first.hate and first.hate_score == 1.0
    assert first.hate_categories == [
        "discrimination_and_harassment",
        "racism",
        "personal_insult",
        "threat_and_violence",
    ]
    # Three extractions name the targets, @alice twice in the text: each once, in order.
    assert first.hate_targets == ["@alice", "@bob"]
    # The shared ancestor appears once.
    assert second.hate_categories == ["discrimination_and_harassment", "sexism", "classism"]
    assert second.hate_targets == []
    assert not third.hate and third.hate_categories == [] and third.hate_score == 0.0
    langs = {r.path.rsplit("/", 1)[-1] for r in server.api_requests("hate-speech")}
    assert langs == {"en", "fr", "de"}


async def test_blank_text_is_neutral_without_a_request(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier()
    blank, good = await clf.classify(["  \n", "good"], ["en", "en"])
    assert (blank.sentiment_label, blank.hate) == ("neutral", False)
    assert good.sentiment_label == "positive"
    assert texts_of(server) == ["good", "good"]


def test_hate_categories_without_hierarchy_use_the_taxonomy() -> None:
    assert hate_categories([{"id": "2700"}, {"id": "1000", "label": "Personal Insult"}]) == [
        "discrimination_and_harassment",
        "body_shaming",
        "personal_insult",
    ]


async def test_413_and_error_bodies_fail_only_their_text(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    server.max_bytes = 200  # a stricter server than the documented 10 KB
    clf = await make_classifier()
    texts = ["good", "x" * 300, "[[fail]] this one", "awful"]
    with pytest.raises(PartialFailure) as info:
        await clf.classify(texts, ["en"] * 4)
    err = info.value
    assert set(err.reasons) == {1, 2}
    assert "413" in err.reasons[1]
    assert "PREPARE_DOCUMENT_FAILED" in err.reasons[2]
    assert "the document could not be analysed" in err.reasons[2]
    ok = [err.results[0], err.results[3]]
    assert all(isinstance(r, Analysis) for r in ok)
    assert [r.sentiment_label for r in ok if r] == ["positive", "negative"]
    assert err.results[1] is None and err.results[2] is None
    # Neither a 413 nor an error body is worth a retry.
    assert sum(t == "x" * 300 for t in texts_of(server)) <= 2
    assert clf.stats["retries"] == 0 and clf.stats["failures"] == 2


async def test_429_and_503_are_retried_with_backoff_then_succeed(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier(max_attempts=4, retry_initial=0.1, retry_max=5.0)
    delays = record_sleeps(clf)
    server.fail_next(429, 1, retry_after="2")
    server.fail_next(503, 2)
    [result] = await clf.classify(["great"], ["en"])
    assert result.sentiment_label == "positive"
    # 2 requests answered + 3 failed ones re-sent.
    assert len(server.api_requests()) == 5
    assert clf.stats["retries"] == 3 and clf.stats["failures"] == 0
    assert len(delays) == 3
    assert 2.0 in delays  # Retry-After honoured
    backoffs = list(delays)
    backoffs.remove(2.0)
    # Jittered exponential backoff from retry_initial: within [half, full] of 0.1 * 2**n.
    assert all(0.05 <= d <= 0.2 for d in backoffs), backoffs


async def test_retry_after_is_capped_at_retry_max(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier(retry_max=0.5)
    delays = record_sleeps(clf)
    server.fail_next(429, 1, retry_after="3600")
    await clf.classify(["good"], ["en"])
    assert delays == [0.5]


async def test_persistent_5xx_ends_in_partial_failure_after_max_attempts(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier(max_attempts=3)
    texts = ["good", "[[503]] down", "bad"]
    with pytest.raises(PartialFailure) as info:
        await clf.classify(texts, ["en"] * 3)
    err = info.value
    assert set(err.reasons) == {1}
    assert "503" in err.reasons[1] and "after 3 attempts" in err.reasons[1]
    assert err.results[0] is not None and err.results[0].sentiment_label == "positive"
    assert err.results[2] is not None and err.results[2].sentiment_label == "negative"
    per_path = [
        sum(t == texts[1] for t in texts_of(server, kind)) for kind in ("sentiment", "hate")
    ]
    # The first request to give up cancels its sibling, which may not have used all attempts.
    assert max(per_path) == 3 and min(per_path) <= 3
    assert clf.stats["failures"] == 1


async def test_connection_errors_are_retried_then_fail_the_texts(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier(api_url=f"http://127.0.0.1:{free_port()}/v2", max_attempts=2)
    with pytest.raises(PartialFailure) as info:
        await clf.classify(["good", "bad"], ["en", "en"])
    err = info.value
    assert err.results == [None, None]
    assert all("after 2 attempts" in r for r in err.reasons.values())
    assert clf.stats["retries"] >= 2


async def test_requests_in_flight_never_exceed_the_concurrency(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    server.delay = 0.03
    clf = await make_classifier(concurrency=3)
    texts = [f"text number {i} good" for i in range(8)]
    started = time.perf_counter()
    results = await clf.classify(texts, ["en"] * 8)
    print(f"16 requests, 3 in flight, 30 ms each: {time.perf_counter() - started:.3f}s")
    assert len(results) == 8
    assert len(server.api_requests()) == 16
    assert server.max_in_flight == 3


async def test_long_text_is_truncated_to_fit_10_kb(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier()
    # 1 + 2 * 6000 bytes: the 10,240-byte cut falls inside an "é", which must be dropped whole.
    text = "a" + "é" * 6000
    [result] = await clf.classify([text], ["fr"])
    assert result.classifier == "expertai"
    sent = texts_of(server)
    assert len(sent) == 2
    for s in sent:
        assert len(s.encode("utf-8")) == MAX_TEXT_BYTES - 1
        assert s == text[:5120]


def test_truncate_utf8_cuts_at_a_character_boundary() -> None:
    assert truncate_utf8("short") == "short"
    assert truncate_utf8("ab😀cd", 5) == "ab"  # the emoji is 4 bytes: it does not fit
    assert truncate_utf8("ab😀cd", 6) == "ab😀"
    assert truncate_utf8("x" * 20_000) == "x" * MAX_TEXT_BYTES


async def test_unsupported_languages_are_refused(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier()
    for lang in ("en", "de", "es", "fr", "it", "EN", "en-GB", "it_IT"):
        assert clf.supports_language(lang), lang
    for other in ("pt", "nl", "ja", "", None):
        assert not clf.supports_language(other), other
    with pytest.raises(PartialFailure) as info:
        await clf.classify(["good", "bom dia", "unknown"], ["en", "pt", None])
    assert set(info.value.reasons) == {1, 2}
    assert "'pt'" in info.value.reasons[1] and "None" in info.value.reasons[2]
    # Nothing was sent for the texts the API cannot take.
    assert texts_of(server) == ["good", "good"]


async def test_wrong_credentials_raise_a_clear_error_without_the_password(
    server: ExpertAiServer, make_classifier: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-password-do-not-print"
    clf = await make_classifier(password=secret)
    with pytest.raises(ExpertAiAuthError) as info:
        await clf.classify(["good", "bad", "great"], ["en"] * 3)
    message = str(info.value)
    assert "EAI_USERNAME" in message and "EAI_PASSWORD" in message and "401" in message
    assert secret not in message and secret not in repr(info.value)
    assert secret not in caplog.text and secret not in repr(clf.settings)
    assert server.api_requests() == []
    # The batch failed at once: the other texts did not each try the token endpoint.
    assert len(server.token_requests()) == 1


async def test_missing_credentials_are_named_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = ExpertAiClassifier(ExpertAiSettings())  # importing and building must not fail
    with pytest.raises(ExpertAiConfigError, match="EAI_USERNAME and EAI_PASSWORD"):
        await clf.start()
    monkeypatch.setenv("EAI_USERNAME", "someone@example.com")
    clf = ExpertAiClassifier(ExpertAiSettings())
    with pytest.raises(ExpertAiConfigError) as info:
        await clf.start()
    assert "EAI_PASSWORD" in str(info.value) and "EAI_USERNAME and" not in str(info.value)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAI_USERNAME", "someone@example.com")
    monkeypatch.setenv("EAI_PASSWORD", "pw-from-env")
    monkeypatch.setenv("STREAMAPP_EXPERTAI_CONCURRENCY", "7")
    monkeypatch.setenv("STREAMAPP_EXPERTAI_API_URL", "http://127.0.0.1:1/v2")
    s = ExpertAiSettings()
    assert s.username == "someone@example.com"
    assert s.password is not None and s.password.get_secret_value() == "pw-from-env"
    assert "pw-from-env" not in repr(s)
    assert (s.concurrency, s.api_url) == (7, "http://127.0.0.1:1/v2")
    assert ExpertAiSettings(concurrency=1).token_url == "https://developer.expert.ai/oauth2/token"


async def test_token_endpoint_errors_are_retried_then_fail_the_batch(
    server: ExpertAiServer, make_classifier: Factory
) -> None:
    clf = await make_classifier(max_attempts=3)
    server.fail_token_next(503, 2)
    [result] = await clf.classify(["good"], ["en"])  # third token attempt succeeds
    assert result.sentiment_label == "positive"
    assert len(server.token_requests()) == 3

    down = await make_classifier(token_url=f"http://127.0.0.1:{free_port()}/oauth2/token")
    with pytest.raises(ExpertAiUnavailable, match="token endpoint"):
        await down.classify(["good"], ["en"])
