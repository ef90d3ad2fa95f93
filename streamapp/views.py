"""JSON web views on the Faust web server: windowed counts and health.

GET /sentiment/?source=twitter&window=tumbling&limit=60
GET /hate/?source=newsapi&window=hopping
GET /sentiment/?term=climate   (or ?lang=en: one tracked term or one language; default: all)
GET /health/
GET /stats/

Windows are read by explicit key ranges, never `.current()`/`.delta()` (those raise outside
a stream). Each worker serves the partitions it owns; with one worker that is everything.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from faust.types import AppT
from faust.web import Request, Response, View

from streamapp.cluster import Gathered, Item, decode_items, encode_items, sum_numbers, union
from streamapp.counting import cells_of, facet, known_values, split_cell, summarise
from streamapp.health import AgentProgress, any_reachable, assess
from streamapp.tables import WindowedCounter

if TYPE_CHECKING:
    from streamapp.factory import WorkerParts

MAX_LIMIT = 10_000
WINDOW_PARAMS = frozenset({"window", "limit", "source", "scope", "term", "lang"})
SCOPES = ("cluster", "local")


class BadRequest(ValueError):
    pass


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def window_row(rng: tuple[float, float], size: float, counts: dict[str, dict[str, int]]) -> dict:
    """One window: `start`/`end` as Faust keys it (epoch seconds; `end` is the last instant
    inside it), and the same in ISO 8601 with the exclusive end a reader expects."""
    return {
        "start": rng[0],
        "end": rng[1],
        "start_time": iso(rng[0]),
        "end_time": iso(rng[0] + size),
        "counts": {src: dict(labels) for src, labels in counts.items()},
        "total": sum(sum(labels.values()) for labels in counts.values()),
    }


def scope_of(query: Mapping[str, str]) -> str:
    """`cluster` (the default: every worker's partitions) or `local` (this worker's only,
    what workers ask each other for)."""
    scope = query.get("scope", "cluster")
    if scope not in SCOPES:
        raise BadRequest(f"scope must be one of {list(SCOPES)}")
    return scope


def pick_counter(counters: dict[str, WindowedCounter], query: Mapping[str, str]) -> WindowedCounter:
    unknown = sorted(set(query) - WINDOW_PARAMS)
    if unknown:
        raise BadRequest(f"unknown parameter(s) {unknown}; allowed: {sorted(WINDOW_PARAMS)}")
    kind = query.get("window", "tumbling")
    if kind not in counters:
        raise BadRequest(f"window must be one of {sorted(counters)}")
    return counters[kind]


def facet_of(query: Mapping[str, str], tracked: Sequence[str]) -> tuple[str, str]:
    """The `(term, lang)` a query asks for ("" = any). A term is one of the tracked terms,
    in any case; a language an ISO 639 code, or `und` for not known."""
    term = query.get("term", "").strip()
    if term:
        canonical = {t.casefold(): t for t in tracked}
        if term.casefold() not in canonical:
            listed = f"one of {list(tracked)}" if tracked else "set in STREAMAPP_TERMS"
            raise BadRequest(f"term {term[:100]!r} is not tracked: it must be {listed}")
        term = canonical[term.casefold()]
    lang = query.get("lang", "").strip().lower()
    if lang and not re.fullmatch(r"[a-z]{2,3}", lang):
        raise BadRequest("lang must be an ISO 639 code such as en, or und (not known)")
    if term and lang:
        # Crossing them would multiply what each table value holds (see counting.py).
        raise BadRequest("counts are per term or per language: give term or lang, not both")
    return term, lang


def term_totals(
    items: Sequence[Item], terms: Sequence[str], source: str | None
) -> dict[str, dict[str, int]]:
    """Per tracked term, its label counts over every kept window (all languages): what the
    dashboard compares terms by."""
    wanted = {facet(term=term): term for term in terms}
    out: dict[str, dict[str, int]] = {term: defaultdict(int) for term in terms}
    for (key, _window), value in items:
        src, cells = cells_of(key, value)
        if source is not None and src != source:
            continue
        for name, n in cells.items():
            facet_name, label = split_cell(name)
            if facet_name in wanted:
                out[wanted[facet_name]][label] += int(n)
    return {term: dict(labels) for term, labels in out.items()}


def window_report(
    counter: WindowedCounter,
    query: dict[str, str],
    now: float,
    items: Sequence[Item],
    tracked: Sequence[str] = (),
) -> dict[str, Any]:
    """The report of `counter` (picked by `pick_counter`) over `items`, the table items of
    every worker; `tracked` are the tracked terms."""
    try:
        limit = int(query.get("limit", "60"))
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    source = query.get("source") or None
    term, lang = facet_of(query, tracked)
    size = float(counter.window.size)
    every = summarise(items, term=term, lang=lang)
    known = known_values(items)
    windows = every
    if source is not None:
        windows = {rng: {source: c[source]} for rng, c in every.items() if source in c}
    current = counter.current_window(now)
    rows = []
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rng in sorted(windows, reverse=True):
        counts = windows[rng]
        for src, labels in counts.items():
            for label, n in labels.items():
                totals[src][label] += n
        rows.append(window_row(rng, size, counts))
    report: dict[str, Any] = {
        "window": counter.describe(),
        "source": source,
        "term": term or None,
        "lang": lang or None,
        # Sources with counts in the kept windows: a `source` outside them reads as empty.
        "known_sources": sorted(known.sources),
        "known_languages": sorted(known.languages),
        "terms": list(tracked),
        "now": now,
        "now_time": iso(now),
        "current": next(
            (r for r in rows if (r["start"], r["end"]) == current),
            window_row(current, size, {}),
        ),
        "windows": rows[:limit],
        "window_count": len(rows),
    }
    # Hopping windows overlap, so summing them would count a message several times.
    if counter.kind == "tumbling":
        report["totals"] = {src: dict(labels) for src, labels in totals.items()}
        report["term_totals"] = term_totals(items, tracked, source)
    return report


def parts_of(view: View) -> WorkerParts:
    parts: WorkerParts = view.app.parts  # type: ignore[attr-defined]
    return parts


def stopping_body(app: AppT) -> dict[str, Any] | None:
    """While the worker shuts down its tables close before its web server: answer 503
    rather than the empty counts they would read as."""
    if app.should_stop:
        return {"status": "stopping", "error": "the worker is shutting down"}
    return None


class _WindowView(View):
    def counters(self) -> dict[str, WindowedCounter]:
        raise NotImplementedError

    async def get(self, request: Request) -> Response:
        if (body := stopping_body(self.app)) is not None:
            return self.json(body, status=503)
        query = dict(request.query)
        parts = parts_of(self)
        try:
            scope = scope_of(query)
            counter = pick_counter(self.counters(), query)
        except BadRequest as exc:
            return self.json({"error": str(exc)}, status=400)
        mine = parts.cluster.local_partitions(counter.changelog_topic)
        if scope == "local":
            return self.json({"items": encode_items(counter.items()), "partitions": mine})
        items, gathered = await cluster_items(parts, counter, request.rel_url.path)
        covered = set(mine).union(*(b.get("partitions", []) for b in gathered.bodies.values()))
        try:
            body = window_report(counter, query, time.time(), items, parts.settings.terms)
        except BadRequest as exc:
            return self.json({"error": str(exc)}, status=400)
        body.update(cluster_fields(parts, gathered, covered))
        return self.json(body)


async def cluster_items(
    parts: WorkerParts, counter: WindowedCounter, path: str
) -> tuple[list[Item], Gathered]:
    """`counter`'s items over every worker: this one's, and the others' from `path` (the
    view serving that counter), each (key, window) once."""
    gathered = await parts.cluster.gather(path, {"window": counter.kind})
    others = (decode_items(b.get("items", [])) for b in gathered.bodies.values())
    return union(list(counter.items()), *others), gathered


def cluster_fields(parts: WorkerParts, gathered: Gathered, covered: set[int]) -> dict[str, Any]:
    """Which workers answered, and which partitions nobody could answer for."""
    return {
        "workers": gathered.workers(parts.cluster.me),
        "missing_partitions": sorted(set(range(parts.settings.topic_partitions)) - covered),
    }


class SentimentView(_WindowView):
    """Sentiment counts per source and label, newest window first."""

    def counters(self) -> dict[str, WindowedCounter]:
        return parts_of(self).tables.sentiment


class HateView(_WindowView):
    """Counts per source of all messages (`messages`), hateful ones (`hateful`) and each
    hate category."""

    def counters(self) -> dict[str, WindowedCounter]:
        return parts_of(self).tables.hate


def local_stats(parts: WorkerParts) -> dict[str, Any]:
    runtime, sequencer = parts.runtime, parts.sequencer
    return {
        "pipelines": {name: p.stats.as_dict() for name, p in runtime.pipelines.items()},
        "dead_letters": dict(runtime.dead_letters.counts),
        "elasticsearch": {"available": parts.sink.available, "retries": parts.sink.retries},
        "offsets": sequencer.as_dict(),
        "classifiers": {kind: r.describe() for kind, r in runtime.routers.items()},
        "backends": {
            name: stats
            for name, clf in runtime.classifiers.items()
            if isinstance(stats := getattr(clf, "stats", None), dict)
        },
    }


async def stats(parts: WorkerParts, scope: str, path: str = "/stats/") -> dict[str, Any]:
    """This worker's counters, or (scope `cluster`) every worker's summed, with `workers`."""
    mine = local_stats(parts)
    if scope == "local":
        return mine
    gathered = await parts.cluster.gather(path, {})
    out: dict[str, Any] = sum_numbers([mine, *gathered.bodies.values()])
    out["workers"] = gathered.workers(parts.cluster.me)
    return out


class StatsView(View):
    async def get(self, request: Request) -> Response:
        try:
            scope = scope_of(request.query)
        except BadRequest as exc:
            return self.json({"error": str(exc)}, status=400)
        return self.json(await stats(parts_of(self), scope, request.rel_url.path))


class HealthView(View):
    """200 when the pipeline is ready and Elasticsearch answers, else 503 with why."""

    async def get(self, request: Request) -> Response:
        if (body := stopping_body(self.app)) is not None:
            return self.json(body, status=503)
        parts = parts_of(self)
        try:
            scope = scope_of(request.query)
        except BadRequest as exc:
            return self.json({"error": str(exc)}, status=400)
        runtime, settings = parts.runtime, parts.settings
        es_ok, kafka_ok = await asyncio.gather(
            runtime.sink.healthy(), any_reachable(settings.broker_addresses)
        )
        failing = [n for n, p in runtime.pipelines.items() if p.stats.last_error]
        now = time.time()
        status, problems, agents = assess(
            ready=runtime.ready,
            kafka_reachable=kafka_ok,
            elasticsearch_reachable=es_ok,
            agents={kind: agent_progress(parts, kind) for kind in runtime.pipelines},
            now=now,
            started_at=runtime.ready_at or now,
            stall_seconds=settings.health_stall_seconds,
        )
        body = {
            "status": status,
            "problems": problems,
            "app": settings.app_id,
            "kafka_reachable": kafka_ok,
            "elasticsearch_reachable": es_ok,
            "failing_pipelines": failing,
            "agents": agents,
            **local_stats(parts),
        }
        if scope == "cluster":
            body = await with_other_workers(parts, body, request.rel_url.path)
        return self.json(body, status=200 if body["status"] == "ok" else 503)


async def with_other_workers(parts: WorkerParts, mine: dict[str, Any], path: str) -> dict[str, Any]:
    """This worker's health joined with every other worker's: ok only if all are."""
    gathered = await parts.cluster.gather(path, {})
    workers: dict[str, Any] = {parts.cluster.me: mine["status"]}
    problems = list(mine["problems"])
    for url, body in gathered.bodies.items():
        workers[url] = body.get("status", "unknown")
        problems += [f"{url}: {p}" for p in body.get("problems", [])]
    for url, error in gathered.errors.items():
        workers[url] = "unreachable"
        problems.append(f"{url}: unreachable ({error})")
    status = mine["status"]
    if status == "ok" and any(s != "ok" for s in workers.values()):
        status = "degraded"
    return {**mine, "status": status, "problems": problems, "workers": workers}


def agent_progress(parts: WorkerParts, kind: str) -> AgentProgress:
    """The progress of the agent reading `kind` (tweets or news) on this worker."""
    topic = parts.settings.tweets_topic if kind == "tweets" else parts.settings.news_topic
    lags = parts.lag([topic])
    stats = parts.runtime.pipelines[kind].stats
    return AgentProgress(
        lag=sum(lags.values()) if lags else None,
        batch_started_at=stats.batch_started_at,
        batch_oldest_timestamp=stats.batch_oldest_timestamp,
        last_batch_at=stats.last_batch_at,
        failing=stats.last_error is not None,
    )


class NotFound(View):
    """Anything else: a JSON 404 listing what there is (registered last)."""

    async def get(self, request: Request, path: str = "") -> Response:
        return self.json({"error": f"no such page: /{path}", "pages": PAGES}, status=404)


#: The JSON views and the dashboard, for 404 answers.
PAGES = ["/sentiment/", "/hate/", "/stats/", "/health/", "/recent/", "/dashboard/"]


def redirect_to(target: str) -> type[View]:
    class Redirect(View):
        async def get(self, request: Request) -> Response:
            query = f"?{request.query_string}" if request.query_string else ""
            return self.bytes(b"", status=302, headers={"Location": target + query})

    Redirect.__name__ = Redirect.__qualname__ = f"Redirect{target.strip('/').title()}"
    return Redirect


def register_views(app: AppT) -> None:
    for path, view in (
        ("/sentiment/", SentimentView),
        ("/hate/", HateView),
        ("/stats/", StatsView),
        ("/health/", HealthView),
    ):
        app.page(path)(view)
        # `/sentiment` as `/dashboard` does: to the page with the slash, query kept.
        app.page(path.rstrip("/"))(redirect_to(path))


def register_not_found(app: AppT) -> None:
    """After every other page: aiohttp matches routes in the order they were added."""
    app.page("/{path:.*}")(NotFound)
