"""A local stand-in for NewsAPI v2 (newsapi.org), speaking its wire format.

- `GET /v2/everything` and `GET /v2/top-headlines`: `{"status": "ok", "totalResults", "articles"}`
  with `page` (1-based) and `pageSize` (default 20 on the real API here too, 1..100), filtered
  by `q` (NewsAPI's search syntax over title/description/content, case-insensitive: words,
  "exact phrases", +must, -mustnot, AND/OR/NOT; AND binds before OR, no parentheses), `sources`
  (source ids)
  and `domains` (URL hosts); `/everything` sorted newest first for `sortBy=publishedAt`.
- The API key is accepted the three ways NewsAPI accepts it: `X-Api-Key` header, `apiKey`
  query parameter, or `Authorization` header (newsapi-python uses the last, "Bearer " optional).
- Errors are `{"status": "error", "code", "message"}` with NewsAPI's HTTP statuses: 400
  parameterInvalid/parametersMissing, 401 apiKeyMissing/apiKeyInvalid/apiKeyDisabled, 426
  maximumResultsReached beyond `max_results` (the developer plan's 100), 429 rateLimited, 500.
- `fail_next(code, times, after)` scripts error responses: `after` requests are answered
  normally, then the next `times` get NewsAPI's error `code`.
- NewsAPI's "[Removed]" placeholders (`removed_article()`) are returned whatever the query,
  as the real API does for taken-down articles that once matched.
- Every request is recorded (`requests`) for assertions.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from servers.local import LocalHTTPServer

# code -> (HTTP status, message), as NewsAPI words them.
ERRORS: dict[str, tuple[int, str]] = {
    "apiKeyMissing": (
        401,
        "Your API key is missing. Append this to the URL with the apiKey param, or use the "
        "x-api-key HTTP header.",
    ),
    "apiKeyInvalid": (
        401,
        "Your API key is invalid or incorrect. Check your key, or go to https://newsapi.org "
        "to create a free API key.",
    ),
    "apiKeyDisabled": (401, "Your API key has been disabled."),
    "apiKeyExhausted": (429, "Your API key has no more requests available."),
    "rateLimited": (
        429,
        "You have made too many requests recently. Developer accounts are limited to 100 "
        "requests over a 24 hour period (50 requests available every 12 hours). Please upgrade "
        "to a paid plan if you need more requests.",
    ),
    "maximumResultsReached": (
        426,
        "You have requested too many results. Developer accounts are limited to a max of 100 "
        "results. Please upgrade to a paid plan if you need more results.",
    ),
    "parameterInvalid": (400, "You've included a parameter in your request which is invalid."),
    "parametersMissing": (
        400,
        "Required parameters are missing, the scope of your search is too broad. Please set any "
        "of the following required parameters and try again: q, qInTitle, sources, domains.",
    ),
    "sourcesTooMany": (400, "You have requested too many sources in a single request."),
    "unexpectedError": (500, "This shouldn't happen, and if it does then it's our fault."),
}


def make_article(
    i: int,
    *,
    topic: str = "climate",
    published: datetime | None = None,
    source: tuple[str | None, str] = ("bbc-news", "BBC News"),
    host: str = "www.bbc.co.uk",
    nulls: bool = False,
) -> dict[str, Any]:
    """An item of `articles`. nulls=True: author, description, content and image are null (as
    NewsAPI often returns them)."""
    when = published or datetime(2026, 11, 28, 12, 0, tzinfo=UTC) - timedelta(minutes=i)
    return {
        "source": {"id": source[0], "name": source[1]},
        "author": None if nulls else f"Reporter {i}",
        "title": f"Story {i} about {topic}",
        "description": None if nulls else f"What happened in story {i}.",
        "url": f"https://{host}/news/{topic}-{i}",
        "urlToImage": None if nulls else f"https://{host}/img/{i}.jpg",
        "publishedAt": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "content": None
        if nulls
        else f"Story {i} in full, as far as NewsAPI shows it… [+1520 chars]",
    }


def removed_article() -> dict[str, Any]:
    """NewsAPI's placeholder for an article taken down since it was indexed."""
    return {
        "source": {"id": None, "name": "[Removed]"},
        "author": None,
        "title": "[Removed]",
        "description": "[Removed]",
        "url": "https://removed.com",
        "urlToImage": None,
        "publishedAt": "1970-01-01T00:00:00Z",
        "content": "[Removed]",
    }


@dataclass
class Request:
    path: str
    params: dict[str, str]
    auth: str | None  # how the key came: header | param | authorization | None


