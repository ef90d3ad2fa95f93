"""The Expert.ai NL API backend: sentiment and hate-speech detection over REST.

The official `expertai-nlapi` SDK is synchronous and not on our registry, so this is a small
async client on aiohttp for the documented wire format:

- `POST {token_url}` with `{"username", "password"}` answers a bare JWT (text, not JSON); it is
  cached and renewed `token_margin` seconds before its `exp`, one refresh at a time;
- `POST {api_url}/analyze/standard/{lang}/sentiment` and
  `POST {api_url}/detect/hate-speech/{lang}` with `{"document": {"text": ...}}` and
  `Authorization: Bearer <jwt>`; both are sent for every text, at most `concurrency` requests
  in flight across the batch.

Per-text problems (an API error body, 413, retries of 429/5xx/connection errors exhausted) end
in `PartialFailure` with the other texts' results intact; a token endpoint that is unreachable
or rejects the credentials fails the whole batch with an `ExpertAiError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamapp.classifiers.base import Classifier, Langs, PartialFailure, sentiment_label
from streamapp.models import Analysis

log = logging.getLogger(__name__)

T = TypeVar("T")

USERNAME_ENV = "EAI_USERNAME"
PASSWORD_ENV = "EAI_PASSWORD"
SUPPORTED_LANGUAGES = frozenset({"de", "en", "es", "fr", "it"})
#: The NL API refuses documents over 10 KB; longer texts are cut to fit instead of failing.
MAX_TEXT_BYTES = 10_240
#: Used only when a token carries no readable `exp` (Expert.ai's tokens last 24 h, so this is
#: conservative and merely costs an extra token request now and then).
FALLBACK_TOKEN_LIFETIME = 600.0

#: The hate-speech taxonomy by category id, for items that come without a `label`/`hierarchy`.
TAXONOMY: dict[str, tuple[str, ...]] = {
    "1000": ("Personal Insult",),
    "2000": ("Discrimination and Harassment",),
    "2100": ("Discrimination and Harassment", "Racism"),
    "2200": ("Discrimination and Harassment", "Sexism"),
    "2300": ("Discrimination and Harassment", "Ableism"),
    "2400": ("Discrimination and Harassment", "Religious Hatred"),
    "2500": ("Discrimination and Harassment", "Homophobia"),
    "2600": ("Discrimination and Harassment", "Classism"),
    "2700": ("Discrimination and Harassment", "Body Shaming"),
    "3000": ("Threat and Violence",),
}


class ExpertAiSettings(BaseSettings):
    """`STREAMAPP_EXPERTAI_*`, except the credentials: `EAI_USERNAME` / `EAI_PASSWORD`, the
    names Expert.ai's own SDK reads, so one set of variables serves both."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMAPP_EXPERTAI_", extra="ignore", populate_by_name=True
    )

    token_url: str = "https://developer.expert.ai/oauth2/token"
    api_url: str = "https://nlapi.expert.ai/v2"
    #: HTTP requests in flight at once, over all texts of a batch (each text needs two).
    concurrency: int = Field(4, ge=1, le=64)
    timeout: float = Field(30.0, gt=0, description="seconds per HTTP request")
    #: Attempts of one request on 429 / 5xx / connection errors before its text fails.
    max_attempts: int = Field(4, ge=1)
    retry_initial: float = Field(0.5, ge=0, description="first backoff delay, seconds")
    #: Cap of the backoff delay, and of a server's `Retry-After`: a batch holds up its stream.
    retry_max: float = Field(30.0, ge=0)
    #: Renew the token this many seconds before its `exp`.
    token_margin: float = Field(60.0, ge=0)
    username: str | None = Field(None, validation_alias=USERNAME_ENV)
    password: SecretStr | None = Field(None, validation_alias=PASSWORD_ENV)


class ExpertAiError(Exception):
    """The whole batch failed: the service cannot be used right now (or at all)."""


class ExpertAiConfigError(ExpertAiError):
    """Credentials are not configured."""


class ExpertAiAuthError(ExpertAiError):
    """Expert.ai rejected the credentials (or a freshly issued token)."""


