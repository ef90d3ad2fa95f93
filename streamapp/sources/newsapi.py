"""NewsAPI (newsapi.org) with `newsapi-python`'s `NewsApiClient` -> the news topic.

    NEWSAPI_KEY=... STREAMAPP_NEWSAPI_QUERY='climate' STREAMAPP_NEWSAPI_LANGUAGE=en \
        python -m streamapp.sources.newsapi [--once]

Every `STREAMAPP_NEWSAPI_INTERVAL` seconds (default 900) the source asks `/v2/everything` or
`/v2/top-headlines` for the newest articles, page by page (`pageSize` <= 100, at most
`STREAMAPP_NEWSAPI_MAX_PAGES` pages). Each article becomes one `NewsArticle` keyed by
`article_id(url)`; articles already sent are skipped, by id, across polls and restarts: the ids
(a bounded, least-recently-seen-first set) are saved atomically under
`STREAMAPP_NEWSAPI_STATE_DIR` once Kafka has acknowledged the records.

Plan limits: the free (developer) plan allows about 100 requests a day and 100 results per
query. The defaults (one page of 100 every 15 minutes = 96 requests a day) stay inside them; a
rolling 24-hour request budget (`STREAMAPP_NEWSAPI_DAILY_REQUEST_LIMIT`, saved with the state)
makes sure a short interval or a restart loop cannot overrun it.

Errors (`{"status": "error", "code", "message"}`): `rateLimited`/`apiKeyExhausted`, server
errors and network failures are retried with exponential backoff, then the poll is given up
until the next one; `maximumResultsReached` (HTTP 426) ends paging without failing, and is
remembered so later polls do not waste a request on it; key errors (401) and bad parameters
stop the source with a `SourceError` naming the setting to fix.

newsapi-python hard-codes `https://newsapi.org`. `STREAMAPP_NEWSAPI_BASE_URL` points it
elsewhere (a proxy, or the local test server) through `RebasingSession`, a `requests.Session`
that rewrites that prefix; the client itself is not patched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import requests
from newsapi import NewsApiClient, const
from newsapi.newsapi_exception import NewsAPIException
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamapp.decoding import SchemaError, check_fields
from streamapp.models import NewsArticle, newsapi_fields
from streamapp.settings import format_errors
from streamapp.sources.base import RecordOutput, Source, SourceError
from streamapp.sources.http import RebasingSession
from streamapp.sources.runner import main_for
from streamapp.sources.state import write_atomically
from streamapp.terms import Terms, newsapi_query

log = logging.getLogger(__name__)

NEWSAPI_ORIGIN = "https://newsapi.org"
_PREFIX = "STREAMAPP_NEWSAPI_"
_DAY = 86_400.0
STATE_FILE = "newsapi-state.json"

# Error codes from https://newsapi.org/docs/errors, grouped by what the source does about them.
KEY_ERRORS = {"apiKeyInvalid", "apiKeyMissing", "apiKeyDisabled"}
RETRY_ERRORS = {"rateLimited", "apiKeyExhausted", "unexpectedError", "transportError"}
PARAMETER_ERRORS = {
    "parameterInvalid",
    "parametersMissing",
    "parametersIncompatible",
    "sourcesTooMany",
    "sourceDoesNotExist",
}
MAX_RESULTS = "maximumResultsReached"
# NewsAPI keeps deleted articles in results as placeholders with this title and no real URL.
REMOVED = "[Removed]"


class NewsApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore", populate_by_name=True)

    endpoint: Literal["everything", "top-headlines"] = "everything"
    #: `q`: keywords or a phrase (NewsAPI's search syntax: AND/OR/NOT, "quotes", +must, -not).
    #: Unset (with no sources or domains either): any of the tracked terms (`STREAMAPP_TERMS`).
    query: str | None = Field(None, max_length=500)
    tracked_terms: Terms = Field(default_factory=list, validation_alias="STREAMAPP_TERMS")
    #: ISO-639-1 code; None = all languages. Also stored as the records' `lang`.
    language: str | None = None
    #: Comma-separated source ids (at most 20), e.g. "bbc-news,reuters".
    sources: str | None = None
    #: Comma-separated domains, e.g. "bbc.co.uk,techcrunch.com" (everything only).
    domains: str | None = None
    #: top-headlines only; cannot be combined with `sources` (NewsAPI's rule).
    country: str | None = None
    category: str | None = None
    #: everything only. publishedAt (newest first) lets a poll stop at the first known page.
    sort_by: Literal["publishedAt", "relevancy", "popularity"] = "publishedAt"
    page_size: int = Field(100, ge=1, le=100)
    #: Developer plans get HTTP 426 beyond 100 results, so one page of 100 is all they can read.
    max_pages: int = Field(1, ge=1, le=100)
    interval: float = Field(900.0, gt=0, description="seconds between polls")
    #: Requests allowed in any 24 hours (the free plan: 100); 0 = no limit.
    daily_request_limit: int = Field(100, ge=0)
    #: Stop paging at a page whose articles were all sent before (newer ones come first).
    stop_at_known_page: bool = True
    backoff_initial: float = Field(60.0, gt=0, description="first delay after rateLimited")
    backoff_max: float = Field(900.0, gt=0)
    max_retries: int = Field(3, ge=0, description="retries of one request before giving up")
    base_url: str = NEWSAPI_ORIGIN
    state_dir: Path = Path(".streamapp-data/newsapi")
    #: How many article ids are remembered for deduplication (oldest forgotten first).
    seen_capacity: int = Field(20_000, ge=100)
    api_key: SecretStr | None = Field(None, validation_alias="NEWSAPI_KEY")

    @field_validator("query", "sources", "domains", "country", "category", "language")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip()

    @field_validator("sources", "domains")
    @classmethod
    def _comma_list(cls, value: str | None) -> str | None:
        if value is None:
            return None
        items = [item.strip() for item in value.split(",") if item.strip()]
        return ",".join(items) or None

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and value not in const.languages:
            raise ValueError(f"expected one of {', '.join(sorted(const.languages))}")
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and value not in const.countries:
            raise ValueError("expected a 2-letter country code NewsAPI supports")
        return value

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        if value is not None and value not in const.categories:
            raise ValueError(f"expected one of {', '.join(sorted(const.categories))}")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _scope(self) -> NewsApiSettings:
        if not (self.query or self.sources or self.domains) and self.tracked_terms:
            query = newsapi_query(self.tracked_terms)
            if len(query) > 500:
                raise ValueError(
                    f"STREAMAPP_TERMS make a NewsAPI query of {len(query)} characters (its "
                    f"limit is 500): set {_PREFIX}QUERY to a shorter one"
                )
            self.query = query
        # Checked here so a bad combination fails at start, not as a 400 on every poll.
        if self.sources and len(self.sources.split(",")) > 20:
            raise ValueError(f"{_PREFIX}SOURCES: NewsAPI accepts at most 20 sources")
        if self.endpoint == "everything":
            if not (self.query or self.sources or self.domains):
                raise ValueError(
                    f"the everything endpoint needs {_PREFIX}QUERY, {_PREFIX}SOURCES "
                    f"or {_PREFIX}DOMAINS"
                )
            if self.country or self.category:
                raise ValueError(
                    f"{_PREFIX}COUNTRY and {_PREFIX}CATEGORY only apply to "
                    f"{_PREFIX}ENDPOINT=top-headlines"
                )
        else:
            if self.domains:
                raise ValueError(f"{_PREFIX}DOMAINS only applies to {_PREFIX}ENDPOINT=everything")
            if self.sources and (self.country or self.category):
                raise ValueError(
                    f"NewsAPI cannot mix {_PREFIX}SOURCES with {_PREFIX}COUNTRY/{_PREFIX}CATEGORY"
                )
            if not (self.query or self.sources or self.country or self.category or self.language):
                raise ValueError(
                    f"top-headlines needs {_PREFIX}QUERY, {_PREFIX}SOURCES, {_PREFIX}COUNTRY, "
                    f"{_PREFIX}CATEGORY or {_PREFIX}LANGUAGE"
                )
        return self


class SeenIds:
    """Ids of articles already sent, bounded: past `capacity` the least recently seen go.

    An article still in the results keeps being seen, so it stays; only ids that dropped out of
    the results long ago are forgotten, and those would not be returned again anyway."""

    def __init__(self, capacity: int, ids: Iterable[str] = ()) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        for item in ids:
            self.add(item)

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: str) -> None:
        self._ids[item] = None
        self._ids.move_to_end(item)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def touch(self, item: str) -> None:
        self._ids.move_to_end(item)

    def ids(self) -> list[str]:
        return list(self._ids)


class RequestBudget:
    """At most `limit` requests in any 24 hours (wall-clock times, so they survive restarts)."""

    def __init__(self, limit: int, times: Iterable[float] = ()) -> None:
        self.limit = limit
        self.times: deque[float] = deque(sorted(times))

    def _expire(self, now: float) -> None:
        while self.times and self.times[0] <= now - _DAY:
            self.times.popleft()

    def take(self) -> bool:
        now = time.time()
        self._expire(now)
        if self.limit and len(self.times) >= self.limit:
            return False
        self.times.append(now)
        return True

    def next_free(self) -> float:
        """Seconds until a request is allowed again."""
        now = time.time()
        self._expire(now)
        if not self.limit or len(self.times) < self.limit:
            return 0.0
        return self.times[0] + _DAY - now


def to_record(article: dict[str, Any], *, lang: str | None) -> NewsArticle | None:
    """One item of `articles` -> a NewsArticle, or None if it is a placeholder or malformed.

    The fields are checked like the news agent checks them, so nothing is sent that the
    pipeline would put in the dead-letter topic."""
    if not isinstance(article, dict):
        return None
    url = article.get("url")
    if not isinstance(url, str) or not url.strip() or article.get("title") == REMOVED:
        return None
    try:
        fields = check_fields(NewsArticle, newsapi_fields(article, lang=lang))
        return NewsArticle.from_data(fields)
    except (SchemaError, TypeError, ValueError) as exc:
        log.warning("newsapi: skipped a malformed article %s: %s", url[:200], exc)
        return None


class _MaxResults(Exception):
    """HTTP 426: the plan allows no more results for this query."""


class NewsApiSource(Source):
    """Polls NewsAPI and sends each article not sent before to `out`, keyed by its URL's id."""

    name = "newsapi"

    def __init__(self, settings: NewsApiSettings) -> None:
        if settings.api_key is None or not settings.api_key.get_secret_value().strip():
            raise SourceError(
                "set NEWSAPI_KEY to your NewsAPI key (https://newsapi.org/register) "
                "to use the NewsAPI source"
            )
        self.settings = settings
        self.state_path = settings.state_dir / STATE_FILE
        self.polled = 0  # poll cycles completed
        self.requests = 0
        self.received = 0  # articles in responses
        self.sent = 0
        self.duplicates = 0
        self.skipped = 0  # placeholders ("[Removed]") and malformed articles
        self.retries = 0
        self.failed_polls = 0
        self._stop = asyncio.Event()
        self._once = False
        #: Why the last poll ended early (None: it completed), for `--once`.
        self.failure: str | None = None
        seen, times = self._load_state()
        self.seen = SeenIds(settings.seen_capacity, seen)
        self.budget = RequestBudget(settings.daily_request_limit, times)
        # Results this key may read per query, learnt from HTTP 426. Kept in memory only: a
        # restart (e.g. after a plan upgrade) costs one request to learn it again.
        self.max_results: int | None = None
        self._session = RebasingSession(NEWSAPI_ORIGIN, settings.base_url)
        self._client = NewsApiClient(
            api_key=settings.api_key.get_secret_value(), session=self._session
        )

    # -- state -----------------------------------------------------------------------

    def _load_state(self) -> tuple[list[str], list[float]]:
        try:
            data = json.loads(self.state_path.read_text())
            seen = [str(i) for i in data.get("seen", [])]
            times = [float(t) for t in data.get("requests", [])]
        except FileNotFoundError:
            return [], []
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # Starting empty only re-sends articles (same keys, same documents): not fatal.
            log.warning("newsapi: ignoring unreadable state %s: %s", self.state_path, exc)
            return [], []
        log.info("newsapi: loaded %d seen article ids from %s", len(seen), self.state_path)
        return seen, times

    def save_state(self) -> None:
        data = {
            "version": 1,
            "seen": self.seen.ids(),
            "requests": list(self.budget.times),
        }
        write_atomically(self.state_path, json.dumps(data).encode())

    # -- requests --------------------------------------------------------------------

    def _call(self, page: int) -> dict[str, Any]:
        """One blocking request (runs in a worker thread)."""
        s = self.settings
        if s.endpoint == "everything":
            return self._client.get_everything(
                q=s.query,
                sources=s.sources,
                domains=s.domains,
                language=s.language,
                sort_by=s.sort_by,
                page=page,
                page_size=s.page_size,
            )
        return self._client.get_top_headlines(
            q=s.query,
            sources=s.sources,
            language=s.language,
            country=s.country,
            category=s.category,
            page=page,
            page_size=s.page_size,
        )

    async def _request(self, page: int) -> dict[str, Any]:
        try:
            body: Any = await asyncio.to_thread(self._call, page)
        except NewsAPIException as exc:
            # The client raises on any non-200 with the JSON error body.
            body = exc.get_exception()
        except requests.RequestException as exc:  # network errors, and non-JSON bodies
            return {"status": "error", "code": "transportError", "message": str(exc)}
        if not isinstance(body, dict):
            return {"status": "error", "code": "unexpectedError", "message": repr(body)[:200]}
        return body

    async def fetch_page(self, page: int) -> dict[str, Any] | None:
        """An `ok` response for `page`, or None when this poll should end (budget used up,
        retries exhausted). Raises SourceError when retrying cannot help, _MaxResults at the
        plan's result limit."""
        delay = self.settings.backoff_initial
        for attempt in range(self.settings.max_retries + 1):
            if not self.budget.take():
                log.warning(
                    "newsapi: daily request budget used up (%d in 24 h, %sDAILY_REQUEST_LIMIT); "
                    "next request possible in %.0f s",
                    self.settings.daily_request_limit,
                    _PREFIX,
                    self.budget.next_free(),
                )
                self.failure = "the daily request budget is used up"
                return None
            self.requests += 1
            body = await self._request(page)
            # The client only checks the HTTP status; a 200 could still say "error".
            if body.get("status") == "ok":
                return body
            code = str(body.get("code") or "unexpectedError")
            message = str(body.get("message") or "")[:500]
            if code in KEY_ERRORS:
                raise SourceError(
                    f"NewsAPI refused the API key ({code}: {message}); set NEWSAPI_KEY to a "
                    "valid, enabled key from https://newsapi.org/account"
                )
            if code in PARAMETER_ERRORS:
                raise SourceError(
                    f"NewsAPI rejected the request ({code}: {message}); check {_PREFIX}QUERY, "
                    f"{_PREFIX}SOURCES, {_PREFIX}DOMAINS, {_PREFIX}LANGUAGE, {_PREFIX}COUNTRY, "
                    f"{_PREFIX}CATEGORY and {_PREFIX}ENDPOINT"
                )
            if code == MAX_RESULTS:
                raise _MaxResults(message)
            if code not in RETRY_ERRORS:
                self.failure = f"{code}: {message}"
                log.error("newsapi: %s: %s%s", code, message, self._then)
                return None
            if attempt == self.settings.max_retries:
                break
            self.retries += 1
            log.warning(
                "newsapi: %s (%s); retry %d of %d of page %d in %.1f s",
                code,
                message,
                attempt + 1,
                self.settings.max_retries,
                page,
                delay,
            )
            if await self._sleep(delay):
                return None
            delay = min(delay * 2, self.settings.backoff_max)
        self.failure = f"page {page} still failing after {self.settings.max_retries} retries"
        log.error("newsapi: %s (%s)%s", self.failure, code, self._then)
        self.failure += f" ({code}: {message})"
        return None

    @property
    def _then(self) -> str:
        return "" if self._once else "; trying again at the next poll"

    # -- polling ---------------------------------------------------------------------

    async def poll(self, out: RecordOutput) -> int:
        """One poll: read pages until the results, the page limit or the known articles end;
        return how many articles were sent."""
        s = self.settings
        limit = s.max_pages
        if self.max_results is not None:
            limit = max(1, min(limit, self.max_results // s.page_size))
        # Newest first: once a whole page is known, later pages hold only older, known ones.
        newest_first = s.endpoint == "everything" and s.sort_by == "publishedAt"
        sent_before = self.sent
        completed = False
        try:
            for page in range(1, limit + 1):
                try:
                    body = await self.fetch_page(page)
                except _MaxResults as exc:
                    # Not an error: the plan's cap on results per query, e.g. 100 on developer.
                    self.max_results = (page - 1) * s.page_size
                    log.info("newsapi: result limit reached at page %d (%s)", page, exc)
                    break
                if body is None:
                    break
                articles = body.get("articles") or []
                fresh = 0
                for article in articles:
                    self.received += 1
                    record = to_record(article, lang=s.language)
                    if record is None:
                        self.skipped += 1
                        continue
                    assert record.id is not None
                    if record.id in self.seen:
                        self.duplicates += 1
                        self.seen.touch(record.id)
                        continue
                    await out.send(record)
                    self.seen.add(record.id)
                    self.sent += 1
                    fresh += 1
                total = int(body.get("totalResults") or 0)
                if not articles or page * s.page_size >= total:
                    break
                if fresh == 0 and s.stop_at_known_page and newest_first:
                    break
                if self._stop.is_set():
                    break
            completed = True
        finally:
            # Only what Kafka has acknowledged may be remembered as sent.
            await out.flush()
            self.save_state()
            if completed:
                self.polled += 1
        sent = self.sent - sent_before
        log.info("newsapi poll: %d new articles; totals %s", sent, self.counters())
        return sent

    async def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` or until stopped; True if stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        return self._stop.is_set()

    async def run(self, out: RecordOutput, *, once: bool = False) -> None:
        """Poll every `interval` seconds until `stop()` (once=True: a single poll). Can be
        called again (another poll, a backfill); `close()` releases the HTTP connections."""
        s = self.settings
        per_day = _DAY / s.interval * s.max_pages
        if not once and s.daily_request_limit and per_day > s.daily_request_limit:
            log.warning(
                "newsapi: up to %.0f requests a day (%sINTERVAL=%g, %sMAX_PAGES=%d) exceed "
                "%sDAILY_REQUEST_LIMIT=%d; polls will wait for the budget",
                per_day,
                _PREFIX,
                s.interval,
                _PREFIX,
                s.max_pages,
                _PREFIX,
                s.daily_request_limit,
            )
        self._once = once
        while not self._stop.is_set():
            self.failure = None
            await self.poll(out)
            if once:
                if self.failure is not None:
                    raise SourceError(f"the poll failed: {self.failure}")
                return
            # Never poll faster than the daily budget allows, whatever the interval says.
            wait = max(self.settings.interval, self.budget.next_free())
            if await self._sleep(wait):
                return

    def stop(self) -> None:
        """Make `run` return after the current request (from a signal handler, say)."""
        self._stop.set()

    def close(self) -> None:
        self._session.close()

    def counters(self) -> dict[str, int]:
        return {
            "polled": self.polled,
            "requests": self.requests,
            "received": self.received,
            "sent": self.sent,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "retries": self.retries,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="one poll, then exit (backfills)")
    args = parser.parse_args(argv)

    async def run(source: Source, out: RecordOutput) -> None:
        assert isinstance(source, NewsApiSource)
        await source.run(out, once=args.once)

    return main_for(
        "newsapi",
        lambda: NewsApiSource(NewsApiSettings()),
        settings_error=lambda exc: format_errors(
            exc, prefix=_PREFIX, what="NewsAPI", names={"api_key": "NEWSAPI_KEY"}
        ),
        run=run,
        prefix=_PREFIX,
    )


if __name__ == "__main__":
    sys.exit(main())