class NewsApiServer(LocalHTTPServer):
    def __init__(
        self,
        articles: list[dict[str, Any]] | None = None,
        *,
        api_key: str = "test-key",
        max_results: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.articles: list[dict[str, Any]] = list(articles or [])
        self.max_results = max_results  # None: a paid plan, no limit
        self.scripted: deque[str | None] = deque()  # None: answer normally
        self.requests: list[Request] = []
        super().__init__()

    def fail_next(self, code: str, times: int = 1, after: int = 0) -> None:
        """Answer `after` requests normally, then the next `times` with the error `code`."""
        assert code in ERRORS, code
        with self._lock:
            self.scripted.extend([None] * after + [code] * times)

    def pages(self, path: str = "/v2/everything") -> list[int]:
        """The `page` of every request to `path`, in order."""
        return [int(r.params.get("page", "1")) for r in self.requests if r.path == path]

    def respond(self, path: str, params: dict[str, str], headers: Any) -> tuple[int, Any]:
        auth, key = _key(params, headers)
        with self._lock:
            self.requests.append(Request(path, params, auth))
            scripted = self.scripted.popleft() if self.scripted else None
            articles = list(self.articles)
        if path not in ("/v2/everything", "/v2/top-headlines"):
            return _error("routeNotFound", "Invalid endpoint", 404)
        if scripted is not None:
            return _error(scripted)
        if key is None:
            return _error("apiKeyMissing")
        if key != self.api_key:
            return _error("apiKeyInvalid")
        try:
            page = int(params.get("page", "1"))
            size = int(params.get("pageSize", "20"))
        except ValueError:
            return _error("parameterInvalid")
        if page < 1 or not 1 <= size <= 100:
            return _error("parameterInvalid")
        q, sources, domains = params.get("q"), params.get("sources"), params.get("domains")
        if path == "/v2/everything" and not (q or sources or domains or params.get("qInTitle")):
            return _error("parametersMissing")
        if path == "/v2/top-headlines" and not (
            q
            or sources
            or params.get("country")
            or params.get("category")
            or params.get("language")
        ):
            return _error("parametersMissing")
        if sources and len(sources.split(",")) > 20:
            return _error("sourcesTooMany")
        if self.max_results is not None and page * size > self.max_results:
            return _error("maximumResultsReached")
        matched = [a for a in articles if _matches(a, q, sources, domains)]
        if path == "/v2/everything" and params.get("sortBy", "publishedAt") == "publishedAt":
            matched.sort(key=lambda a: a["publishedAt"], reverse=True)
        start = (page - 1) * size
        body = {
            "status": "ok",
            "totalResults": len(matched),
            "articles": matched[start : start + size],
        }
        return 200, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                status, body = server.respond(url.path, params, self.headers)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _key(params: dict[str, str], headers: Any) -> tuple[str | None, str | None]:
    if headers.get("X-Api-Key"):
        return "header", headers["X-Api-Key"]
    if params.get("apiKey"):
        return "param", params["apiKey"]
    if headers.get("Authorization"):
        return "authorization", headers["Authorization"].removeprefix("Bearer ").strip()
    return None, None


def _error(code: str, message: str | None = None, status: int | None = None) -> tuple[int, Any]:
    default_status, default_message = ERRORS.get(code, (500, ""))
    body = {"status": "error", "code": code, "message": message or default_message}
    return status or default_status, body


def _matches(
    article: dict[str, Any], q: str | None, sources: str | None, domains: str | None
) -> bool:
    if article.get("title") == "[Removed]":
        return True
    if q:
        text = " ".join(str(article.get(f) or "") for f in ("title", "description", "content"))
        if not query_matches(q, text):
            return False
    if sources and (article.get("source") or {}).get("id") not in sources.split(","):
        return False
    if domains:
        host = urlparse(article.get("url") or "").hostname or ""
        if not any(host == d or host.endswith("." + d) for d in domains.split(",")):
            return False
    return True


_TOKEN = re.compile(r'([+-]?)"([^"]*)"|(\S+)')


def query_matches(q: str, text: str) -> bool:
    """NewsAPI's `q` against a text: OR of AND-groups; in a group every plain, `+` or AND-ed
    word or "phrase" must occur and no `-` or NOT-ed one may (whole words, any case)."""
    words = re.findall(r"\w+", text.lower())
    joined = f" {' '.join(words)} "

    def has(term: str) -> bool:
        parts = re.findall(r"\w+", term.lower())
        return bool(parts) and f" {' '.join(parts)} " in joined

    groups: list[list[tuple[bool, str]]] = [[]]
    negate = False
    for m in _TOKEN.finditer(q):
        sign, phrase, word = m.group(1), m.group(2), m.group(3)
        if word in ("OR",):
            groups.append([])
            continue
        if word in ("AND",):
            continue
        if word == "NOT":
            negate = True
            continue
        if word is not None and word[:1] in "+-" and len(word) > 1:
            sign, word = word[0], word[1:]
        groups[-1].append((negate or sign == "-", phrase if phrase is not None else word))
        negate = False
    return any(group and all(has(term) != excluded for excluded, term in group) for group in groups)