class ExpertAiUnavailable(ExpertAiError):
    """The token endpoint could not be reached or answered something unusable."""


class _TextFailed(Exception):
    """One request of one text failed for good; the reason ends up in PartialFailure."""


def supported_language(lang: str | None) -> str | None:
    """The API's language code for `lang` ("en", "EN", "en-GB" -> "en"), None if unsupported."""
    if not lang:
        return None
    code = re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
    return code if code in SUPPORTED_LANGUAGES else None


def truncate_utf8(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    # errors="ignore" drops only the partial multi-byte sequence left at the cut.
    return data[:limit].decode("utf-8", errors="ignore")


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (unix seconds), unverified: only used to schedule renewal."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


def snake_case(label: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")


def hate_categories(categories: Sequence[Any]) -> list[str]:
    """Every category's hierarchy, ancestors first, as snake_case names without repeats."""
    names: list[str] = []
    for item in categories:
        if not isinstance(item, dict):
            continue
        path = item.get("hierarchy")
        if not isinstance(path, list) or not path:
            path = list(TAXONOMY.get(str(item.get("id")), ()))
        label = item.get("label")
        if isinstance(label, str) and label and (not path or path[-1] != label):
            path = [*path, label]
        for part in path:
            name = snake_case(str(part))
            if name and name not in names:
                names.append(name)
    return names


def hate_targets(extractions: Sequence[Any]) -> list[str]:
    targets: list[str] = []
    for extraction in extractions:
        fields = extraction.get("fields") if isinstance(extraction, dict) else None
        for field in fields if isinstance(fields, list) else []:
            if not isinstance(field, dict) or field.get("name") != "target":
                continue
            value = field.get("value")
            if isinstance(value, str) and value.strip() and value.strip() not in targets:
                targets.append(value.strip())
    return targets


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ExpertAiClassifier(Classifier):
    name = "expertai"
    version = "nlapi-v2"

    def __init__(self, settings: ExpertAiSettings | None = None) -> None:
        self.settings = settings or ExpertAiSettings()
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        self._token_lock = asyncio.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._token_fetches = 0
        self._token_failure: ExpertAiError | None = None
        self._counters = {
            "requests": 0,
            "retries": 0,
            "token_renewals": 0,
            "failures": 0,
        }
        # Seams for tests: the wall clock compared with `exp`, and the backoff sleep.
        self._clock: Callable[[], float] = time.time
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def stats(self) -> dict[str, int]:
        """requests: API requests sent (retries included, token requests not); retries: of
        those, re-sent ones; token_renewals: tokens obtained (the first included); failures:
        texts that could not be classified."""
        return dict(self._counters)

    async def start(self) -> None:
        password = self.settings.password.get_secret_value() if self.settings.password else ""
        missing = [
            env
            for env, value in ((USERNAME_ENV, self.settings.username), (PASSWORD_ENV, password))
            if not (value or "").strip()
        ]
        if missing:
            raise ExpertAiConfigError(
                f"the expertai classifier needs Expert.ai credentials: set {' and '.join(missing)}"
                f" ({USERNAME_ENV}/{PASSWORD_ENV} of a developer.expert.ai account)"
            )
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def supports_language(self, lang: str | None) -> bool:
        return supported_language(lang) is not None

    async def classify(self, texts: Sequence[str], langs: Langs = None) -> list[Analysis]:
        if not texts:
            return []
        if self._session is None:
            raise RuntimeError("ExpertAiClassifier.start() was not called")
        lang_list = list(langs) if langs is not None else [None] * len(texts)
        if len(lang_list) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(lang_list)} languages")
        # Per-text failures come back as strings; anything raised is fatal for the batch.
        outcomes = await _all_or_cancel(
            [self._classify_one(t, lang) for t, lang in zip(texts, lang_list, strict=True)]
        )
        results: list[Analysis | None] = []
        reasons: dict[int, str] = {}
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, str):
                results.append(None)
                reasons[i] = outcome
            else:
                results.append(outcome)
        if reasons:
            self._counters["failures"] += len(reasons)
            raise PartialFailure(results, reasons)
        return [r for r in results if r is not None]

    async def _classify_one(self, text: str, lang: str | None) -> Analysis | str:
        code = supported_language(lang)
        if code is None:
            return f"expertai: language {lang!r} is not supported"
        text = truncate_utf8(text)
        if not text.strip():
            # Nothing to analyse; the API would only answer an error for an empty document.
            return self._analysis(0.0, [], [])
        base = self.settings.api_url.rstrip("/")
        try:
            sentiment, hate = await _all_or_cancel(
                [
                    self._post(f"{base}/analyze/standard/{code}/sentiment", text, "sentiment"),
                    self._post(f"{base}/detect/hate-speech/{code}", text, "hate-speech"),
                ]
            )
        except _TextFailed as exc:
            return str(exc)
        try:
            overall = float(sentiment["sentiment"]["overall"])
        except (KeyError, TypeError, ValueError):
            return "expertai sentiment: response without data.sentiment.overall"
        categories = hate.get("categories") or []
        extractions = hate.get("extractions") or []
        if not isinstance(categories, list) or not isinstance(extractions, list):
            return "expertai hate-speech: malformed categories/extractions"
        return self._analysis(overall, categories, extractions)

    def _analysis(self, overall: float, categories: list[Any], extractions: list[Any]) -> Analysis:
        score = max(-1.0, min(1.0, overall / 100.0))
        names = hate_categories(categories)
        return Analysis(
            sentiment_label=sentiment_label(score),
            sentiment_score=round(score, 4),
            hate=bool(names),
            # The API gives categories with relevance scores but no probability of hate, so
            # "any category detected" is all that can honestly be said: 1.0 or 0.0.
            hate_score=1.0 if names else 0.0,
            hate_categories=names,
            classifier=self.name,
            classifier_version=self.version,
            hate_targets=hate_targets(extractions),
        )

    async def _post(self, url: str, text: str, what: str) -> dict[str, Any]:
        """`data` of a successful answer; _TextFailed when this text cannot be done."""
        assert self._session is not None
        body = {"document": {"text": text}}
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            token = await self._get_token()
            retry_after: float | None = None
            try:
                async with self._semaphore:
                    self._counters["requests"] += 1
                    async with self._session.post(
                        url, json=body, headers={"Authorization": f"Bearer {token}"}
                    ) as resp:
                        status = resp.status
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"expertai {what}: {type(exc).__name__} {exc}".strip()
            else:
                payload = _json(raw)
                if status == 401:
                    if renewed:
                        # A token issued moments ago is refused too: every request would be.
                        raise ExpertAiAuthError(
                            f"Expert.ai {what} refused a freshly issued token (HTTP 401); check "
                            f"the account of {USERNAME_ENV}"
                        )
                    renewed = True
                    attempt -= 1  # a stale token is not the server's failure
                    self._counters["retries"] += 1
                    await self._get_token(stale=token)
                    continue
                if status == 413:
                    raise _TextFailed(
                        f"expertai {what}: HTTP 413, document too large for the API "
                        f"({len(text.encode('utf-8'))} bytes)"
                    )
                message = _error_message(payload)
                reason = f"expertai {what}: HTTP {status}" + (f": {message}" if message else "")
                # 429/5xx are retried even with a `success: false` body: both say "later".
                if status != 429 and status < 500:
                    if isinstance(payload, dict) and payload.get("success") is False:
                        raise _TextFailed(reason)
                    if not 200 <= status < 300:
                        raise _TextFailed(reason)
                    data = payload.get("data") if isinstance(payload, dict) else None
                    if not isinstance(data, dict):
                        raise _TextFailed(f"expertai {what}: response without a `data` object")
                    return data
            if attempt >= self.settings.max_attempts:
                raise _TextFailed(f"{reason} (after {attempt} attempts)")
            delay = self._backoff(attempt, retry_after)
            log.warning("%s; retry %d in %.2fs", reason, attempt, delay)
            self._counters["retries"] += 1
            await self._sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = self.settings.retry_max
        if retry_after is not None:
            return min(retry_after, cap)
        ceiling = min(cap, self.settings.retry_initial * 2 ** (attempt - 1))
        # "Equal jitter": half fixed so the delay still grows, half random so the concurrent
        # requests of a batch that hit the same 429 do not come back in lockstep.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _get_token(self, stale: str | None = None) -> str:
        """The cached token, or a new one; `stale` is a token the API just refused."""
        token = self._token
        if token is not None and token != stale and self._clock() < self._renew_at:
            return token
        generation = self._token_fetches
        async with self._token_lock:
            # Whoever held the lock before may have renewed it already: no stampede.
            token = self._token
            if token is not None and token != stale and self._clock() < self._renew_at:
                return token
            # ... or failed while this task waited: share that answer instead of asking again
            # (the batch is failing anyway; the next batch tries afresh).
            failure = self._token_failure
            if failure is not None and generation != self._token_fetches:
                raise type(failure)(str(failure))
            try:
                token, exp = await self._fetch_token()
            except ExpertAiError as exc:
                self._token_failure = exc
                raise
            finally:
                self._token_fetches += 1  # completed fetches, failed ones included
            self._token_failure = None
            now = self._clock()
            lifetime = exp - now
            # A margin longer than the token's life would renew on every request.
            self._renew_at = exp - min(self.settings.token_margin, lifetime / 2)
            self._token = token
            self._counters["token_renewals"] += 1
            log.info("expertai token renewed, valid for %.0fs", lifetime)
            return token

    async def _fetch_token(self) -> tuple[str, float]:
        assert self._session is not None
        username = self.settings.username or ""
        password = self.settings.password.get_secret_value() if self.settings.password else ""
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                async with self._session.post(
                    self.settings.token_url, json={"username": username, "password": password}
                ) as resp:
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"cannot reach the Expert.ai token endpoint: {type(exc).__name__}"
            else:
                if status in (400, 401, 403):
                    raise ExpertAiAuthError(
                        f"Expert.ai rejected the credentials (HTTP {status}): check "
                        f"{USERNAME_ENV} and {PASSWORD_ENV}"
                    )
                if status == 200:
                    token = raw.decode("utf-8", errors="replace").strip()
                    if token.count(".") != 2 or any(c.isspace() for c in token):
                        raise ExpertAiUnavailable(
                            "the Expert.ai token endpoint answered something that is not a JWT"
                        )
                    exp = jwt_expiry(token)
                    return token, exp if exp is not None else (
                        self._clock() + FALLBACK_TOKEN_LIFETIME
                    )
                reason = f"the Expert.ai token endpoint answered HTTP {status}"
                if status != 429 and status < 500:
                    raise ExpertAiUnavailable(reason)
            if attempt >= self.settings.max_attempts:
                raise ExpertAiUnavailable(f"{reason} (after {attempt} attempts)")
            delay = self._backoff(attempt, retry_after)
            log.warning("%s; retry %d in %.2fs", reason, attempt, delay)
            await self._sleep(delay)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _error_message(payload: Any) -> str:
    """The `errors[]` of an NL API error body, as one line."""
    if not isinstance(payload, dict):
        return ""
    errors = payload.get("errors")
    if not isinstance(errors, list):
        return ""
    parts = []
    for err in errors:
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
            parts.append(": ".join(str(p) for p in (code, message) if p))
    return "; ".join(p for p in parts if p)


async def _all_or_cancel(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Like gather, but the first exception cancels the rest (so no request keeps retrying
    for a batch that has already failed) and is raised once they are gone."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for t in tasks:
            t.cancel()  # no-op for the finished ones
        # Awaits the cancelled ones and marks every exception retrieved, also when this
        # coroutine is itself being cancelled.
        await asyncio.gather(*tasks, return_exceptions=True)
    failed = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    if failed:
        # A batch-level error wins over a per-text one that happened to finish first.
        fatal = [e for e in failed if not isinstance(e, _TextFailed)]
        raise (fatal or failed)[0]  # type: ignore[misc]
    return [t.result() for t in tasks]
