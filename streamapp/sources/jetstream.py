"""Bluesky through Jetstream (JSON over a websocket) -> the tweets topic.

    STREAMAPP_JETSTREAM_KEYWORDS='climate,election' python -m streamapp.sources.jetstream

Jetstream re-publishes the AT Protocol firehose as JSON. Every `commit` event that *creates* an
`app.bsky.feed.post` becomes one `Tweet` with `source="bluesky"`, keyed by the post's
`at://{did}/app.bsky.feed.post/{rkey}` URI; deletes, updates, other collections and the
`identity`/`account` events are skipped and counted. With `STREAMAPP_JETSTREAM_KEYWORDS` (or,
when it is unset, the tracked `STREAMAPP_TERMS`) only posts containing one of the keywords
(whole words, case-insensitive) are sent, tagged with the keywords they matched. Jetstream
carries no handles, so `author_username` stays empty.

Resuming: every event has a `time_us` (unix microseconds), and Jetstream replays from any
`cursor=<time_us>` it still holds. The source saves the newest `time_us` whose records Kafka
has acknowledged to a small state file (atomically, every `SAVE_EVERY_SECONDS` or
`SAVE_EVERY_EVENTS`, on reconnect and at shutdown) and on every (re)connect asks for
`cursor = saved - REWIND_SECONDS`. The rewind covers events Jetstream stamped slightly out of
order; the few events seen twice produce the same record under the same key, which the
idempotent ids absorb downstream. Connection errors and closes are retried with capped,
jittered exponential backoff; frames that are not valid events are logged, counted, skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from streamapp.models import Tweet
from streamapp.settings import format_errors
from streamapp.sources.base import RecordOutput, Source, SourceError
from streamapp.sources.runner import main_for
from streamapp.sources.state import write_atomically
from streamapp.terms import Terms

log = logging.getLogger(__name__)

_PREFIX = "STREAMAPP_JETSTREAM_"
POST_COLLECTION = "app.bsky.feed.post"
DEFAULT_URL = f"wss://jetstream2.us-east.bsky.network/subscribe?wantedCollections={POST_COLLECTION}"
STATE_FILE = "jetstream-state.json"
SOURCE_NAME = "bluesky"

# Both end up in the record id and the Kafka key, so anything odd is rejected, not escaped.
_DID = re.compile(r"^did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}$")
_RKEY = re.compile(r"^[A-Za-z0-9._:~-]{1,512}$")
# A client clock running ahead is common; a post cannot be created after Jetstream saw it.
_FUTURE_TOLERANCE = timedelta(minutes=10)


class JetstreamSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    #: The subscribe URL; a `cursor` in it is replaced by the saved one.
    url: str = DEFAULT_URL
    #: Comma separated; empty = the tracked terms (`STREAMAPP_TERMS`), or every post if none.
    keywords: Annotated[list[str], NoDecode] = Field(default_factory=list)
    tracked_terms: Terms = Field(default_factory=list, validation_alias="STREAMAPP_TERMS")
    rewind_seconds: float = Field(5.0, ge=0, description="resume this far before the cursor")
    state_dir: Path = Path(".streamapp-data/jetstream")
    reconnect_initial_delay: float = Field(1.0, gt=0)
    reconnect_max_delay: float = Field(60.0, gt=0)
    save_every_seconds: float = Field(5.0, gt=0)
    save_every_events: int = Field(1000, ge=1)
    open_timeout: float = Field(10.0, gt=0, description="seconds to wait for the handshake")
    #: Sent as `maxMessageSizeBytes` and enforced locally: an event over the local limit would
    #: otherwise kill the connection and come back on every resume.
    max_message_bytes: int = Field(1_000_000, ge=4096)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError("expected a ws:// or wss:// URL")
        return value.strip()

    @field_validator("keywords", mode="before")
    @classmethod
    def _keywords(cls, value: Any) -> list[str]:
        items = value.split(",") if isinstance(value, str) else list(value or [])
        out: list[str] = []
        for item in items:
            word = str(item).strip()
            if word and word.casefold() not in {w.casefold() for w in out}:
                out.append(word)
        return out

    @model_validator(mode="after")
    def _delays(self) -> JetstreamSettings:
        if not self.keywords:
            self.keywords = list(self.tracked_terms)
        if self.reconnect_initial_delay > self.reconnect_max_delay:
            raise ValueError(
                f"{_PREFIX}RECONNECT_INITIAL_DELAY must not exceed {_PREFIX}RECONNECT_MAX_DELAY"
            )
        return self


class MalformedEvent(ValueError):
    """A frame that is not a Jetstream event we can read."""


def keyword_patterns(keywords: list[str]) -> list[tuple[str, re.Pattern[str]]]:
    # Lookarounds instead of \b so keywords that start or end with a symbol (#tag, c++) work;
    # whole words so "ai" does not match "said".
    return [(kw, re.compile(rf"(?<!\w){re.escape(kw)}(?!\w)", re.IGNORECASE)) for kw in keywords]


def post_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


def time_us_datetime(time_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=time_us)


def created_at(record: dict[str, Any], time_us: int) -> datetime:
    """The post's own `createdAt` when it is a usable timestamp, else when Jetstream saw it."""
    seen = time_us_datetime(time_us)
    raw = record.get("createdAt")
    if not isinstance(raw, str):
        return seen
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return seen
    # The lexicon requires a timezone; guessing one would shift windows by hours.
    if value.tzinfo is None or value > seen + _FUTURE_TOLERANCE:
        return seen
    return value.astimezone(UTC)


