"""The live dashboard, served by the worker's own Faust web server.

GET /                          -> 302 to /dashboard/
GET /dashboard/                the page (it polls the JSON views below every 2 s)
GET /dashboard/static/<file>   its assets, from `streamapp/static/` (package data)
GET /recent/?q=words&hate=true&sentiment=negative&source=twitter&term=tag&lang=en
            &from=ISO&to=ISO&limit=20&page=1
                               search the classified messages in Elasticsearch, newest first

The page needs nothing from the network but this worker: no CDN, no fonts, no chart library
(charts are plain SVG), and its Content-Security-Policy forbids anything else.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, TransportError
from faust.types import AppT
from faust.web import Request, Response, View

from streamapp.views import parts_of, redirect_to

STATIC_DIR = Path(__file__).parent / "static"
INDEX_FILE = "index.html"

# An explicit map rather than `mimetypes`: the platform's tables differ (`.js` has been
# `application/javascript` or `text/javascript`), and anything not listed is not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
# Asset URLs in the page carry `?v=<content hash>`, so such a response can never go stale;
# anything else is revalidated with its ETag on each use.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Only what the page itself uses: scripts, styles and fetches from this origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSET_REF = re.compile(r"\{\{static:([A-Za-z0-9_./-]+)\}\}")

RECENT_DEFAULT_LIMIT = 20
RECENT_MAX_LIMIT = 100
RECENT_PARAMS = frozenset(
    {"q", "hate", "sentiment", "source", "term", "lang", "from", "to", "limit", "page"}
)
#: Elasticsearch's default `index.max_result_window`: from + size never goes past it.
RECENT_MAX_WINDOW = 10_000
RECENT_MAX_QUERY = 200
#: Bounds a query's work on the cluster, beside the HTTP request timeout.
RECENT_ES_TIMEOUT = "2s"
_SENTIMENTS = frozenset({"negative", "neutral", "positive", "unclassified"})
_SOURCE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
RECENT_FIELDS = [
    "id",
    "source",
    "text",
    "title",
    "url",
    "author",
    "author_username",
    "author_id",
    "source_name",
    "hate",
    "hate_score",
    "hate_categories",
    "sentiment_label",
    "processed_at",
    "created_at",
    "lang",
    "rule_tags",
    "terms",
    "published_at",
]


class BadRequest(ValueError):
    pass


# -- static files --------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str  # quoted, as sent in the header

    @property
    def version(self) -> str:
        return self.etag.strip('"')


def resolve_static(root: Path, name: str) -> Path | None:
    """The file `name` names under `root`, or None if it is outside it, hidden or of a type
    that is not served. Blocking (it touches the file system)."""
    if not name or len(name) > 256 or "\\" in name or "\x00" in name:
        return None
    parts = name.split("/")
    # Dot segments and dot files are refused outright, before the path is ever resolved;
    # the containment check below also catches symlinks that point out of the directory.
    if any(not part or part.startswith(".") for part in parts):
        return None
    if Path(name).suffix.lower() not in CONTENT_TYPES:
        return None
    base = root.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def load_static(root: Path, name: str) -> StaticFile | None:
    """Blocking: call it from a thread."""
    path = resolve_static(root, name)
    if path is None:
        return None
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    return StaticFile(body=body, content_type=CONTENT_TYPES[path.suffix.lower()], etag=etag)


def static_headers(file: StaticFile, query: Mapping[str, str]) -> dict[str, str]:
    versioned = query.get("v") == file.version
    return {
        "Content-Type": file.content_type,
        "ETag": file.etag,
        "Cache-Control": IMMUTABLE if versioned else REVALIDATE,
        "X-Content-Type-Options": "nosniff",
    }


def not_modified(request: Request, file: StaticFile) -> bool:
    header: str = request.headers.get("If-None-Match", "")
    return file.etag in {tag.strip() for tag in header.split(",")} or header.strip() == "*"


def render_index(root: Path) -> StaticFile:
    """The page with each `{{static:name}}` replaced by a content-versioned relative URL, so
    a new build is picked up by the next page load while assets are cached for good."""
    template = load_static(root, INDEX_FILE)
    if template is None:
        raise FileNotFoundError(root / INDEX_FILE)

    def asset_url(match: re.Match[str]) -> str:
        asset = load_static(root, match.group(1))
        if asset is None:
            raise FileNotFoundError(root / match.group(1))
        return f"static/{match.group(1)}?v={asset.version}"

    body = _ASSET_REF.sub(asset_url, template.body.decode()).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    return StaticFile(body=body, content_type=CONTENT_TYPES[".html"], etag=etag)


def _file_response(view: View, request: Request, file: StaticFile, csp: bool) -> Response:
    headers = static_headers(file, dict(request.query))
    if csp:
        headers["Content-Security-Policy"] = CSP
    if not_modified(request, file):
        del headers["Content-Type"]
        return view.bytes(b"", status=304, headers=headers)
    return view.bytes(file.body, headers=headers)


class DashboardPage(View):
    async def get(self, request: Request) -> Response:
        page = await asyncio.to_thread(render_index, STATIC_DIR)
        return _file_response(self, request, page, csp=True)


class DashboardStatic(View):
    async def get(self, request: Request, name: str) -> Response:
        file = await asyncio.to_thread(load_static, STATIC_DIR, name)
        if file is None:
            return self.json({"error": "not found"}, status=404)
        return _file_response(self, request, file, csp=False)


# -- recent messages -----------------------------------------------------------------------


@dataclass(frozen=True)
class RecentQuery:
    """A search of the classified messages, newest first: every criterion optional."""

    hate: bool | None = None  # None: hateful or not
    limit: int = RECENT_DEFAULT_LIMIT
    source: str | None = None
    text: str | None = None  # words to find in the text (or a news title / description)
    sentiment: str | None = None
    term: str | None = None  # a tracked term: a rule tag or keyword the message matched
    lang: str | None = None
    since: datetime | None = None  # processed at or after
    until: datetime | None = None  # processed before
    page: int = 1


def _keyword(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name) or None
    if value is not None and not _SOURCE.match(value):
        raise BadRequest(f"{name} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def _instant(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 time, e.g. 2026-12-01T10:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _int(query: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, str(default)))
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def parse_recent_query(query: Mapping[str, str]) -> RecentQuery:
    unknown = sorted(set(query) - RECENT_PARAMS)
    if unknown:
        raise BadRequest(f"unknown parameter(s) {unknown}; allowed: {sorted(RECENT_PARAMS)}")
    hate: bool | None = None
    if "hate" in query:
        try:
            hate = _BOOLEANS[query["hate"].lower()]
        except KeyError:
            raise BadRequest("hate must be true or false") from None
    limit = _int(query, "limit", RECENT_DEFAULT_LIMIT)
    if not 1 <= limit <= RECENT_MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {RECENT_MAX_LIMIT}")
    page = _int(query, "page", 1)
    if page < 1 or page * limit > RECENT_MAX_WINDOW:
        raise BadRequest(
            f"page must be 1 or more, and page x limit at most {RECENT_MAX_WINDOW} "
            "(narrow the search with a time range instead)"
        )
    text = (query.get("q") or "").strip() or None
    if text is not None and len(text) > RECENT_MAX_QUERY:
        raise BadRequest(f"q must be at most {RECENT_MAX_QUERY} characters")
    sentiment = query.get("sentiment") or None
    if sentiment is not None and sentiment not in _SENTIMENTS:
        raise BadRequest(f"sentiment must be one of {sorted(_SENTIMENTS)}")
    since, until = _instant(query, "from"), _instant(query, "to")
    if since and until and since >= until:
        raise BadRequest("from must be before to")
    return RecentQuery(
        hate=hate,
        limit=limit,
        source=_keyword(query, "source"),
        text=text,
        sentiment=sentiment,
        term=(query.get("term") or "").strip() or None,
        lang=_keyword(query, "lang"),
        since=since,
        until=until,
        page=page,
    )


def recent_search(q: RecentQuery, aliases: list[str]) -> dict[str, Any]:
    """Keyword arguments of `AsyncElasticsearch.search` for `q`."""
    filters: list[dict[str, Any]] = []
    if q.hate is not None:
        filters.append({"term": {"hate": q.hate}})
    if q.source is not None:
        filters.append({"term": {"source": q.source}})
    if q.sentiment is not None:
        filters.append({"term": {"sentiment_label": q.sentiment}})
    if q.lang is not None:
        filters.append({"term": {"lang": q.lang}})
    if q.term is not None:
        # A tracked term the worker matched, or a tag of a rule that matched at the source.
        filters.append(
            {
                "bool": {
                    "should": [{"term": {"terms": q.term}}, {"term": {"rule_tags": q.term}}],
                    "minimum_should_match": 1,
                }
            }
        )
    if q.since is not None or q.until is not None:
        bounds = {}
        if q.since is not None:
            bounds["gte"] = q.since.isoformat()
        if q.until is not None:
            bounds["lt"] = q.until.isoformat()
        filters.append({"range": {"processed_at": bounds}})
    must: list[dict[str, Any]] = []
    if q.text is not None:
        # simple_query_string never fails on user syntax (unbalanced quotes and the like).
        must.append(
            {
                "simple_query_string": {
                    "query": q.text,
                    "fields": ["text", "title", "description"],
                    "default_operator": "and",
                }
            }
        )
    return {
        "index": ",".join(aliases),
        "query": {"bool": {"filter": filters, "must": must}},
        # `id` breaks ties: a whole batch shares one `processed_at`.
        "sort": [{"processed_at": {"order": "desc"}}, {"id": {"order": "asc"}}],
        "size": q.limit,
        "from_": (q.page - 1) * q.limit,
        "source_includes": RECENT_FIELDS,
        "track_total_hits": RECENT_MAX_WINDOW,
        "timeout": RECENT_ES_TIMEOUT,
        # Before the worker has created its indices there is simply nothing to list.
        "ignore_unavailable": True,
        "allow_no_indices": True,
    }


def recent_item(doc: Mapping[str, Any]) -> dict[str, Any]:
    news = "title" in doc
    return {
        "id": doc.get("id"),
        "kind": "news" if news else "tweet",
        "source": doc.get("source"),
        "author": (
            doc.get("author") or doc.get("source_name")
            if news
            else doc.get("author_username") or doc.get("author_id")
        ),
        "text": doc.get("title") if news else doc.get("text"),
        "url": doc.get("url"),
        "hate": doc.get("hate"),
        "categories": doc.get("hate_categories") or [],
        "score": doc.get("hate_score"),
        "sentiment": doc.get("sentiment_label"),
        "time": doc.get("processed_at"),
        "created_at": doc.get("published_at") if news else doc.get("created_at"),
        "lang": doc.get("lang"),
        "terms": list(dict.fromkeys([*(doc.get("terms") or []), *(doc.get("rule_tags") or [])])),
    }


class RecentView(View):
    """Search the classified messages of both aliases, newest first: e.g. the latest
    hateful ones, or negative tweets about a term in a time range, a page at a time."""

    async def get(self, request: Request) -> Response:
        try:
            q = parse_recent_query(dict(request.query))
        except BadRequest as exc:
            return self.json({"error": str(exc)}, status=400)
        parts = parts_of(self)
        aliases = [parts.settings.tweets_index, parts.settings.news_index]
        try:
            client = parts.sink.client.options(request_timeout=5)
            resp = await client.search(**recent_search(q, aliases))
        except (ApiError, TransportError) as exc:
            return self.json(
                {"error": f"elasticsearch unavailable: {type(exc).__name__}"}, status=503
            )
        items = [recent_item(hit["_source"]) for hit in resp["hits"]["hits"]]
        total = resp["hits"].get("total") or {}
        return self.json(
            {
                "hate": q.hate,
                "source": q.source,
                "q": q.text,
                "sentiment": q.sentiment,
                "term": q.term,
                "lang": q.lang,
                "from": q.since.isoformat() if q.since else None,
                "to": q.until.isoformat() if q.until else None,
                "limit": q.limit,
                "page": q.page,
                # "gte" once there are more than RECENT_MAX_WINDOW matches.
                "total": {"value": total.get("value", 0), "relation": total.get("relation")},
                "timed_out": bool(resp.get("timed_out")),
                "indices": aliases,
                "items": items,
            }
        )


def register_dashboard(app: AppT) -> None:
    for path, view in (
        ("/", redirect_to("/dashboard/")),
        ("/dashboard", redirect_to("/dashboard/")),
        ("/dashboard/", DashboardPage),
        ("/dashboard/static/{name:.+}", DashboardStatic),
        ("/recent/", RecentView),
        ("/recent", redirect_to("/recent/")),
    ):
        app.page(path)(view)
