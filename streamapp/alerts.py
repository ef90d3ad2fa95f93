"""Spike alerts: a hate or negative-sentiment rate well above its own recent past.

Every `STREAMAPP_ALERT_INTERVAL` seconds the leader worker reads the tumbling windows of the
whole cluster (its own partitions and the other workers', as the views do) and, per source,
compares the newest window's rate with the rate over the `STREAMAPP_ALERT_BASELINE_WINDOWS`
windows before it (`detect`, pure and unit-tested), for all its messages and for each tracked
term's (`STREAMAPP_TERMS`) on its own. A window alerts when

- it and its baseline each hold at least `STREAMAPP_ALERT_MIN_VOLUME` messages,
- its rate is at least `STREAMAPP_ALERT_MIN_RATE` (a share of its messages), and
- its rate is at least `STREAMAPP_ALERT_FACTOR` times the baseline's.

Each alert is published once: its id is (kind, source, term, window), and creating the document of
that id in the alerts index decides it (a second check, or a second leader after a rebalance,
finds it there). Then it goes to the alerts topic and, if `STREAMAPP_ALERT_WEBHOOK_URL` is
set, is POSTed there as JSON by a task of its own, retried with backoff: a slow or failing
webhook never holds the pipeline or the checks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from elasticsearch import ApiError, AsyncElasticsearch, ConflictError, TransportError
from faust.types import AppT
from faust.web import Request, Response, View
from mode import Service

from streamapp.counting import HATEFUL_LABEL, MESSAGES_LABEL, Items, Window, summarise
from streamapp.runtime import on_leader_every
from streamapp.views import cluster_items, redirect_to

if TYPE_CHECKING:
    from streamapp.factory import WorkerParts

log = logging.getLogger(__name__)

KINDS = ("hate", "negative")
ALERTS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": {"type": "keyword"},
        "kind": {"type": "keyword"},
        "source": {"type": "keyword"},
        "term": {"type": "keyword"},
        "window_start": {"type": "date"},
        "window_end": {"type": "date"},
        "count": {"type": "long"},
        "volume": {"type": "long"},
        "rate": {"type": "float"},
        "baseline_rate": {"type": "float"},
        "baseline_volume": {"type": "long"},
        "detected_at": {"type": "date"},
    },
}


@dataclass(frozen=True)
class AlertRules:
    min_volume: int = 20
    factor: float = 2.0
    min_rate: float = 0.2
    baseline_windows: int = 10


@dataclass(frozen=True)
class Alert:
    id: str
    kind: str  # hate | negative
    source: str
    window_start: str  # ISO 8601; the window is [start, end)
    window_end: str
    count: int  # hateful (or negative) messages in the window
    volume: int  # all messages in the window
    rate: float
    baseline_rate: float
    baseline_volume: int
    detected_at: str
    term: str | None = None  # the tracked term whose messages spiked; None: all messages

    def document(self) -> dict[str, Any]:
        return asdict(self)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def kind_counts(
    kind: str, windows: Mapping[Window, Mapping[str, Mapping[str, int]]]
) -> dict[str, list[tuple[Window, int, int]]]:
    """Per source, `(window, count, volume)` oldest first: hateful of all messages from the
    hate table, negative of all labels from the sentiment table."""
    out: dict[str, list[tuple[Window, int, int]]] = defaultdict(list)
    for window in sorted(windows):
        for source, labels in windows[window].items():
            if kind == "hate":
                count, volume = labels.get(HATEFUL_LABEL, 0), labels.get(MESSAGES_LABEL, 0)
            else:
                count, volume = labels.get("negative", 0), sum(labels.values())
            out[source].append((window, int(count), int(volume)))
    return out


def detect(
    kind: str,
    windows: Mapping[Window, Mapping[str, Mapping[str, int]]],
    rules: AlertRules,
    window_size: float,
    now: float,
    term: str | None = None,
) -> list[Alert]:
    """Alerts for the newest window of each source (see the module's rules); `windows` are
    the counts of `term`'s messages when it is given."""
    alerts = []
    for source, series in kind_counts(kind, windows).items():
        (start, _end), count, volume = series[-1]
        before = series[:-1][-rules.baseline_windows :]
        base_count = sum(c for _, c, _ in before)
        base_volume = sum(v for _, _, v in before)
        if volume < rules.min_volume or base_volume < rules.min_volume:
            continue
        rate, baseline = count / volume, base_count / base_volume
        if rate < rules.min_rate or rate < rules.factor * baseline:
            continue
        scope = f"{source}:{term}" if term else source
        alerts.append(
            Alert(
                id=f"{kind}:{scope}:{_iso(start)}",
                kind=kind,
                source=source,
                term=term,
                window_start=_iso(start),
                window_end=_iso(start + window_size),
                count=count,
                volume=volume,
                rate=round(rate, 4),
                baseline_rate=round(baseline, 4),
                baseline_volume=base_volume,
                detected_at=_iso(now),
            )
        )
    return alerts


def detect_all(
    kind: str,
    items: Items,
    terms: Sequence[str],
    rules: AlertRules,
    window_size: float,
    now: float,
) -> list[Alert]:
    """`detect` on a table's items: each source's messages, then each tracked term's."""
    items = list(items)
    found = detect(kind, summarise(items), rules, window_size, now)
    for term in terms:
        found += detect(kind, summarise(items, term=term), rules, window_size, now, term=term)
    return found


async def ensure_alerts_index(client: AsyncElasticsearch, index: str) -> None:
    """Create the alerts index, or bring an older one's mapping up to date (its mapping is
    strict, so a field added since would otherwise refuse every new alert)."""
    await client.options(ignore_status=400).indices.create(index=index, mappings=ALERTS_MAPPING)
    await client.indices.put_mapping(index=index, properties=ALERTS_MAPPING["properties"])


class Alerts(Service):
    """Checks for spikes (the leader's timer calls `check`) and publishes new alerts."""

    def __init__(self, app: AppT, parts: WorkerParts, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.parts = parts
        s = parts.settings
        self.rules = AlertRules(
            min_volume=s.alert_min_volume,
            factor=s.alert_factor,
            min_rate=s.alert_min_rate,
            baseline_windows=s.alert_baseline_windows,
        )
        # One partition: alerts are few, and readers see them in the order they were raised.
        self.topic = app.topic(
            s.alerts_topic, key_type=bytes, value_type=bytes, partitions=1, internal=True
        )
        self.published = 0
        self.webhook_sent = 0
        self.webhook_failed = 0
        self._webhook: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._index_ready = False

    async def check(self) -> list[Alert]:
        """Detect on the cluster's tumbling windows; publish the alerts not published yet."""
        tables = self.parts.tables
        now = time.time()
        found: list[Alert] = []
        for kind, counter in (
            ("hate", tables.hate["tumbling"]),
            ("negative", tables.sentiment["tumbling"]),
        ):
            path = "/hate/" if kind == "hate" else "/sentiment/"
            items, _ = await cluster_items(self.parts, counter, path)
            size = float(counter.window.size)
            found += detect_all(kind, items, self.parts.settings.terms, self.rules, size, now)
        new = [alert for alert in found if await self._record(alert)]
        for alert in new:
            doc = alert.document()
            await self.topic.send(key=alert.id.encode(), value=json.dumps(doc).encode())
            self.published += 1
            log.warning(
                "alert: %s rate %.0f%% on %s%s (baseline %.0f%%, %d messages)",
                alert.kind,
                alert.rate * 100,
                alert.source,
                f", term {alert.term!r}" if alert.term else "",
                alert.baseline_rate * 100,
                alert.volume,
            )
            if self.parts.settings.alert_webhook_url and not self._webhook.full():
                self._webhook.put_nowait(doc)
        return new

    async def _record(self, alert: Alert) -> bool:
        """Index the alert under its id; False if it was there already (published before)."""
        client = self.parts.sink.client
        index = self.parts.settings.alerts_index
        if not self._index_ready:
            await ensure_alerts_index(client, index)
            self._index_ready = True
        try:
            await client.create(index=index, id=alert.id, document=alert.document())
        except ConflictError:
            return False
        return True

    @Service.task
    async def _post_webhooks(self) -> None:
        url = self.parts.settings.alert_webhook_url
        if not url:
            return
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self.should_stop:
                doc = await self._webhook.get()
                await self._post(session, url, doc)

    async def _post(self, session: aiohttp.ClientSession, url: str, doc: dict[str, Any]) -> None:
        attempts = self.parts.settings.alert_webhook_attempts
        delay = 1.0
        for attempt in range(1, attempts + 1):
            try:
                async with session.post(url, json=doc) as resp:
                    if resp.status < 300:
                        self.webhook_sent += 1
                        return
                    error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < attempts:
                log.warning("alert webhook: %s; retrying in %.0fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        self.webhook_failed += 1
        log.error("alert webhook: gave up on %s after %d attempts (%s)", doc["id"], attempts, error)


async def recent_alerts(parts: WorkerParts, limit: int) -> list[dict[str, Any]]:
    resp = await parts.sink.client.options(request_timeout=5).search(
        index=parts.settings.alerts_index,
        sort=[{"detected_at": {"order": "desc"}}, {"id": {"order": "asc"}}],
        size=limit,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return [hit["_source"] for hit in resp["hits"]["hits"]]


class AlertsView(View):
    """GET /alerts/?limit=20: the newest alerts, from the alerts index."""

    async def get(self, request: Request) -> Response:
        try:
            limit = int(request.query.get("limit", "20"))
            if not 1 <= limit <= 100 or set(request.query) - {"limit"}:
                raise ValueError
        except ValueError:
            return self.json({"error": "only limit, between 1 and 100, is allowed"}, status=400)
        parts: WorkerParts = self.app.parts  # type: ignore[attr-defined]
        try:
            items = await recent_alerts(parts, limit)
        except (ApiError, TransportError) as exc:
            return self.json(
                {"error": f"elasticsearch unavailable: {type(exc).__name__}"}, status=503
            )
        return self.json({"limit": limit, "items": items})


def register_alerts(app: AppT, parts: WorkerParts) -> Alerts | None:
    app.page("/alerts/")(AlertsView)
    app.page("/alerts")(redirect_to("/alerts/"))
    if not parts.settings.alerts_enabled:
        return None
    alerts = Alerts(app, parts, loop=app.loop, beacon=app.beacon)
    app.service(alerts)  # type: ignore[arg-type] # an instance is started as it is

    on_leader_every(
        app, parts.settings.alert_interval, "streamapp.alerts", alerts.check, "alert check"
    )
    return alerts
