"""Twitter/X filtered stream (API v2) with tweepy's `StreamingClient` -> the tweets topic.

    export TWITTER_BEARER_TOKEN=...
    export STREAMAPP_TWITTER_RULES='[{"value": "climate lang:en", "tag": "climate"}]'
    python -m streamapp.sources.twitter

At start the stream rules are synced with the settings, matched by value and tag: missing
ones are added; rules on the account that the settings do not list are kept (other tools may
use them) unless `STREAMAPP_TWITTER_DELETE_STALE_RULES=true`. Without any rule the source
refuses to start: the stream would deliver nothing. Every `StreamResponse` with a tweet
becomes one `Tweet` record keyed by the tweet id, joined with *its* author from
`includes.users` and carrying the tags of the rules it matched.

tweepy runs the blocking HTTP stream in its own thread and reconnects with its documented
backoff (network errors 0.25 s steps up to 16 s, HTTP errors 5 s doubling to 320 s, 429 from
60 s). Records cross to the event loop through a bounded queue, so a slow Kafka blocks the
stream thread rather than filling memory. 401/403 stop the source with a message naming the
setting to fix.

tweepy hard-codes `https://api.twitter.com`. `STREAMAPP_TWITTER_BASE_URL` points it elsewhere
(a proxy, or the local test server) through `RebasingSession`, a `requests.Session` that
rewrites that prefix; tweepy itself is not patched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import requests
import tweepy
from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamapp.models import Tweet
from streamapp.settings import format_errors
from streamapp.sources.base import RecordOutput, Source, SourceError
from streamapp.sources.http import RebasingSession
from streamapp.sources.output import ThreadBridge
from streamapp.sources.runner import main_for
from streamapp.terms import Terms

log = logging.getLogger(__name__)

TWITTER_API = "https://api.twitter.com"
TWEET_FIELDS = ["created_at", "lang", "author_id", "conversation_id", "entities"]
_STOP = object()


class Rule(BaseModel):
    value: str = Field(min_length=1, max_length=1024)
    tag: str | None = None


_PREFIX = "STREAMAPP_TWITTER_"


class TwitterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    #: JSON list of `{"value": ..., "tag": ...}` filtered-stream rules; unset: one rule per
    #: tracked term (`STREAMAPP_TERMS`), tagged with it.
    rules: list[Rule] = Field(default_factory=list)
    tracked_terms: Terms = Field(default_factory=list, validation_alias="STREAMAPP_TERMS")
    #: Delete the account's rules that `rules` does not list (off: they are shared).
    delete_stale_rules: bool = False
    base_url: str = TWITTER_API
    queue_size: int = Field(1000, ge=1)
    #: Backoff while the API cannot be reached at start (the stream reconnects on its own).
    retry_initial: float = Field(1.0, gt=0)
    retry_max: float = Field(60.0, gt=0)
    bearer_token: SecretStr | None = Field(None, validation_alias="TWITTER_BEARER_TOKEN")

    @model_validator(mode="after")
    def _rules_from_terms(self) -> TwitterSettings:
        if not self.rules:
            self.rules = [Rule(value=rule_for(t), tag=t) for t in self.tracked_terms]
        return self


def rule_for(term: str) -> str:
    """The filtered-stream rule matching `term`: a keyword, or an exact phrase in quotes."""
    return f'"{term}"' if " " in term else term


def to_record(response: tweepy.StreamResponse) -> Tweet | None:
    """One stream response -> one Tweet, or None if it carries no tweet."""
    tweet = response.data
    if tweet is None:
        return None
    users = {str(u.id): u for u in (response.includes or {}).get("users", [])}
    author = users.get(str(tweet.author_id)) if tweet.author_id is not None else None
    created = tweet.created_at or datetime.now(UTC)
    return Tweet(
        id=str(tweet.id),
        text=tweet.text,
        created_at=created,
        author_id=str(tweet.author_id) if tweet.author_id is not None else None,
        author_username=author.username if author is not None else None,
        lang=tweet.lang,
        rule_tags=[r.tag for r in response.matching_rules if r.tag],
        source="twitter",
    )


class _Stream(tweepy.StreamingClient):
    """tweepy's stream with our callbacks; runs in tweepy's thread."""

    def __init__(self, source: TwitterSource, bearer_token: str, **kwargs: Any) -> None:
        super().__init__(bearer_token, **kwargs)
        self.source = source

    def on_connect(self) -> None:
        self.source.connects += 1
        log.info("twitter stream connected (connection %d)", self.source.connects)

    def on_data(self, raw_data: bytes) -> None:
        # A line cut by a dropped connection is not JSON: skip it, never half a record.
        try:
            json.loads(raw_data)
        except ValueError:
            self.source.malformed += 1
            log.warning("twitter stream: skipped a line that is not JSON (%d bytes)", len(raw_data))
            return
        super().on_data(raw_data)

    def on_response(self, response: tweepy.StreamResponse) -> None:
        record = to_record(response)
        if record is None:
            return
        self.source.received += 1
        self.source.bridge_put(record)

    def on_errors(self, errors: list[dict[str, Any]]) -> None:
        for error in errors:
            title = error.get("title", "error")
            if title == "operational-disconnect":
                log.warning(
                    "twitter stream: operational disconnect, tweepy reconnects: %s",
                    error.get("detail", ""),
                )
            else:
                log.error("twitter stream error %s: %s", title, error.get("detail", error))
            self.source.stream_errors += 1

    def on_request_error(self, status_code: int) -> None:
        if status_code in (401, 403):
            self.source.fatal = SourceError(
                f"the X API refused the stream with HTTP {status_code}: check "
                "TWITTER_BEARER_TOKEN (and that the app has filtered-stream access)"
            )
            self.disconnect()
        elif status_code == 429:
            log.warning("twitter stream: HTTP 429 (too many connections); tweepy backs off")
        else:
            log.warning("twitter stream: HTTP %d; tweepy backs off and reconnects", status_code)

    def on_connection_error(self) -> None:
        self.source.reconnects += 1
        log.warning("twitter stream: connection lost; tweepy reconnects")

    def on_closed(self, response: Any) -> None:
        self.source.reconnects += 1
        log.warning("twitter stream: closed by the server; tweepy reconnects")

    def on_exception(self, exception: Exception) -> None:
        self.source.fatal = SourceError(f"twitter stream failed: {exception!r}")

    def on_disconnect(self) -> None:
        self.source.bridge_put(_STOP)


class TwitterSource(Source):
    """Syncs the rules, then streams tweets into `out` until stopped or refused."""

    name = "twitter"

    def __init__(self, settings: TwitterSettings) -> None:
        if settings.bearer_token is None or not settings.bearer_token.get_secret_value():
            raise SourceError("set TWITTER_BEARER_TOKEN to use the Twitter/X source")
        if not settings.rules:
            raise SourceError(
                f"set STREAMAPP_TERMS (one rule per term) or {_PREFIX}RULES to the "
                'filtered-stream rules to follow, a JSON list like [{"value": "climate lang:en", '
                '"tag": "climate"}]'
            )
        self.settings = settings
        self.received = 0
        self.sent = 0
        self.malformed = 0
        self.stream_errors = 0
        self.connects = 0
        self.reconnects = 0
        self.fatal: SourceError | None = None
        self._bridge: ThreadBridge | None = None
        self._stream: _Stream | None = None
        self._stopping = threading.Event()

    def bridge_put(self, item: Any) -> None:
        assert self._bridge is not None
        # Queue full: keep blocking the stream (backpressure) unless shutting down.
        self._bridge.put_from_thread(
            item, give_up=lambda: self._stopping.is_set() and item is not _STOP
        )

    def _client(self) -> _Stream:
        token = self.settings.bearer_token.get_secret_value()  # type: ignore[union-attr]
        stream = _Stream(self, token, wait_on_rate_limit=True)
        stream.session = RebasingSession(TWITTER_API, self.settings.base_url)
        return stream

    def sync_rules(self, client: tweepy.StreamingClient) -> tuple[int, int]:
        """Make the server's rules equal the settings'; return (added, deleted)."""
        try:
            current = client.get_rules().data or []  # None when there are no rules
        except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
            raise SourceError(
                f"the X API refused the rules request ({exc}): check TWITTER_BEARER_TOKEN"
            ) from None
        wanted = {(r.value, r.tag) for r in self.settings.rules}
        have = {(r.value, r.tag): r.id for r in current}
        stale = [rule_id for key, rule_id in have.items() if key not in wanted]
        missing = [tweepy.StreamRule(value=v, tag=t) for v, t in wanted if (v, t) not in have]
        if stale and not self.settings.delete_stale_rules:
            log.info(
                "twitter rules: keeping %d rules of the account that %sRULES does not list "
                "(set %sDELETE_STALE_RULES=true to delete them)",
                len(stale),
                _PREFIX,
                _PREFIX,
            )
            stale = []
        if stale:
            client.delete_rules(stale)
        if missing:
            resp = client.add_rules(missing)
            errors = getattr(resp, "errors", None)
            if errors:
                raise SourceError(f"the X API rejected stream rules: {errors}")
        log.info(
            "twitter rules: %d kept, %d added, %d deleted",
            len(have) - len(stale),
            len(missing),
            len(stale),
        )
        return len(missing), len(stale)

    async def run(self, out: RecordOutput) -> None:
        loop = asyncio.get_running_loop()
        self._bridge = ThreadBridge(loop, maxsize=self.settings.queue_size)
        stream = self._stream = self._client()
        if not await self._sync_rules_retrying(stream):
            return  # stopped while the API was unreachable
        stream.filter(
            threaded=True,
            tweet_fields=TWEET_FIELDS,
            expansions=["author_id"],
            user_fields=["username", "name"],
        )

        async def handle(record: Tweet) -> None:
            await out.send(record)
            self.sent += 1

        try:
            await self._bridge.drain(handle, _STOP)
        except asyncio.CancelledError:
            self.stop()
            await asyncio.shield(self._bridge.drain(handle, _STOP))
            raise
        if self.fatal is not None:
            raise self.fatal

    async def _sync_rules_retrying(self, stream: tweepy.StreamingClient) -> bool:
        """Sync the rules, retrying with capped backoff while the API cannot be reached
        (network down, 5xx); False if the source was stopped meanwhile."""
        delay = self.settings.retry_initial
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.sync_rules, stream)
                return True
            except (requests.RequestException, tweepy.TwitterServerError) as exc:
                self.stream_errors += 1
                log.warning(
                    "cannot reach the X API at %s (%s: %s); retrying in %.0f s",
                    self.settings.base_url,
                    type(exc).__name__,
                    str(exc)[:200],
                    delay,
                )
                await asyncio.to_thread(self._stopping.wait, delay)
                delay = min(delay * 2, self.settings.retry_max)
        return False

    def stop(self) -> None:
        """Ask the stream thread to finish; `run` returns once it has."""
        self._stopping.set()
        if self._stream is not None:
            self._stream.disconnect()

    def counters(self) -> dict[str, int]:
        return {
            "received": self.received,
            "sent": self.sent,
            "malformed_lines": self.malformed,
            "stream_errors": self.stream_errors,
            "connects": self.connects,
            "reconnects": self.reconnects,
        }


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    # tweepy logs request headers, bearer token included, at DEBUG.
    logging.getLogger("tweepy").setLevel(logging.INFO)
    return main_for(
        "twitter",
        lambda: TwitterSource(TwitterSettings()),
        settings_error=lambda exc: format_errors(
            exc, prefix=_PREFIX, what="Twitter", names={"bearer_token": "TWITTER_BEARER_TOKEN"}
        ),
        prefix=_PREFIX,
    )


if __name__ == "__main__":
    sys.exit(main())