class JetstreamSource(Source):
    """Streams Bluesky posts from Jetstream into `out`, resuming from a saved cursor."""

    name = "jetstream"

    def __init__(self, settings: JetstreamSettings) -> None:
        self.settings = settings
        self.state_path = settings.state_dir / STATE_FILE
        self.patterns = keyword_patterns(settings.keywords)
        self.received = 0
        self.sent = 0
        self.skipped = 0
        self.filtered = 0
        self.malformed = 0
        self.connects = 0
        self.reconnects = 0
        self.saves = 0
        #: Newest `time_us` whose records Kafka acknowledged (what is saved and resumed from).
        self.cursor: int | None = self._load_cursor()
        # Newest `time_us` handled (sent or skipped); becomes `cursor` after a flush.
        self._handled: int | None = self.cursor
        self._since_save = 0
        self._last_save = time.monotonic()
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # -- state --------------------------------------------------------------------------

    def _load_cursor(self) -> int | None:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("jetstream: ignoring unreadable state %s: %s", self.state_path, exc)
            return None
        cursor = data.get("cursor") if isinstance(data, dict) else None
        if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor <= 0:
            log.warning("jetstream: ignoring state %s without a valid cursor", self.state_path)
            return None
        log.info("jetstream: resuming from cursor %d (%s)", cursor, time_us_datetime(cursor))
        return cursor

    def save_state(self) -> None:
        if self.cursor is None:
            return
        data = {
            "cursor": self.cursor,
            "cursor_time": time_us_datetime(self.cursor).isoformat(),
            "saved_at": datetime.now(UTC).isoformat(),
        }
        write_atomically(self.state_path, json.dumps(data).encode())
        self.saves += 1

    async def checkpoint(self, out: RecordOutput) -> None:
        """Wait for Kafka to acknowledge what was sent, then save the cursor that covers it."""
        handled = self._handled
        await out.flush()
        self._since_save = 0
        self._last_save = time.monotonic()
        if handled is not None and handled != self.cursor:
            self.cursor = handled
            self.save_state()

    # -- connection ---------------------------------------------------------------------

    def subscribe_url(self) -> str:
        """The configured URL with this connection's `cursor` and size limit."""
        parts = urlsplit(self.settings.url)
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in ("cursor", "maxMessageSizeBytes")
        ]
        query.append(("maxMessageSizeBytes", str(self.settings.max_message_bytes)))
        resume = self.resume_cursor()
        if resume is not None:
            query.append(("cursor", str(resume)))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def resume_cursor(self) -> int | None:
        if self.cursor is None:
            return None  # nothing acknowledged yet: start live
        return max(1, self.cursor - round(self.settings.rewind_seconds * 1_000_000))

    async def run(self, out: RecordOutput, *, max_events: int | None = None) -> None:
        """Stream until `stop()` (or `max_events` frames); the cursor is saved on the way out."""
        delay = self.settings.reconnect_initial_delay
        try:
            while not self._stop.is_set():
                url = self.subscribe_url()
                got_events = False
                try:
                    async with connect(
                        url,
                        open_timeout=self.settings.open_timeout,
                        max_size=self.settings.max_message_bytes,
                        user_agent_header="streamapp-jetstream/0.1",
                    ) as ws:
                        self._ws = ws
                        self.connects += 1
                        log.info("jetstream: connected to %s", url)
                        if self._stop.is_set():  # stopped while the handshake ran
                            break
                        async for frame in ws:
                            got_events = True
                            await self.handle(frame, out)
                            if max_events is not None and self.received >= max_events:
                                self.stop()
                                break
                            await self._maybe_checkpoint(out)
                        if not self._stop.is_set():
                            log.warning("jetstream: the server closed the connection")
                except ConnectionClosed as exc:
                    log.warning("jetstream: connection lost: %s", exc)
                except InvalidURI as exc:
                    raise SourceError(f"{_PREFIX}URL is not a valid websocket URL: {exc}") from None
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if 400 <= status < 500 and status not in (408, 429):
                        raise SourceError(
                            f"Jetstream refused the subscription with HTTP {status}: "
                            f"check {_PREFIX}URL ({url})"
                        ) from None
                    log.warning("jetstream: HTTP %d on connect", status)
                except (OSError, TimeoutError, WebSocketException) as exc:
                    log.warning("jetstream: cannot connect to %s: %r", url, exc)
                finally:
                    self._ws = None
                if self._stop.is_set():
                    break
                # Resume from what Kafka has, not from what was merely read.
                await self.checkpoint(out)
                if got_events:
                    delay = self.settings.reconnect_initial_delay
                self.reconnects += 1
                wait = delay * random.uniform(0.5, 1.0)  # jitter: clients do not reconnect in step
                log.info("jetstream: reconnecting in %.2fs from cursor %s", wait, self.cursor)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=wait)
                delay = min(delay * 2, self.settings.reconnect_max_delay)
        except BaseException:
            # Save what Kafka did acknowledge, without hiding why the loop ended; if Kafka
            # itself failed, the cursor stays where it was so nothing unsent is skipped.
            try:
                await self.checkpoint(out)
            except Exception:
                log.exception("jetstream: could not flush; cursor left at %s", self.cursor)
            raise
        await self.checkpoint(out)

    async def _maybe_checkpoint(self, out: RecordOutput) -> None:
        self._since_save += 1
        due = time.monotonic() - self._last_save >= self.settings.save_every_seconds
        if due or self._since_save >= self.settings.save_every_events:
            await self.checkpoint(out)

    def stop(self) -> None:
        """Make `run` return (after saving the cursor); safe from a signal handler."""
        self._stop.set()
        ws = self._ws
        if ws is not None:
            # Ends the receive loop; the task is kept so it is not garbage collected mid-close.
            task = asyncio.get_running_loop().create_task(ws.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- events -------------------------------------------------------------------------

    async def handle(self, frame: str | bytes, out: RecordOutput) -> None:
        """One websocket frame: send a record, or count it as skipped/filtered/malformed."""
        self.received += 1
        try:
            record = self.to_record(frame)
        except MalformedEvent as exc:
            self.malformed += 1
            log.warning("jetstream: skipped a malformed event: %s", exc)
            return
        if record is None:
            return
        await out.send(record)
        self.sent += 1

    def to_record(self, frame: str | bytes) -> Tweet | None:
        try:
            event = json.loads(frame)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEvent(f"not JSON ({len(frame)} bytes): {exc}") from None
        if not isinstance(event, dict):
            raise MalformedEvent(f"expected an object, got {type(event).__name__}")
        time_us = event.get("time_us")
        if not isinstance(time_us, int) or isinstance(time_us, bool) or time_us <= 0:
            raise MalformedEvent(f"time_us is not a positive integer: {time_us!r}")
        # From here on the event has a place in the stream, so resuming may go past it.
        self._handled = max(self._handled or 0, time_us)
        did, kind = event.get("did"), event.get("kind")
        if not isinstance(did, str) or not _DID.match(did):
            raise MalformedEvent(f"bad did {str(did)[:80]!r} at time_us {time_us}")
        if kind != "commit":
            self.skipped += 1  # identity, account, and kinds Jetstream may add
            return None
        commit = event.get("commit")
        if not isinstance(commit, dict):
            raise MalformedEvent(f"commit event without a commit object at time_us {time_us}")
        if commit.get("operation") != "create" or commit.get("collection") != POST_COLLECTION:
            self.skipped += 1
            return None
        rkey, record = commit.get("rkey"), commit.get("record")
        if not isinstance(rkey, str) or not _RKEY.match(rkey):
            raise MalformedEvent(f"bad rkey {str(rkey)[:80]!r} at time_us {time_us}")
        if not isinstance(record, dict) or record.get("$type") != POST_COLLECTION:
            raise MalformedEvent(f"create of {rkey} without a post record at time_us {time_us}")
        text = record.get("text")
        if not isinstance(text, str):
            raise MalformedEvent(f"post {post_uri(did, rkey)} has no text string")
        if not text.strip():
            # Image- or embed-only posts: nothing to classify.
            self.skipped += 1
            return None
        tags: list[str] = []
        if self.patterns:
            tags = [kw for kw, pattern in self.patterns if pattern.search(text)]
            if not tags:
                self.filtered += 1
                return None
        langs = record.get("langs")
        lang = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
        return Tweet(
            id=post_uri(did, rkey),
            # Posts are at most 300 graphemes, but a grapheme can be many code points, so the
            # text is passed on whole rather than cut at some character count.
            text=text,
            created_at=created_at(record, time_us),
            author_id=did,
            author_username=None,
            lang=lang or None,
            rule_tags=tags,
            source=SOURCE_NAME,
        )

    def counters(self) -> dict[str, int]:
        return {
            "cursor": self.cursor or 0,
            "received": self.received,
            "sent": self.sent,
            "skipped": self.skipped,
            "filtered": self.filtered,
            "malformed": self.malformed,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "saves": self.saves,
        }


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0]).parse_args(argv)
    return main_for(
        "jetstream",
        lambda: JetstreamSource(JetstreamSettings()),
        settings_error=lambda exc: format_errors(exc, prefix=_PREFIX, what="Jetstream"),
        prefix=_PREFIX,
    )


if __name__ == "__main__":
    sys.exit(main())
